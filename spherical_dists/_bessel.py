r"""Modified Bessel function of the first kind in log space, for real order v >= 0 and x >= 0.

Everything is computed in float64 from quantities that are free of cancellation:

* ``F = log I_v(x) - v log x``, finite on [0, inf) (``F(v, 0) = -v log 2 - lgamma(v + 1)``);
* ``E = log I_v(x) - x`` (the log of the exponentially scaled function);
* ``A = I_{v+1}(x) / I_v(x)``, with ``dF/dx = A``;
* ``G = F(v, x) - F(v, 0) = log 0F1(; v + 1; x^2 / 4) >= 0``, accurate to relative precision even
  where it is tiny (the KL divergences at small concentration need it);
* ``1 - A``, accurate to relative precision as A -> 1 (the KL at large concentration needs it);
* ``log I_v(x)`` itself, as ``F + v log x`` or ``E + x``, whichever has the smaller terms.

Each is computed only when asked for: ``log_iv`` without gradients needs F and E alone, which
skips the sums of the ratio's expansion, G's log1p terms and every 1 - A (log_iv became
1.5-2.3x faster than with all six computed, per region of benchmarks/bench_special.py: the
means of two interleaved A/B runs, 2 threads).

Regions (r = sqrt(v^2 + x^2)):

1. Series, x^2 <= v + 1: ``I_v(x) = (x/2)^v / Gamma(v+1) * sum_k q^k / (k! (v+1)_k)`` with
   q = x^2 / 4 <= (v + 1) / 4; all terms are positive, the k-th is below 4^-k / k!, and 14 of
   them leave a truncation error below 1e-19.
2. Debye, the rest (v >= 20 or x >= 50): the uniform asymptotic expansion (DLMF 10.41.3), written in
   terms of r so that it holds down to v = 0 (where it becomes Hankel's expansion in 1/x). Its
   k-th correction is ``Q_k(y) / r^k`` with y = (v/r)^2 and ``max_y |Q_k(y)|`` tabulated in
   ``_debye``; 13 terms leave an error below 1e-17 for r >= 42, 6 terms for r >= 400 and 3 for
   r >= 2e4 (the CPU path uses the shorter sums there). The ratio A uses the companion expansion of I_v':
   ``A = x / (v + r) * (1 + sum W_k / v^k) / (sum U_k / v^k)``, exact as x -> 0 and x -> inf.
3. Shifted Debye plus recurrence, v < 20 and sqrt(v + 1) < x < 50: the expansion at order nu = v + 20
   gives log I_nu and I_{nu+1}/I_nu; the backward recurrence ``R_j = 1 / (2 j / x + R_{j+1})``
   with ``R_j = I_j / I_{j-1}`` is stable for the minimal solution I and brings both down to
   order v in 20 steps. The product of the 20 ratios stays in [1e-38, 1] for x > 1, so it is
   accumulated as a product and logged once.

Two dispatch strategies evaluate the same region formulas: on CPU in eager mode each region runs
on its own elements only, in cache-sized chunks (several times faster); on CUDA and under
``torch.compile`` every region is evaluated on every element and the right one is picked with
``torch.where``, which has no data-dependent shapes and never synchronises with the host.

The error target is 1e-13 relative in float64 (absolute where the value is below 1 in magnitude);
the tests check it against mpmath at 50 digits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._cancellation import sum_with_smaller_terms
from ._debye import debye_q_r
from ._gamma import binet
from ._threads import thread_pool

DEBYE_MIN_ORDER = 20.0  # Debye is used at orders >= this ...
DEBYE_MIN_X = 50.0  # ... or at arguments >= this, whatever the order
_SERIES_TERMS = 14  # the series is used for x^2 <= v + 1
_DEBYE_TERMS = 13  # error < 1e-17 for r >= 42 (so for every element that reaches Debye)
# Shorter sums for larger r, used by the CPU path: (smallest r, terms), the omitted term's
# bound max_y |Q_{K+1}(y)| / r^(K+1) staying below 1e-17 (6 terms: r >= 357; 3 terms: r >= 1.8e4).
_DEBYE_SHORT = ((2e4, 3), (400.0, 6))
_RECURRENCE_STEPS = 20  # region 3 starts the recurrence at v + 20 >= DEBYE_MIN_ORDER
_LOG_2PI = math.log(2 * math.pi)
_LOG_2 = math.log(2.0)
# Elements per chunk on CPU, the unit spread over the worker threads of ``_threads``: the region
# masks and the gather/scatter run once per chunk, so smaller chunks pay more fixed costs per
# element (2 threads, log-uniform v and x, before the pieces below: 4.0 Melem/s at 2^15, 5.5 at
# 2^16, 6.9 at 2^18).
_CHUNK = 1 << 18
# Each region's formulas then run on pieces of at most this many elements, whose temporaries
# (512 KiB in float64) stay near the cache: 1.05-1.5x faster than whole chunks over the seven
# regions of benchmarks/bench_special.py (2 threads, interleaved A/B); 2^15 and 2^17 are within
# the noise of it, 2^14 is slower.
_PIECE = 1 << 16

# The quantities the core computes, each only when asked for (see the module docstring):
# F = log I_v(x) - v log x, E = log I_v(x) - x, A = I_{v+1}(x) / I_v(x), G = F(v, x) - F(v, 0),
# B = 1 - A, and log I_v(x) itself, formed piece by piece from F and E.
QUANTITIES = ("f", "e", "a", "g", "b", "log_iv")
Parts = dict[str, Tensor]
Want = frozenset[str]
# What each value at x = inf is (where the formulas are given a finite stand-in).
_AT_INFINITY = {"f": math.inf, "e": -math.inf, "a": 1.0, "g": math.inf, "b": 0.0, "log_iv": math.inf}

_coefficient_cache: dict[tuple[torch.device, int], Tensor] = {}


def _log_iv_minus_v_log_x_at_zero(v: Tensor) -> Tensor:
    """F(v, 0) = -v log 2 - lgamma(v + 1)."""
    return -v * _LOG_2 - torch.lgamma(v + 1.0)


def _build_debye_matrix(terms: int) -> Tensor:
    """(2K + 2, K + 1) float64: row k holds Q_k, row K + 1 + k holds R_k, by power of y."""
    qs, rs = debye_q_r(terms)
    rows = [[float(c) for c in poly] + [0.0] * (terms + 1 - len(poly)) for poly in (*qs, *rs)]
    return torch.tensor(rows, dtype=torch.float64)


# Built once at import, on the CPU (a few milliseconds of exact rational arithmetic); copies on
# other devices are cached on first use in eager mode.
_CPU_MATRICES = {terms: _build_debye_matrix(terms) for terms in (_DEBYE_TERMS, *(t for _, t in _DEBYE_SHORT))}


def _debye_matrix(device: torch.device, terms: int) -> Tensor:
    mat = _CPU_MATRICES[terms]
    if device.type == "cpu":
        return mat
    if torch.compiler.is_compiling():  # no cache mutation inside a compiled graph
        return mat.to(device)
    key = (device, terms)
    if key not in _coefficient_cache:
        _coefficient_cache[key] = mat.to(device)
    return _coefficient_cache[key]


def _computed(value: Tensor | None) -> Tensor:
    """A quantity that the region computed because the one asked for needs it (see ``_at_shifted_order``)."""
    if value is None:
        raise RuntimeError("internal error: a Bessel quantity was used without being computed")
    return value


def _log_iv_from(v: Tensor, x: Tensor, f: Tensor, e: Tensor) -> Tensor:
    """log I_v(x) = F + v log x = E + x, from the decomposition whose terms are smaller (less rounding)."""
    return sum_with_smaller_terms((f, torch.xlogy(v, x)), (e, x))  # xlogy: 0 at v = 0, even at x = 0


def _debye(nu: Tensor, x: Tensor, want: Want, terms: int = _DEBYE_TERMS) -> Parts:
    """Debye's expansion at order ``nu`` for 1-D tensors with sqrt(nu^2 + x^2) >= 42.

    With r = sqrt(nu^2 + x^2), y = (nu / r)^2 and u = 1 / r, the sums are
    ``sum_k U_k(p) / nu^k = sum_k u^k Q_k(y)`` and ``sum_k W_k(p) / nu^k = -(1 + p) sum_k u^k R_k(y)``
    (p = nu / r), and ``nu * eta - log I_nu``'s other terms are rewritten without dividing by nu.
    At x = 0 the sum of U_k is exp(-mu(nu)) (Stirling's series), which gives G = F(x) - F(0)
    without subtracting two large numbers. Only the quantities in ``want`` are computed (the
    sums of R_k only for A and 1 - A).
    """
    need_ratio = "a" in want or "b" in want
    r = torch.hypot(nu, x)
    u = 1.0 / r
    p = nu * u
    y = p * p
    y_pow = torch.empty(terms + 1, *y.shape, dtype=y.dtype, device=y.device)
    y_pow[0] = 1.0
    for j in range(1, terms + 1):
        torch.mul(y_pow[j - 1], y, out=y_pow[j])
    matrix = _debye_matrix(x.device, terms)
    qr = (matrix if need_ratio else matrix[: terms + 1]) @ y_pow  # the Q_k(y) (and R_k(y)) in one product
    sum_u = qr[terms]
    for j in range(terms - 1, -1, -1):  # Horner in u
        sum_u = torch.addcmul(qr[j], u, sum_u)
    log_sum_u = torch.log(sum_u)
    out: Parts = {}
    # G's formula holds for orders >= 20; on CPU the usual case is every order >= 20, where G needs
    # neither F nor lgamma (checked only when G is asked for: the check is a pass and a sync).
    high = nu >= DEBYE_MIN_ORDER if "g" in want else None
    all_high = high is not None and x.device.type == "cpu" and not torch.compiler.is_compiling() and bool(high.all())
    need_f = bool(want & {"f", "log_iv"}) or ("g" in want and not all_high)
    need_e = bool(want & {"e", "log_iv"})
    if need_f or need_e:
        common = log_sum_u - 0.5 * (_LOG_2PI + torch.log(r))
        # nu * eta = r - nu * asinh(nu / x) and nu * eta - nu log x = r - nu log(nu + r).
        f = r - torch.xlogy(nu, nu + r) + common if need_f else None
        e = nu * nu / (r + x) - nu * torch.asinh(nu / x) + common if need_e else None
        if f is not None and "f" in want:
            out["f"] = f
        if e is not None and "e" in want:
            out["e"] = e
        if "log_iv" in want:
            out["log_iv"] = _log_iv_from(nu, x, _computed(f), _computed(e))
    if "g" in want:
        # G = (r - nu) - nu log((nu + r) / (2 nu)) - log(r / nu) / 2 + log sum_u + mu(nu), for nu >= 20;
        # below (only x >= 50 reaches here) G is large and F - F(0) is exact enough.
        r_minus_nu = x * x / (r + nu)
        g = r_minus_nu - nu * torch.log1p(r_minus_nu / (2.0 * nu)) - 0.5 * torch.log1p(r_minus_nu / nu) + log_sum_u
        if all_high:
            out["g"] = g + binet(nu)
        else:
            assert high is not None  # G was asked for
            out["g"] = torch.where(high, g + binet(nu), _computed(f) - _log_iv_minus_v_log_x_at_zero(nu))
    if need_ratio:
        sum_r = qr[2 * terms + 1]
        for j in range(terms - 1, -1, -1):
            sum_r = torch.addcmul(qr[terms + 1 + j], u, sum_r)
        w = (1.0 + p) * sum_r / sum_u  # 1 + sum W / sum U = 1 - w
        if "a" in want:
            out["a"] = x * (1.0 - w) / (nu + r)
        if "b" in want:
            # 1 - A = (nu + (r - x) + x w) / (nu + r), every term positive-definite in size.
            out["b"] = (nu + nu * nu / (r + x) + x * w) / (nu + r)
    return out


def _at_shifted_order(want: Want) -> Want:
    """What :func:`_recur_down` needs from the expansion at order v + 20 to give ``want``."""
    need = {"a"}
    if want & {"f", "g", "log_iv"}:
        need.add("f")
    if want & {"e", "log_iv"}:
        need.add("e")
    return frozenset(need)


def _recur_down(at_nu: Parts, v: Tensor, nu: Tensor, x: Tensor, want: Want) -> Parts:
    """From order nu = v + 20 down to v by the backward recurrence (needs x > 1)."""
    ratio = at_nu["a"]
    two_over_x = 2.0 / x
    start = nu * two_over_x
    product = torch.ones_like(x)
    for i in range(_RECURRENCE_STEPS):
        # R_j = 1 / (2 j / x + R_{j+1}) for j = nu - i, down to j = v + 1.
        ratio = torch.add(start, two_over_x, alpha=-i).add_(ratio).reciprocal_()
        product.mul_(ratio)
    # For x > 1 every ratio is >= 1/83, so the product of 20 cannot underflow.
    log_product = torch.log(product)
    out: Parts = {}
    f = at_nu["f"] + _RECURRENCE_STEPS * torch.log(x) - log_product if "f" in at_nu else None
    e = at_nu["e"] - log_product if "e" in at_nu else None
    if "f" in want:
        out["f"] = _computed(f)
    if "e" in want:
        out["e"] = _computed(e)
    if "log_iv" in want:
        out["log_iv"] = _log_iv_from(v, x, _computed(f), _computed(e))
    if "g" in want:
        # Here x^2 > v + 1, so G >= 1/4 while |F| and |F(0)| stay below about 60.
        out["g"] = _computed(f) - _log_iv_minus_v_log_x_at_zero(v)
    if "a" in want:
        out["a"] = ratio
    if "b" in want:
        out["b"] = 1.0 - ratio  # A < 0.99 here: 1 - A is exact
    return out


def _shifted_debye(v: Tensor, x: Tensor, want: Want) -> Parts:
    """Region 3: Debye at nu = v + 20, then 20 backward recurrence steps."""
    nu = v + _RECURRENCE_STEPS
    return _recur_down(_debye(nu, x, _at_shifted_order(want)), v, nu, x, want)


def _series_terms(ratio: float) -> int:
    """Fewest terms N with ratio^N / N! <= 1e-19, the bound of the first omitted term when
    ratio >= q / (v + 1) (the k-th term is below (q / (v + 1))^k / k!)."""
    terms, bound = 1, ratio
    while bound > 1e-19 and terms < _SERIES_TERMS:
        terms += 1
        bound *= ratio / terms
    return max(terms, 2)


def _series(v: Tensor, x: Tensor, want: Want, terms: int = _SERIES_TERMS) -> Parts:
    """Region 1: power series for x^2 <= v + 1 (positive terms; truncation below 1e-19).

    ``terms`` may be lowered by the caller when q / (v + 1) is small for every element (large
    orders at small arguments need only a few)."""
    need_ratio = "a" in want or "b" in want
    q = 0.25 * x * x
    one = torch.ones_like(x)
    s0, s1 = one, one
    for k in range(terms - 1, 1, -1):
        # s <- 1 + q s / (k (v + k)), Horner from the last term
        s0 = torch.addcdiv(one, q * s0, v + k, value=1.0 / k)
        if need_ratio:
            s1 = torch.addcdiv(one, q * s1, v + (k + 1.0), value=1.0 / k)
    s0_minus_1 = q * s0 / (v + 1.0)  # the k = 1 step, kept apart: G = log1p(s0 - 1) exactly
    g = torch.log1p(s0_minus_1)
    out: Parts = {}
    if "g" in want:
        out["g"] = g
    if want & {"f", "e", "log_iv"}:
        f = _log_iv_minus_v_log_x_at_zero(v) + g
        if "f" in want:
            out["f"] = f
        log_iv = f + torch.xlogy(v, x)  # F + v log x is exact here: E is derived from it
        if "log_iv" in want:
            out["log_iv"] = log_iv
        if "e" in want:
            out["e"] = log_iv - x
    if need_ratio:
        s1 = 1.0 + q * s1 / (v + 2.0)
        a = x * s1 / (2.0 * (v + 1.0) * (1.0 + s0_minus_1))
        if "a" in want:
            out["a"] = a
        if "b" in want:
            out["b"] = 1.0 - a
    return out


def _regions(v: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean masks of regions 1 and 3 (region 2 is the rest)."""
    in_series = x * x <= v + 1.0
    in_shifted = (v < DEBYE_MIN_ORDER) & (x < DEBYE_MIN_X) & ~in_series
    return in_series, in_shifted


def _masked(v: Tensor, x: Tensor, want: Want) -> Parts:
    """Every region on every element, selected with torch.where (no data-dependent shapes)."""
    in_series, in_shifted = _regions(v, x)
    series = _series(v, torch.where(in_series, x, 0.0), want)
    # One Debye evaluation serves regions 2 and 3; x = 2 keeps the discarded branches finite.
    x_debye = torch.where(in_series, 2.0, x)
    nu = torch.where((v < DEBYE_MIN_ORDER) & (x_debye < DEBYE_MIN_X), v + _RECURRENCE_STEPS, v)
    debye = _debye(nu, x_debye, want | _at_shifted_order(want))
    recurred = _recur_down(debye, v, nu, x_debye, want)
    return {k: torch.where(in_series, series[k], torch.where(in_shifted, recurred[k], debye[k])) for k in want}


def _gathered(v: Tensor, x: Tensor, want: Want) -> Parts:
    """Each region on its own elements only, in cache-sized chunks spread over
    ``torch.get_num_threads()`` worker threads (eager CPU; every element is computed the same way
    whatever the thread count)."""
    out = {k: torch.empty_like(x) for k in want}
    starts = range(0, x.numel(), _CHUNK)
    if torch.get_num_threads() > 1 and len(starts) > 1:
        for _ in thread_pool().map(functools.partial(_gathered_chunk, v, x, out), starts):
            pass  # re-raises a worker's exception here
    else:
        for begin in starts:
            _gathered_chunk(v, x, out, begin)
    return out


def _gathered_chunk(v: Tensor, x: Tensor, out: Parts, begin: int) -> None:
    """One chunk of :func:`_gathered`, written into ``out``."""
    with torch.no_grad():  # worker threads do not inherit the caller's grad mode
        want = frozenset(out)
        vc, xc = v[begin : begin + _CHUNK], x[begin : begin + _CHUNK]
        targets = {k: t[begin : begin + _CHUNK] for k, t in out.items()}
        in_series, in_shifted = _regions(vc, xc)
        remaining = ~(in_series | in_shifted)
        r = torch.hypot(vc, xc)
        if in_series.any():
            series_ratio = float((0.25 * xc[in_series] ** 2 / (vc[in_series] + 1.0)).max())
        else:
            series_ratio = 0.0
        jobs: list[tuple[Tensor, Callable[[Tensor, Tensor, Want], Parts]]] = [
            (in_series, functools.partial(_series, terms=_series_terms(series_ratio))),
            (in_shifted, _shifted_debye),
        ]
        for min_r, terms in _DEBYE_SHORT:
            tier = remaining & (r >= min_r)
            jobs.append((tier, functools.partial(_debye, terms=terms)))
            remaining = remaining & ~tier
        jobs.append((remaining, _debye))
        for mask, compute in jobs:
            index = mask.nonzero().squeeze(-1)
            whole = index.numel() == xc.numel()  # the whole chunk: no gather or scatter
            for start in range(0, index.numel(), _PIECE):
                if whole:
                    piece = slice(start, start + _PIECE)
                    for k, value in compute(vc[piece], xc[piece], want).items():
                        targets[k][piece].copy_(value)
                else:
                    rows = index[start : start + _PIECE]
                    for k, value in compute(vc[rows], xc[rows], want).items():
                        targets[k][rows] = value


def _inputs_are_regular(v: Tensor, x: Tensor) -> bool:
    """True when every v and x is finite and >= 0 (two reductions; NaN makes them fail)."""
    if v.numel() == 0:
        return True
    v_min, v_max = torch.aminmax(v)
    x_min, x_max = torch.aminmax(x)
    return bool((v_min >= 0) & (v_max < math.inf) & (x_min >= 0) & (x_max < math.inf))


def log_bessel_parts(v: Tensor, x: Tensor, want: Want | tuple[str, ...] = frozenset(QUANTITIES)) -> Parts:
    """The quantities named in ``want`` (see ``QUANTITIES``) for float64 tensors of a common
    shape; NaN outside v >= 0, x >= 0."""
    want = frozenset(want)
    unknown = want - set(QUANTITIES)
    if unknown:
        raise ValueError(f"unknown quantities {sorted(unknown)}; known: {QUANTITIES}")
    shape = x.shape
    v, x = v.reshape(-1), x.reshape(-1)
    eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
    if eager_cpu and _inputs_are_regular(v, x):  # the common case: no stand-ins, no full passes
        return {k: t.reshape(shape) for k, t in _gathered(v, x, want).items()}
    invalid = (v < 0) | (x < 0) | torch.isnan(v) | torch.isnan(x) | torch.isinf(v)
    x_inf = torch.isinf(x) & ~invalid
    # Finite stand-ins so that no region sees inf or NaN; those elements are overwritten below.
    xf = torch.where(invalid | x_inf, torch.ones_like(x), x)
    vf = torch.where(invalid, torch.ones_like(v), v)
    parts = _gathered(vf, xf, want) if eager_cpu else _masked(vf, xf, want)
    return {
        k: torch.where(invalid, math.nan, torch.where(x_inf, _AT_INFINITY[k], t)).reshape(shape)
        for k, t in parts.items()
    }
