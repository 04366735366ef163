r"""Special functions for directional statistics, in log space and differentiable.

All functions take tensors (or Python numbers) that broadcast together, work on CPU and CUDA, and
are computed internally in float64 whatever the input dtype, then returned in the input's floating
dtype (float32 for half precision, the default dtype for integers or Python numbers). The domain is
order :math:`v \ge 0` (dimension :math:`p \ge 2`) and argument :math:`x \ge 0`, including
:math:`x = 0` and :math:`x = \infty`; outside it the result is NaN, except a dimension below 2,
which raises ValueError whether it is a number or a tensor.

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

from torch import Tensor

from ._bessel_autograd import evaluate
from ._vmf import log_normalizer, order_of_dim

__all__ = [
    "log_iv",
    "log_ive",
    "iv_ratio",
    "vmf_log_normalizer",
    "vmf_mean_resultant_length",
    "vmf_log_normalizer_gap",
]


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
    parts = evaluate(v, x, "log_iv")
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
    parts = evaluate(v, x, "e")
    return parts.values["e"].to(parts.dtype)


def iv_ratio(v: Tensor | float, x: Tensor | float) -> Tensor:
    r"""Ratio :math:`I_{v+1}(x) / I_v(x)`, in :math:`[0, 1)`, computed without forming either.

    .. math::

        \frac{\partial}{\partial x} \frac{I_{v+1}(x)}{I_v(x)}
        = 1 - \left(\frac{I_{v+1}}{I_v}\right)^2 - \frac{2v + 1}{x} \frac{I_{v+1}}{I_v}.

    Same parameters as :func:`log_iv`; ``x = 0`` gives 0 and ``x = inf`` gives 1.
    """
    parts = evaluate(v, x, "a")
    return parts.values["a"].to(parts.dtype)


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
    return log_normalizer(dim, kappa)


def vmf_mean_resultant_length(dim: Tensor | int, kappa: Tensor | float) -> Tensor:
    r"""Mean resultant length :math:`A_p(\kappa) = I_{p/2}(\kappa) / I_{p/2-1}(\kappa) = E[\mu^\top z]`.

    .. math::

        A_p'(\kappa) = 1 - A_p(\kappa)^2 - \frac{p - 1}{\kappa} A_p(\kappa),
        \qquad A_p(0) = 0, \quad A_p(\kappa) \to 1 \ (\kappa \to \infty).

    Same parameters as :func:`vmf_log_normalizer`.
    """
    return iv_ratio(order_of_dim(dim), kappa)


def vmf_log_normalizer_gap(dim: Tensor | int, kappa: Tensor | float) -> Tensor:
    r""":math:`\log C_p(0) - \log C_p(\kappa) = \log {}_0F_1(; p/2; \kappa^2/4) \ge 0`, to full
    relative precision even where it is tiny (it behaves as :math:`\kappa^2 / (2p)` at small
    :math:`\kappa`), so that quantities such as the KL divergence to the uniform distribution,
    :math:`\kappa A_p(\kappa) - (\log C_p(0) - \log C_p(\kappa))`, keep their relative accuracy
    near :math:`\kappa = 0`. Its derivative is :math:`A_p(\kappa)`.

    Same parameters as :func:`vmf_log_normalizer`.
    """
    parts = evaluate(order_of_dim(dim), kappa, "g")
    return parts.values["g"].to(parts.dtype)
