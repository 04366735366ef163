"""Regenerate ``special_reference.csv``: log I_v(x), F = log I_v(x) - v log x and I_{v+1}/I_v
at 50 digits on a grid that covers the extremes (v up to 1e5, x from 0 to 1e8, x near v, tiny x
at huge v), where mpmath's ``besseli`` alone would be too slow for a test run.

Run from the repository root:  python tests/data/make_special_reference.py  (about a minute)
"""

from __future__ import annotations

import csv
from pathlib import Path

import mpmath as mp

from spherical_dists import testing as ref

ORDERS = [0, 1e-3, 0.25, 0.5, 1, 2.5, 9.5, 19.9, 20, 20.5, 49, 100, 511, 1000, 8191, 10000, 32767, 1e5]
ARGUMENTS = [0, 1e-300, 1e-30, 1e-8, 1e-3, 0.1, 0.999, 1, 1.001, 3, 10, 19, 40, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8]
RELATIVE = [0.01, 0.5, 0.999, 1, 1.001, 2, 10]
OUT = Path(__file__).with_name("special_reference.csv")


def grid() -> list[tuple[float, float]]:
    points = {(float(v), float(x)) for v in ORDERS for x in ARGUMENTS}
    points |= {(float(v), float(v) * r) for v in ORDERS if v >= 1 for r in RELATIVE}
    points |= {(float(v), float(v) + d) for v in ORDERS if v >= 1 for d in (-1.0, 1.0)}
    return sorted(points)


def cross_check() -> None:
    """The quadrature and besseli must agree where both are usable."""
    for v in (0.0, 0.25, 3.5, 50.0, 1e3, 1e5):
        for x in (1.5e3, 5e3, 1e4):
            a = ref.log_iv(v, x, method="besseli")
            b = ref.log_iv(v, x, method="quadrature")
            assert abs(a - b) <= mp.mpf(10) ** (-40) * max(1, abs(a)), (v, x, a, b)


def main() -> None:
    cross_check()
    rows = []
    for v, x in grid():
        log_i = ref.log_iv(v, x)
        rows.append(
            {
                "v": repr(v),
                "x": repr(x),
                "log_iv": mp.nstr(log_i, 30),
                "log_iv_minus_v_log_x": mp.nstr(ref.log_iv_minus_v_log_x(v, x), 30),
                "iv_ratio": mp.nstr(ref.iv_ratio(v, x), 30),
            }
        )
    with OUT.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
