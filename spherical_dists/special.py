r"""Special functions for directional statistics, in log space and differentiable.

All functions take tensors (or Python numbers) that broadcast together, work on CPU and CUDA, and
are computed internally in float64 whatever the input dtype, then returned in the input's floating
dtype (float32 for half precision, the default dtype for integers or Python numbers). The domain is
order :math:`v \ge 0` (dimension :math:`p \ge 2`) and argument :math:`x \ge 0`, including
:math:`x = 0` and :math:`x = \infty`; outside it the result is NaN.

Accuracy (float64, against mpmath at 50 digits, checked by the test suite): relative error below
1e-13, or absolute where the value is below 1 in magnitude, for :math:`v \in [0, 10^5]` and
:math:`x \in [0, 10^8]`. Near the zero crossings of :math:`\log I_v` and :math:`\log C_p` at very
large order the error is bounded instead by the rounding of the input times the condition number
:math:`|x \, \partial_x f|` (see the accuracy page of the documentation).

Derivatives with respect to ``x`` (or ``kappa``) are exact to the same accuracy, to any order.
The order ``v`` (or dimension ``p``) is not differentiable: passing a tensor that requires grad
raises an error rather than silently returning a zero gradient.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._bessel import log_bessel_parts

__all__ = [
    "log_iv",
    "log_ive",
    "iv_ratio",
    "vmf_log_normalizer",
    "vmf_mean_resultant_length",
    "vmf_log_normalizer_gap",
]

_LOG_2PI = math.log(2 * math.pi)


def _times(grad: Tensor | None, derivative: Tensor) -> Tensor | None:
    """``grad * derivative`` where a zero upstream gradient contributes zero even if the
    derivative is infinite (x = 0 with v > 0), so unselected branches never inject NaN."""
    if grad is None:
        return None
    return torch.where(grad == 0, torch.zeros_like(grad), grad * derivative)


class _LogBessel(torch.autograd.Function):
    """The quantities of ``_bessel.QUANTITIES`` named in ``want``, in that order, in float64:
    F = log I_v(x) - v log x, E = log I_v(x) - x, A = I_{v+1}(x) / I_v(x), G = F(v, x) - F(v, 0),
    B = 1 - A and log I_v(x).

    dF/dx = dG/dx = A, dE/dx = A + v/x - 1, d log I_v / dx = A + v/x and dA/dx = -dB/dx =
    1 - A^2 - (2v + 1) A / x. The backward uses the saved output A (the caller asks for it when
    x requires grad), so differentiating it again re-enters this function: every order is exact.
    """

    @staticmethod
    def forward(v: Tensor, x: Tensor, want: tuple[str, ...]) -> tuple[Tensor, ...]:  # type: ignore[override]
        parts = log_bessel_parts(v, x, want)
        return tuple(parts[k] for k in want)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        v, x, want = inputs
        ctx.want = want
        ctx.save_for_backward(v, x, output[want.index("a")] if "a" in want else None)
        ctx.set_materialize_grads(False)

    @staticmethod
    def vmap(info, in_dims, v, x, want):  # type: ignore[no-untyped-def]
        # Elementwise: put the batch dimension first on both inputs and evaluate plain tensors.
        v, x = (
            t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape)
            for t, d in zip((v, x), in_dims[:2])
        )
        v, x = torch.broadcast_tensors(v, x)
        return _LogBessel.apply(v, x, want), (0,) * len(want)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[no-untyped-def, override]
        v, x, a = ctx.saved_tensors
        if a is None:
            raise RuntimeError("internal error: the Bessel ratio was not computed for the backward pass")
        zero_order = v == 0
        v_over_x = torch.where(zero_order, 0.0, v / torch.where(zero_order, 1.0, x))  # inf at x = 0 < v
        # A/x tends to 1/(2v + 2); below 1e-150 the limit is exact to within x^2.
        tiny = x > 1e-150
        a_over_x = torch.where(tiny, a / torch.where(tiny, x, torch.ones_like(x)), 0.5 / (v + 1.0))
        def a_prime() -> Tensor:
            return 1.0 - a * a - (2.0 * v + 1.0) * a_over_x

        derivatives = {  # computed only for the outputs that receive a gradient
            "f": lambda: a,
            "g": lambda: a,
            "e": lambda: a + v_over_x - 1.0,
            "log_iv": lambda: a + v_over_x,
            "a": a_prime,
            "b": lambda: -a_prime(),
        }
        present = [_times(g, derivatives[k]()) for k, g in zip(ctx.want, grads) if g is not None]
        return None, (sum(present[1:], present[0]) if present else None), None


def _prepare(v: Tensor | float, x: Tensor | float) -> tuple[Tensor, Tensor, torch.dtype]:
    """Broadcast to float64 tensors; return the dtype the caller gets back.

    The output dtype is the promoted floating dtype of the tensor inputs (Python numbers do not
    take part, as in torch), except that float16 and bfloat16 come back as float32 (their range
    cannot hold log I_v for most arguments) and integer or Python-only inputs give the default
    dtype. Python numbers are converted straight to float64, never through float32.
    """
    if isinstance(v, Tensor) and v.requires_grad:
        raise ValueError("the order v (or dimension p) is not differentiable; pass it without requires_grad")
    tensors = [t for t in (v, x) if isinstance(t, Tensor)]
    device = tensors[0].device if tensors else None
    dtype = torch.get_default_dtype()
    if tensors:
        promoted = tensors[0].dtype if len(tensors) == 1 else torch.promote_types(v.dtype, x.dtype)  # type: ignore[union-attr]
        if promoted.is_floating_point:
            dtype = torch.float32 if promoted in (torch.float16, torch.bfloat16) else promoted
    vt, xt = (torch.as_tensor(t, dtype=torch.float64, device=device) for t in (v, x))
    vt, xt = torch.broadcast_tensors(vt, xt)
    return vt, xt, dtype


class _Parts(NamedTuple):
    v: Tensor  # the order, float64, broadcast
    x: Tensor  # the argument, float64, broadcast
    values: dict[str, Tensor]  # the quantities asked for, float64
    dtype: torch.dtype  # what the caller gets back


def _parts(v: Tensor | float, x: Tensor | float, *want: str) -> _Parts:
    """Evaluate the quantities ``want`` (names from ``_bessel.QUANTITIES``), and the ratio A
    as well when x will be differentiated (the backward needs it)."""
    vt, xt, dtype = _prepare(v, x)
    if torch.is_grad_enabled() and xt.requires_grad and "a" not in want:
        want = (*want, "a")
    return _Parts(vt, xt, dict(zip(want, _LogBessel.apply(vt, xt, want))), dtype)


def log_iv(v: Tensor | float, x: Tensor | float) -> Tensor:
    r"""Logarithm of the modified Bessel function of the first kind, :math:`\log I_v(x)`.

    .. math::

        I_v(x) = \sum_{k \ge 0} \frac{(x/2)^{2k + v}}{k! \, \Gamma(k + v + 1)},
        \qquad \frac{\partial}{\partial x} \log I_v(x) = \frac{I_{v+1}(x)}{I_v(x)} + \frac{v}{x}.

    Parameters
    ----------
    v : Tensor or float
        Order, :math:`v \ge 0`; not differentiable.
    x : Tensor or float
        Argument, :math:`x \ge 0`; differentiable to any order.

    Returns
    -------
    Tensor
        :math:`\log I_v(x)`: ``-inf`` at ``x = 0`` for ``v > 0``, ``0`` at ``x = 0`` for
        ``v = 0``, finite elsewhere (no overflow: :math:`\log I_0(10^{300}) \approx 10^{300}`).

    Examples
    --------
    >>> import torch
    >>> from spherical_dists.special import log_iv
    >>> log_iv(0.5, torch.tensor([1.0, 1e4], dtype=torch.float64))  # log(sqrt(2/(pi x)) sinh x)
    tensor([-6.4352e-02,  9.9945e+03], dtype=torch.float64)
    """
    parts = _parts(v, x, "log_iv")
    return parts.values["log_iv"].to(parts.dtype)


def log_ive(v: Tensor | float, x: Tensor | float) -> Tensor:
    r"""Logarithm of the exponentially scaled Bessel function, :math:`\log I_v(x) - x`.

    The counterpart of ``log(scipy.special.ive(v, x))`` without its underflow: finite for every
    :math:`x > 0` and every order. Same parameters as :func:`log_iv`.

    Examples
    --------
    >>> import torch
    >>> from spherical_dists.special import log_ive
    >>> log_ive(2000.0, torch.tensor(10.0, dtype=torch.float64))  # scipy.special.ive gives 0 here
    tensor(-9997.6360, dtype=torch.float64)
    """
    parts = _parts(v, x, "e")
    return parts.values["e"].to(parts.dtype)


def iv_ratio(v: Tensor | float, x: Tensor | float) -> Tensor:
    r"""Ratio :math:`I_{v+1}(x) / I_v(x)`, in :math:`[0, 1)`, computed without forming either.

    .. math::

        \frac{\partial}{\partial x} \frac{I_{v+1}(x)}{I_v(x)}
        = 1 - \left(\frac{I_{v+1}}{I_v}\right)^2 - \frac{2v + 1}{x} \frac{I_{v+1}}{I_v}.

    Same parameters as :func:`log_iv`; ``x = 0`` gives 0 and ``x = inf`` gives 1.
    """
    parts = _parts(v, x, "a")
    return parts.values["a"].to(parts.dtype)


def _order(dim: Tensor | int | float) -> Tensor | float:
    if isinstance(dim, Tensor):
        return dim.to(torch.float64) / 2 - 1
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (the ambient dimension p of S^(p-1)), got {dim}")
    return dim / 2 - 1


def vmf_log_normalizer(dim: Tensor | int, kappa: Tensor | float) -> Tensor:
    r"""Log normalising constant :math:`\log C_p(\kappa)` of the von Mises-Fisher density on
    :math:`S^{p-1} \subset \mathbb{R}^p`, :math:`f(z) = C_p(\kappa) \exp(\kappa \mu^\top z)`.

    .. math::

        \log C_p(\kappa) = (p/2 - 1) \log \kappa - (p/2) \log(2\pi) - \log I_{p/2-1}(\kappa),
        \qquad \frac{d}{d\kappa} \log C_p(\kappa) = -A_p(\kappa).

    At :math:`\kappa = 0` this is the uniform density, :math:`-\log |S^{p-1}|` with
    :math:`|S^{p-1}| = 2 \pi^{p/2} / \Gamma(p/2)`, with no special-casing by the caller.

    Parameters
    ----------
    dim : Tensor or int
        Ambient dimension :math:`p \ge 2`.
    kappa : Tensor or float
        Concentration :math:`\kappa \ge 0`; differentiable to any order.

    Examples
    --------
    >>> import torch
    >>> from spherical_dists.special import vmf_log_normalizer
    >>> vmf_log_normalizer(3, torch.tensor([0.0, 10.0], dtype=torch.float64))  # -log(4 pi), log(k / (4 pi sinh k))
    tensor([-2.5310, -9.5353], dtype=torch.float64)
    """
    parts = _parts(_order(dim), kappa, "f")
    return (-(parts.v + 1.0) * _LOG_2PI - parts.values["f"]).to(parts.dtype)


def vmf_mean_resultant_length(dim: Tensor | int, kappa: Tensor | float) -> Tensor:
    r"""Mean resultant length :math:`A_p(\kappa) = I_{p/2}(\kappa) / I_{p/2-1}(\kappa) = E[\mu^\top z]`.

    .. math::

        A_p'(\kappa) = 1 - A_p(\kappa)^2 - \frac{p - 1}{\kappa} A_p(\kappa),
        \qquad A_p(0) = 0, \quad A_p(\kappa) \to 1 \ (\kappa \to \infty).

    Same parameters as :func:`vmf_log_normalizer`.
    """
    return iv_ratio(_order(dim), kappa)


def vmf_log_normalizer_gap(dim: Tensor | int, kappa: Tensor | float) -> Tensor:
    r""":math:`\log C_p(0) - \log C_p(\kappa) = \log {}_0F_1(; p/2; \kappa^2/4) \ge 0`, to full
    relative precision even where it is tiny (it behaves as :math:`\kappa^2 / (2p)` at small
    :math:`\kappa`), so that quantities such as the KL divergence to the uniform distribution,
    :math:`\kappa A_p(\kappa) - (\log C_p(0) - \log C_p(\kappa))`, keep their relative accuracy
    near :math:`\kappa = 0`. Its derivative is :math:`A_p(\kappa)`.

    Same parameters as :func:`vmf_log_normalizer`.
    """
    parts = _parts(_order(dim), kappa, "g")
    return parts.values["g"].to(parts.dtype)


class _VmfTerms(NamedTuple):
    log_c_plus_kappa: Tensor  # log C_p(kappa) + kappa
    mean_length: Tensor  # A_p(kappa)
    one_minus_mean_length: Tensor  # 1 - A_p(kappa)
    gap: Tensor  # log C_p(0) - log C_p(kappa)


def _log_c_plus_kappa_from(vt: Tensor, xt: Tensor, f: Tensor, e: Tensor) -> Tensor:
    """``log C_p(kappa) + kappa`` from the core's F and E, in the core's dtype (see :func:`_vmf_terms`)."""
    positive = xt > 0
    v_log_x = torch.where(positive, vt * torch.log(torch.where(positive, xt, 1.0)), 0.0)
    # log C + kappa + (v + 1) log 2 pi two ways; take the one whose terms are smaller.
    via_f = xt - f
    via_e = v_log_x - e
    use_f = (f.abs() + xt <= e.abs() + v_log_x.abs()).detach() | ~positive
    return torch.where(use_f, via_f, via_e) - (vt + 1.0) * _LOG_2PI


def _vmf_log_c_plus_kappa(dim: Tensor | int, kappa: Tensor | float) -> Tensor:
    """``log C_p(kappa) + kappa`` alone: the core evaluates F and E only (what ``log_prob`` needs), which
    skips the ratio's series, G and 1 - A."""
    vt, xt, values, dtype = _parts(_order(dim), kappa, "f", "e")
    return _log_c_plus_kappa_from(vt, xt, values["f"], values["e"]).to(dtype)


def _vmf_terms(dim: Tensor | int, kappa: Tensor | float) -> _VmfTerms:
    r"""The vMF quantities the distribution needs, from one evaluation of the Bessel core.

    ``log C_p(kappa) + kappa`` stays of order :math:`p \log \kappa` where :math:`\log C_p` alone
    is about :math:`-\kappa` (the log density is this minus :math:`\tfrac{\kappa}{2}\lVert z - \mu\rVert^2`,
    with no cancellation at large kappa); ``1 - A`` keeps its relative precision as
    :math:`A_p \to 1`, where it behaves as :math:`(p - 1) / (2\kappa)`.
    """
    vt, xt, values, dtype = _parts(_order(dim), kappa, "f", "e", "a", "g", "b")
    f, e, a, g, b = (values[k] for k in "feagb")
    log_c_plus_kappa = _log_c_plus_kappa_from(vt, xt, f, e)
    return _VmfTerms(*(t.to(dtype) for t in (log_c_plus_kappa, a, b, g)))
