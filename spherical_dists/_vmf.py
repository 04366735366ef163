r"""The von Mises-Fisher quantities that the distribution, its KL divergences, the sampler's
gradient, the fit and the mixture share, each computed in one place and to full precision.

With :math:`v = p/2 - 1` and the Bessel core's :math:`F = \log I_v(\kappa) - v\log\kappa`,
:math:`E = \log I_v(\kappa) - \kappa`, :math:`A = I_{v+1}/I_v` and :math:`G = F(\kappa) - F(0)`:

* :math:`\log C_p(\kappa) = -(v + 1)\log 2\pi - F`;
* :math:`L = \log C_p(\kappa) + \kappa`, of order :math:`p \log\kappa` where :math:`\log C_p` alone is
  about :math:`-\kappa`: the log density is :math:`L - \kappa(1 - \mu^\top z)` with no term of size
  :math:`\kappa` (:func:`log_normalizer_plus_kappa`);
* :math:`A_p(\kappa)` and :math:`1 - A_p(\kappa)`, the latter to relative precision as
  :math:`A_p \to 1`, where it behaves as :math:`(p - 1) / (2\kappa)`;
* :math:`G = \log C_p(0) - \log C_p(\kappa)`, to relative precision near :math:`\kappa = 0`;
* :func:`concentration_from_resultant`: the :math:`\kappa` with :math:`A_p(\kappa) = R`.

Every function computes in float64 and returns the input's floating dtype (as ``special`` does).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._bessel_autograd import evaluate
from ._cancellation import sum_with_smaller_terms

__all__ = [
    "VmfTerms",
    "order_of_dim",
    "vmf_terms",
    "log_normalizer",
    "log_normalizer_plus_kappa",
    "log_normalizer_pair",
    "concentration_from_resultant",
]

_LOG_2PI = math.log(2 * math.pi)


def order_of_dim(dim: Tensor | int | float) -> Tensor | float:
    """The Bessel order :math:`v = p/2 - 1` of the sphere :math:`S^{p-1}`, after checking :math:`p \\ge 2`."""
    if isinstance(dim, Tensor):
        if dim.requires_grad:
            raise ValueError("the dimension p is not differentiable; pass it without requires_grad")
        dim = dim.to(torch.float64)
        # A data-dependent check: skipped inside torch.compile, where it would break the graph.
        if not torch.compiler.is_compiling() and not bool((dim >= 2).all()):
            raise ValueError(f"dim must be >= 2 (the ambient dimension p of S^(p-1)), got {dim.min().item():g}")
        return dim / 2 - 1
    if not dim >= 2:  # also rejects NaN
        raise ValueError(f"dim must be >= 2 (the ambient dimension p of S^(p-1)), got {dim}")
    return float(dim) / 2 - 1


class VmfTerms(NamedTuple):
    """The quantities :func:`vmf_terms` returns, in the input's floating dtype."""

    log_c_plus_kappa: Tensor  # log C_p(kappa) + kappa
    mean_length: Tensor  # A_p(kappa)
    one_minus_mean_length: Tensor  # 1 - A_p(kappa)
    gap: Tensor  # log C_p(0) - log C_p(kappa)


def _log_c(v: Tensor, f: Tensor) -> Tensor:
    return -(v + 1.0) * _LOG_2PI - f


def _log_c_plus_kappa(v: Tensor, kappa: Tensor, f: Tensor, e: Tensor) -> Tensor:
    r""":math:`L = \log C_p(\kappa) + \kappa` from F and E, float64: two exact forms,
    :math:`\kappa - F` and :math:`v \log\kappa - E` (each minus :math:`(v + 1)\log 2\pi`)."""
    positive = kappa > 0
    v_log_kappa = torch.where(positive, v * torch.log(torch.where(positive, kappa, 1.0)), 0.0)
    return sum_with_smaller_terms((kappa, -f), (v_log_kappa, -e)) - (v + 1.0) * _LOG_2PI


def vmf_terms(dim: Tensor | int, kappa: Tensor | float) -> VmfTerms:
    """:math:`L`, :math:`A`, :math:`1 - A` and :math:`G` from one evaluation of the Bessel core."""
    v, x, values, dtype = evaluate(order_of_dim(dim), kappa, "f", "e", "a", "g", "b")
    log_c_plus_kappa = _log_c_plus_kappa(v, x, values["f"], values["e"])
    terms = (log_c_plus_kappa, values["a"], values["b"], values["g"])
    return VmfTerms(*(t.to(dtype) for t in terms))


def log_normalizer(dim: Tensor | int, kappa: Tensor | float) -> Tensor:
    r""":math:`\log C_p(\kappa)`, from F alone (see :func:`spherical_dists.special.vmf_log_normalizer`)."""
    v, _, values, dtype = evaluate(order_of_dim(dim), kappa, "f")
    return _log_c(v, values["f"]).to(dtype)


def log_normalizer_plus_kappa(dim: Tensor | int, kappa: Tensor | float) -> Tensor:
    r""":math:`L = \log C_p(\kappa) + \kappa` alone: the core evaluates F and E only (and A where
    :math:`\kappa` is differentiated), which skips the ratio's series, G and :math:`1 - A`."""
    v, x, values, dtype = evaluate(order_of_dim(dim), kappa, "f", "e")
    return _log_c_plus_kappa(v, x, values["f"], values["e"]).to(dtype)


def log_normalizer_pair(dim: Tensor | int, kappa: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
    r"""``(log C, L, A)`` from one evaluation of the core, each with its exact derivative in
    :math:`\kappa` (:math:`-A`, :math:`1 - A`, :math:`A'`): what ``VonMisesFisher.log_prob`` needs
    to differentiate in :math:`\kappa` to relative precision (see there)."""
    v, x, values, dtype = evaluate(order_of_dim(dim), kappa, "f", "e", "a")
    f, e = values["f"], values["e"]
    return _log_c(v, f).to(dtype), _log_c_plus_kappa(v, x, f, e).to(dtype), values["a"].to(dtype)


# Newton steps after Sra's start: its relative error is at most 6e-2 (p = 2, R = 0.9) and shrinks
# as 1 - R at large kappa; measured against mpmath, four steps reach 3e-15 everywhere. The loop ends
# early once every step is below _STEP_TOLERANCE (relative): convergence is quadratic, so the
# iterate is then exact to rounding.
_MAX_NEWTON_STEPS = 8
_STEP_TOLERANCE = 1e-7
# Above this kappa / p, A' = A (B_p - B_{p+2} + 1/kappa) (B = 1 - A) loses more than 1e-4 of its
# relative precision to cancellation, while Sra's start is already exact to about (p - 1)/(2 kappa)
# relative (below 1e-12): Newton steps are skipped there.
_NEWTON_UP_TO = 1e12


def concentration_from_resultant(dim: int, r: Tensor, one_minus_r: Tensor) -> Tensor:
    r""":math:`\kappa` with :math:`A_p(\kappa) = R`, float64, given :math:`R` and :math:`1 - R` (each
    to its own relative precision). :math:`R \le 0` gives 0 and :math:`R = 1` gives ``inf``.

    Start (Sra 2012): :math:`\kappa_0 = R (p - R^2) / (1 - R^2)`. Newton on :math:`A_p(\kappa) - R`
    with :math:`A_p' = A_p\,(A_{p+2} - A_p + 1/\kappa)`, written with :math:`1 - A` at both orders
    (the textbook :math:`1 - A^2 - (p-1)A/\kappa` is all cancellation once :math:`\kappa \gg p`: at
    :math:`\kappa = 10^{12}` it has no correct digit). The residual is :math:`A - R` for
    :math:`R < 1/2` and :math:`(1 - R) - (1 - A)` above, whichever has the digits.
    """
    zero, one = r <= 0, one_minus_r <= 0
    safe_r = torch.where(zero | one, 0.5, r)
    safe_omr = torch.where(zero | one, 0.5, one_minus_r)
    kappa = safe_r * (dim - safe_r * safe_r) / (safe_omr * (1.0 + safe_r))
    newton = kappa <= _NEWTON_UP_TO * dim
    # Orders p and p + 2 in one evaluation of the Bessel core.
    dims = torch.tensor([dim, dim + 2], dtype=torch.float64, device=r.device).reshape((2,) + (1,) * r.dim())
    for _ in range(_MAX_NEWTON_STEPS):
        terms = vmf_terms(dims, kappa)
        a, b = terms.mean_length[0], terms.one_minus_mean_length[0]
        residual = torch.where(safe_r < 0.5, a - safe_r, safe_omr - b)
        slope = a / kappa * (1.0 + kappa * (b - terms.one_minus_mean_length[1]))
        step = kappa - residual / slope
        # A_p is increasing and concave: Newton from the left stays left; the clamp only guards the
        # first step against an overshoot to a non-positive value.
        step = torch.where(newton, torch.clamp(torch.minimum(step, 4.0 * kappa), min=0.25 * kappa), kappa)
        change = ((step - kappa).abs() / kappa).max() if kappa.numel() else torch.zeros(())
        kappa = step
        if change <= _STEP_TOLERANCE:
            break
    kappa = torch.where(zero, 0.0, kappa)
    return torch.where(one, torch.inf, kappa)
