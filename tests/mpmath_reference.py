"""High-precision references for the Bessel tests (mpmath, 50 significant digits).

``log_iv`` uses mpmath's ``besseli`` where it converges in milliseconds (x <= 1e4) and otherwise
the integral representation (DLMF 10.32.2)

    I_v(x) = (x/2)^v / (sqrt(pi) Gamma(v + 1/2)) * int_{-1}^{1} (1 - t^2)^(v - 1/2) exp(x t) dt,

integrated by tanh-sinh quadrature split around the peak of the integrand. For v < 1 the
integrand is singular at the ends, so the value comes from orders v + 1 and v + 2 through
I_v = I_{v+2} + (2 (v + 1) / x) I_{v+1}, a sum of positive terms. The two methods are
independent; ``make_special_reference.py`` checks that they agree where both apply.
"""

from __future__ import annotations

import mpmath as mp

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
    """log I_v(x) for v >= 0, x >= 0 (``-inf`` at x = 0 < v)."""
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
    """F(v, x) = log I_v(x) - v log x, finite at x = 0."""
    with mp.workdps(DIGITS + 10):
        v, x = mp.mpf(v), mp.mpf(x)
        if x == 0:
            return -v * mp.log(2) - mp.loggamma(v + 1)
        return log_iv(v, x) - v * mp.log(x)


def iv_ratio(v: float | mp.mpf, x: float | mp.mpf) -> mp.mpf:
    """I_{v+1}(x) / I_v(x)."""
    with mp.workdps(DIGITS + 10):
        v, x = mp.mpf(v), mp.mpf(x)
        if x == 0:
            return mp.mpf(0)
        return mp.exp(log_iv(v + 1, x) - log_iv(v, x))


def vmf_log_normalizer(p: int | float, kappa: float | mp.mpf) -> mp.mpf:
    """log C_p(kappa) = -(p/2) log(2 pi) - (log I_{p/2-1}(kappa) - (p/2-1) log kappa)."""
    with mp.workdps(DIGITS + 10):
        v = mp.mpf(p) / 2 - 1
        return -(v + 1) * mp.log(2 * mp.pi) - log_iv_minus_v_log_x(v, kappa)


def log_sphere_area(p: int | float) -> mp.mpf:
    """log |S^{p-1}| = log(2 pi^{p/2} / Gamma(p/2))."""
    with mp.workdps(DIGITS + 10):
        h = mp.mpf(p) / 2
        return mp.log(2) + h * mp.log(mp.pi) - mp.loggamma(h)
