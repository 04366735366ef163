r"""High-precision references to check an implementation against (needs mpmath).

Like ``numpy.testing`` and ``torch.testing``, this module is for tests, not for models: it gives
the values that :mod:`spherical_dists.special` and the distributions are checked against, computed
with `mpmath <https://mpmath.org>`_ at :data:`DIGITS` significant digits (50 by default), in
arbitrary precision and independently of this package's float64 code. The package's test suite,
its benchmarks (``benchmarks/bench_special.py``) and its accuracy figure use them.

* :func:`log_iv`, :func:`log_iv_minus_v_log_x` and :func:`iv_ratio`: :math:`\log I_v(x)`,
  :math:`\log I_v(x) - v \log x` and :math:`I_{v+1}(x) / I_v(x)`;
* :func:`vmf_log_normalizer` and :func:`log_sphere_area`: :math:`\log C_p(\kappa)` of the von
  Mises-Fisher density and :math:`\log |S^{p-1}|`.

The functions take Python floats (or mpmath numbers) and return ``mpmath.mpf`` numbers;
``float(value)`` rounds one to float64. They are scalar and slow (a millisecond to a few tenths
of a second a value): meant for hundreds of points, not for tensors. mpmath's global precision is
left as it was: each call works at :data:`DIGITS` + 10 digits in its own context.

:func:`log_iv` uses mpmath's ``besseli`` where it converges in milliseconds (:math:`x \le 10^4`)
and otherwise the integral representation (DLMF 10.32.2)

.. math::

    I_v(x) = \frac{(x/2)^v}{\sqrt{\pi}\, \Gamma(v + 1/2)} \int_{-1}^{1} (1 - t^2)^{v - 1/2} e^{x t} \, dt,

integrated by tanh-sinh quadrature split around the peak of the integrand. For :math:`v < 1` the
integrand is singular at the ends, so the value comes from orders :math:`v + 1` and :math:`v + 2`
through :math:`I_v = I_{v+2} + (2 (v + 1) / x) I_{v+1}`, a sum of positive terms. The two methods
are independent; ``tests/data/make_special_reference.py`` checks that they agree where both apply.

mpmath is not a dependency of the package: install it with ``pip install mpmath``, or with the
``test`` extra (``pip install spherical-dists[test]``); without it, importing this module raises
an :class:`ImportError` that says so.

Examples
--------
>>> import torch
>>> from spherical_dists import special, testing
>>> v, x = 2.5, [1e-3, 1.0, 30.0, 1e5]
>>> ours = special.log_iv(v, torch.tensor(x, dtype=torch.float64))
>>> exact = [testing.log_iv(v, t) for t in x]
>>> max(abs(float(a) - float(b)) / max(abs(float(b)), 1.0) for a, b in zip(ours, exact)) < 1e-13
True
"""

from __future__ import annotations

try:
    import mpmath as mp
except ImportError as error:  # pragma: no cover - exercised only without mpmath
    raise ImportError(
        "spherical_dists.testing needs mpmath: install it with `pip install mpmath` "
        "(or with the test extra, `pip install spherical-dists[test]`)"
    ) from error

__all__ = ["DIGITS", "log_iv", "log_iv_minus_v_log_x", "iv_ratio", "vmf_log_normalizer", "log_sphere_area"]

#: Significant digits of the references (50 by default); each call works at ``DIGITS + 10``.
#: Assign ``spherical_dists.testing.DIGITS = 25`` to trade digits for speed; the functions read
#: it at every call.
DIGITS = 50
_BESSELI_MAX_X = 1e4


def _log_iv_quadrature(v: mp.mpf, x: mp.mpf) -> mp.mpf:
    a = v - mp.mpf(1) / 2

    def log_integrand(t: mp.mpf) -> mp.mpf:
        return a * mp.log1p(-t * t) + x * t

    peak = x / (a + mp.sqrt(a * a + x * x))
    width = (1 - peak**2) / mp.sqrt(2 * a * (1 + peak**2))
    top = log_integrand(peak)
    cuts = [peak + k * width for k in (-60, -15, -4, 0, 4, 15, 60)]
    points = sorted({mp.mpf(-1), mp.mpf(1), *[t for t in cuts if -1 < t < 1]})
    integral = mp.quad(lambda t: mp.exp(log_integrand(t) - top), points)
    return v * mp.log(x / 2) - mp.log(mp.pi) / 2 - mp.loggamma(v + mp.mpf(1) / 2) + top + mp.log(integral)


def log_iv(v: float | mp.mpf, x: float | mp.mpf, method: str = "auto") -> mp.mpf:
    r""":math:`\log I_v(x)` for :math:`v \ge 0`, :math:`x \ge 0` (``-inf`` at :math:`x = 0 < v`).

    ``method="auto"`` uses mpmath's ``besseli`` for :math:`x \le 10^4` and the integral
    representation beyond (see the module's description); ``"besseli"`` or ``"quadrature"``
    forces one of the two, for instance to check that they agree.
    """
    with mp.workdps(DIGITS + 10):
        v, x = mp.mpf(v), mp.mpf(x)
        if x == 0:
            return mp.mpf(0) if v == 0 else mp.mpf("-inf")
        if method == "besseli" or (method == "auto" and x <= _BESSELI_MAX_X):
            return mp.log(mp.besseli(v, x, maxterms=10**6))
        if v >= 1:
            return _log_iv_quadrature(v, x)
        low, high = _log_iv_quadrature(v + 1, x), _log_iv_quadrature(v + 2, x)
        return high + mp.log1p(2 * (v + 1) / x * mp.exp(low - high))


def log_iv_minus_v_log_x(v: float | mp.mpf, x: float | mp.mpf) -> mp.mpf:
    r""":math:`F(v, x) = \log I_v(x) - v \log x`, finite at :math:`x = 0`
    (where it is :math:`-v \log 2 - \log\Gamma(v + 1)`)."""
    with mp.workdps(DIGITS + 10):
        v, x = mp.mpf(v), mp.mpf(x)
        if x == 0:
            return -v * mp.log(2) - mp.loggamma(v + 1)
        return log_iv(v, x) - v * mp.log(x)


def iv_ratio(v: float | mp.mpf, x: float | mp.mpf) -> mp.mpf:
    r""":math:`I_{v+1}(x) / I_v(x)` (0 at :math:`x = 0`)."""
    with mp.workdps(DIGITS + 10):
        v, x = mp.mpf(v), mp.mpf(x)
        if x == 0:
            return mp.mpf(0)
        return mp.exp(log_iv(v + 1, x) - log_iv(v, x))


def vmf_log_normalizer(p: int | float, kappa: float | mp.mpf) -> mp.mpf:
    r"""The log-normaliser of the von Mises-Fisher density on :math:`S^{p-1}`,
    :math:`\log C_p(\kappa) = -\frac{p}{2} \log(2 \pi) - \left(\log I_v(\kappa) - v \log \kappa\right)`
    with :math:`v = p/2 - 1`."""
    with mp.workdps(DIGITS + 10):
        v = mp.mpf(p) / 2 - 1
        return -(v + 1) * mp.log(2 * mp.pi) - log_iv_minus_v_log_x(v, kappa)


def log_sphere_area(p: int | float) -> mp.mpf:
    r""":math:`\log |S^{p-1}| = \log\left(2 \pi^{p/2} / \Gamma(p/2)\right)`, the log surface area of
    the unit sphere in :math:`\mathbb{R}^p`."""
    with mp.workdps(DIGITS + 10):
        h = mp.mpf(p) / 2
        return mp.log(2) + h * mp.log(mp.pi) - mp.loggamma(h)
