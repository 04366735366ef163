r"""Differences of :math:`\log\Gamma` and :math:`\psi` to full precision, in float64.

The power spherical distribution's normaliser and KL divergences are differences of log-gamma
and digamma values at nearby large arguments, where the direct difference loses the leading
digits (at :math:`y = 10^8`, eight of them), and the Bessel core needs Binet's function, the
remainder of Stirling's formula. Both come from Stirling's series here:

.. math::

    \log\Gamma(z) = (z - \tfrac12)\log z - z + \tfrac12\log(2\pi) + \mu(z), \qquad
    \mu(z) = \sum_{m \ge 1} \frac{B_{2m}}{2m(2m - 1)\, z^{2m - 1}}, \qquad
    \psi(z) = \log z - \frac{1}{2z} - \sum_{m \ge 1} \frac{B_{2m}}{2m\, z^{2m}}.

Regimes: the series (eight terms) is used for :math:`z \ge 10`, where its truncation error is
below 1e-17 relative to its first term; below, torch's ``lgamma`` and ``digamma`` are exact enough
(the values are of order one, so nothing cancels). The Taylor series of :math:`\log\Gamma` (22
terms, error below 1e-19) covers a step :math:`|s| \le c / 8`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["binet", "lgamma_difference", "digamma_difference", "lgamma_bregman", "TAYLOR_RATIO"]

# c_m = B_2m / (2m (2m - 1)) and d_m = B_2m / (2m).
_STIRLING_LGAMMA = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400)
_STIRLING_DIGAMMA = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12, -3617 / 8160)
_STIRLING_FROM = 10.0
#: :func:`lgamma_bregman` is exact for steps ``|s| <= TAYLOR_RATIO * c``.
TAYLOR_RATIO = 0.125
_TAYLOR_TERMS = 22


def _stirling_sum(z: Tensor, coefficients: tuple[float, ...], first_power: int) -> Tensor:
    """``sum_m coefficients[m] z^-(first_power + 2m)`` by Horner's rule in ``1/z^2``."""
    inv_sq = 1.0 / (z * z)
    acc = torch.full_like(z, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        acc = acc * inv_sq + c
    return acc / z**first_power


def binet(z: Tensor) -> Tensor:
    r"""Binet's function :math:`\mu(z) = \log\Gamma(z) - (z - \tfrac12)\log z + z - \tfrac12\log(2\pi)`,
    for :math:`z \ge 10` (the Bessel core calls it at orders :math:`\ge 20`)."""
    return _stirling_sum(z, _STIRLING_LGAMMA, 1)


def lgamma_difference(y: Tensor, h: Tensor) -> Tensor:
    r""":math:`\log\Gamma(y + h) - \log\Gamma(y)` for :math:`y > 0, h \ge 0`.

    For :math:`y \ge 10` by the difference of Stirling series,
    :math:`h \log(y + h) + (y - \tfrac12)\,\mathrm{log1p}(h / y) - h + \mu(y + h) - \mu(y)`, which
    keeps absolute precision ``eps * h log y`` where the two log-gammas are each of order ``y log y``."""
    large = y >= _STIRLING_FROM
    ys = torch.where(large, y, _STIRLING_FROM)  # safe inputs keep the unused branch finite
    yh = ys + h
    stirling = h * torch.log(yh) + (ys - 0.5) * torch.log1p(h / ys) - h + binet(yh) - binet(ys)
    yd = torch.where(large, 1.0, y)
    direct = torch.lgamma(yd + h) - torch.lgamma(yd)
    return torch.where(large, stirling, direct)


def digamma_difference(y: Tensor, h: Tensor) -> Tensor:
    r""":math:`\psi(y + h) - \psi(y)` for :math:`y > 0, h \ge 0`, to relative precision:
    for :math:`y \ge 10`, :math:`\mathrm{log1p}(h/y) + h / (2 y (y + h)) - (T(y + h) - T(y))` with
    :math:`T` the sum of Stirling's series for :math:`\psi`."""
    large = y >= _STIRLING_FROM
    ys = torch.where(large, y, _STIRLING_FROM)
    yh = ys + h
    stirling = (
        torch.log1p(h / ys)
        + h / (2.0 * ys * yh)
        - (_stirling_sum(yh, _STIRLING_DIGAMMA, 2) - _stirling_sum(ys, _STIRLING_DIGAMMA, 2))
    )
    yd = torch.where(large, 1.0, y)
    direct = torch.digamma(yd + h) - torch.digamma(yd)
    return torch.where(large, stirling, direct)


def lgamma_bregman(c: Tensor, s: Tensor) -> Tensor:
    r""":math:`\log\Gamma(c + s) - \log\Gamma(c) - s\,\psi(c) = \sum_{n \ge 2} s^n \psi^{(n-1)}(c) / n!`
    for :math:`|s| \le c / 8` (``TAYLOR_RATIO``): the Bregman divergence of :math:`\log\Gamma`, of
    order :math:`s^2`, to full relative precision (the three-term difference cancels to nothing)."""
    # torch.polygamma(1, .) (trigamma) is only accurate to about 5e-10 on CPU (torch 2.13); the
    # Hurwitz zeta gives psi'(c) = zeta(2, c) to 1e-16. Higher orders are accurate as they are.
    total = s * s / 2.0 * torch.special.zeta(torch.full_like(c, 2.0), c)
    power = s * s * s / 6.0
    for n in range(3, _TAYLOR_TERMS + 2):
        total = total + power * torch.polygamma(n - 1, c)
        power = power * s / (n + 1)
    return total
