"""Exact coefficients of Debye's uniform asymptotic expansion of I_v.

For order v and argument x = v z, with s = sqrt(1 + z^2) and p = 1/s (DLMF 10.41.3),

    I_v(v z) ~ exp(v eta) / (sqrt(2 pi v) (1 + z^2)^(1/4)) * sum_k U_k(p) / v^k,

where the polynomials U_k follow the recurrence (DLMF 10.41.10)

    U_{k+1}(p) = p^2 (1 - p^2) U_k'(p) / 2 + (1/8) int_0^p (1 - 5 t^2) U_k(t) dt.

The derivative expansion (DLMF 10.41.4) has polynomials V_k with
V_k = U_k + p (p^2 - 1) (U_{k-1} / 2 + p U_{k-1}')  (DLMF 10.41.12). Because V_k(1) = U_k(1),
the difference is divisible by (1 - p):

    W_k(p) = (V_k(p) - U_k(p)) / (1 - p) = -(1 + p) p (U_{k-1}(p) / 2 + p U_{k-1}'(p)),

which lets the ratio I_{v+1}/I_v be written without cancellation at small z (see ``_bessel``).

U_k(p) holds only the powers p^k, p^(k+2), ..., p^(3k), so U_k(p) = p^k Q_k(p^2) with Q_k of
degree k; likewise W_k(p) = -(1 + p) p^k R_k(p^2) with R_k of degree k - 1. The evaluation uses
Q_k and R_k. The coefficients are built once, exactly, with rational arithmetic.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache

Poly = list[Fraction]  # coefficient of the variable**m at index m


def _add(a: Poly, b: Poly) -> Poly:
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else Fraction(0)) + (b[i] if i < len(b) else Fraction(0)) for i in range(n)]


def _mul(a: Poly, b: Poly) -> Poly:
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            out[i + j] += ai * bj
    return out


def _trim(a: Poly) -> Poly:
    while len(a) > 1 and a[-1] == 0:
        a = a[:-1]
    return a


def _derivative(a: Poly) -> Poly:
    return [i * a[i] for i in range(1, len(a))] or [Fraction(0)]


def _integral(a: Poly) -> Poly:
    return [Fraction(0)] + [c / (i + 1) for i, c in enumerate(a)]


def u_polynomials(order: int) -> list[Poly]:
    """U_0, ..., U_order as coefficient lists in powers of p."""
    half_p2_minus_half_p4 = [Fraction(0), Fraction(0), Fraction(1, 2), Fraction(0), Fraction(-1, 2)]
    one_minus_5p2 = [Fraction(1), Fraction(0), Fraction(-5)]
    us: list[Poly] = [[Fraction(1)]]
    for _ in range(order):
        u = us[-1]
        term1 = _mul(half_p2_minus_half_p4, _derivative(u))
        term2 = [c / 8 for c in _integral(_mul(one_minus_5p2, u))]
        us.append(_trim(_add(term1, term2)))
    return us


def _even_part_from(poly: Poly, start: int) -> Poly:
    """Coefficients c_j of poly(p) = p^start sum_j c_j p^(2j), checking the odd part is zero."""
    assert all(c == 0 for c in poly[:start]) and all(c == 0 for c in poly[start + 1 :: 2])
    return list(poly[start::2])


@cache
def debye_q_r(order: int) -> tuple[tuple[tuple[Fraction, ...], ...], tuple[tuple[Fraction, ...], ...]]:
    """``(Q, R)``: Q_k and R_k (k = 0..order) as coefficient lists in powers of y = p^2."""
    us = u_polynomials(order)
    qs = [_even_part_from(us[k], k) for k in range(order + 1)]
    rs: list[Poly] = [[Fraction(0)]]
    for k in range(1, order + 1):
        u = us[k - 1]
        inner = _mul(
            [Fraction(0), Fraction(1)], _add([c / 2 for c in u], _mul([Fraction(0), Fraction(1)], _derivative(u)))
        )
        rs.append(_even_part_from(_trim(inner), k))
    return tuple(tuple(q) for q in qs), tuple(tuple(r) for r in rs)
