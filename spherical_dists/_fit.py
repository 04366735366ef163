r"""Maximum-likelihood estimation of von Mises-Fisher parameters from weighted unit vectors: the one
path behind ``VonMisesFisher.fit`` and the M-step of ``fit_vmf_mixture``.

For points :math:`x_1, \dots, x_n` on :math:`S^{p-1}` with weights :math:`w_i \ge 0`, the resultant
:math:`S = \sum_i w_i x_i` gives both estimates: :math:`\hat\mu = S / \lVert S \rVert` and
:math:`\hat\kappa` solving :math:`A_p(\hat\kappa) = \bar R = \lVert S \rVert / \sum_i w_i`
(Mardia & Jupp 2000, 10.3.1). With the mean direction fixed at :math:`\mu` (scipy's ``floc``),
:math:`\bar R = \mu^\top S / \sum_i w_i`, and :math:`\bar R \le 0` gives :math:`\hat\kappa = 0`.

Precision: :math:`1 - \bar R` is what fixes :math:`\hat\kappa` of concentrated data (it is about
:math:`(p - 1) / (2\kappa)`), and the direct difference keeps only about :math:`10^{-16} / (1 - \bar R)`
of its relative precision. Where :math:`\bar R > 1/2` it is taken instead from the spread of the
points, a sum of squares: :math:`1 - \bar R = \sum_i w_i \lVert x_i - \bar x \rVert^2 / (W (1 + \bar R))`
(:math:`\bar x = S / W`) for a free mean and :math:`\sum_i w_i \lVert x_i - \mu \rVert^2 / (2W)` for a
fixed one. The data are renormalised in float64 first, so that these identities for unit vectors
hold to float64 rounding also for float32 or half-precision data.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_unit, validating
from ._vmf import concentration_from_resultant

__all__ = ["check_points", "check_weights", "as_float64_directions", "weighted_fit"]


def check_points(x: object, validate_args: bool | None) -> tuple[int, int]:
    """Check data ``x`` of shape ``(..., n, p)`` (unit rows when validating); return ``(n, p)``."""
    if not isinstance(x, Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError("x must be a floating-point tensor of shape (..., n, p)")
    n, dim = x.shape[-2:]
    if n < 1:
        raise ValueError("x must hold at least one point (n >= 1)")
    if dim < 2:
        raise ValueError(f"x must have p >= 2 entries along its last dimension, got shape {tuple(x.shape)}")
    if validating(validate_args):
        check_unit(x, "x")
    return n, dim


def check_weights(weights: Tensor | None, x: Tensor) -> Tensor:
    """Weights broadcast to ``x.shape[:-1]``, float64: finite, non-negative, not all zero."""
    shape = x.shape[:-1]
    if weights is None:
        return torch.ones(shape, dtype=torch.float64, device=x.device)
    weights = torch.as_tensor(weights, device=x.device)
    try:
        weights = weights.to(torch.float64).expand(shape)
    except RuntimeError:
        raise ValueError(f"weights of shape {tuple(weights.shape)} do not broadcast to {tuple(shape)}") from None
    if not (torch.isfinite(weights) & (weights >= 0)).all():
        raise ValueError("weights must be finite and non-negative")
    if not (weights.sum(-1) > 0).all():
        raise ValueError("weights must not be all zero (in every batch element)")
    return weights


def as_float64_directions(x: Tensor) -> Tensor:
    """``x`` in float64 with rows of unit norm to float64 rounding (see the module docstring)."""
    return torch.nn.functional.normalize(x.to(torch.float64), dim=-1)


def weighted_fit(x64: Tensor, weights: Tensor, loc: Tensor | None = None, floor: float = 0.0) -> tuple[Tensor, Tensor]:
    r"""Maximum-likelihood ``(loc, concentration)`` for each row of weights, float64.

    Parameters
    ----------
    x64 : Tensor
        Unit vectors, float64, shape ``(B, n, p)`` (from :func:`as_float64_directions`).
    weights : Tensor
        ``(B, K, n)``, float64: ``K`` weightings of the same points (the components of a mixture;
        ``K = 1`` for one fit). A row whose weights are all zero gets the uniform distribution.
    loc : Tensor, optional
        ``(B, K, p)``, fixed unit mean directions; then only the concentration is estimated.
    floor : float
        Lower bound on :math:`1 - \bar R`, which caps :math:`\hat\kappa` near
        :math:`(p - 1) / (2\,\mathrm{floor})`; with 0, points that coincide (to rounding) give
        ``concentration = inf``, the maximum of the likelihood.

    Returns
    -------
    (Tensor, Tensor)
        ``loc`` of shape ``(B, K, p)`` (:math:`e_1` where the resultant is 0 and the direction is
        undefined) and ``concentration`` of shape ``(B, K)``.
    """
    dim = x64.shape[-1]
    fixed = loc is not None
    total = weights.sum(-1)
    total = torch.where(total > 0, total, 1.0)  # all-zero weights: a zero resultant, R = 0
    resultant = weights @ x64
    if loc is None:
        norm = torch.linalg.vector_norm(resultant, dim=-1)
        positive = (norm > 0).unsqueeze(-1)
        e1 = torch.zeros_like(resultant)
        e1[..., 0] = 1.0
        loc = torch.where(positive, resultant / torch.where(positive, norm.unsqueeze(-1), 1.0), e1)
        r = torch.clamp(norm / total, max=1.0)
        centres = resultant / total.unsqueeze(-1)
    else:
        r = torch.clamp((resultant * loc).sum(-1) / total, max=1.0)
        centres = loc
    one_minus_r = 1.0 - r
    # One pass over the points per weighting that needs the exact form, so that a mixture never
    # holds a (B, K, n, p) temporary.
    refine = r > 0.5
    for k in torch.nonzero(refine.any(0)).flatten().tolist():
        sq = (x64 - centres[:, k].unsqueeze(-2)).pow(2).sum(-1)  # (B, n)
        spread = (weights[:, k] * sq).sum(-1) / total[:, k]
        exact = spread / 2.0 if fixed else spread / (1.0 + r[:, k])
        one_minus_r[:, k] = torch.where(refine[:, k], exact, one_minus_r[:, k])
    # Identical points leave a spread of rounding errors (x - xbar ~ eps): that is R = 1.
    one_minus_r = torch.where(one_minus_r <= dim * torch.finfo(torch.float64).eps ** 2, 0.0, one_minus_r)
    one_minus_r = torch.clamp(one_minus_r, min=floor)
    return loc, concentration_from_resultant(dim, r, one_minus_r)
