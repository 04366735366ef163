"""Accuracy and throughput of ``spherical_dists.special.log_iv`` beside ``scipy.special.ive``.

For each region of the (v, x) plane, random points (seeded) are evaluated by both libraries on
the same float64 inputs. Accuracy is the mixed error ``|value - ref| / max(|ref|, 1)`` against
mpmath at 50 digits (the test suite's reference, ``spherical_dists.testing``); scipy's value
is ``log(ive(v, x)) + x``, and the share of its results that are not finite is reported. The
throughput is elements per second on one million points per region, CPU float64 (median of
repeats, ours at torch's thread count and at one thread, interleaved with scipy's calls, which
run on one thread), and on CUDA when one is present.

    python benchmarks/bench_special.py [--accuracy-points 200] [--size 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import scipy.special
import torch

from spherical_dists import testing as ref
from spherical_dists.special import log_iv

Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _loguniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return 10.0 ** rng.uniform(lo, hi, n)


REGIONS: dict[str, Sampler] = {
    "v<20, x<=1 (series)": lambda r, n: (r.uniform(0, 20, n), _loguniform(r, -10, 0, n)),
    "v<20, 1<x<=1e4 (recurrence)": lambda r, n: (r.uniform(0, 20, n), _loguniform(r, 0, 4, n)),
    "v<20, 1e4<x<=1e7": lambda r, n: (r.uniform(0, 20, n), _loguniform(r, 4, 7, n)),
    "20<=v<=1e5, x<=v": lambda r, n: (v := _loguniform(r, math.log10(20), 5, n), v * _loguniform(r, -3, 0, n)),
    "20<=v<=1e5, v<x<=1e7": lambda r, n: (
        v := _loguniform(r, math.log10(20), 5, n),
        np.minimum(v * _loguniform(r, 0, 3, n), 1e7),
    ),
    "1e3<=v<=1e5, x<=1e-1": lambda r, n: (_loguniform(r, 3, 5, n), _loguniform(r, -300, -1, n)),
    "all: v,x log-uniform": lambda r, n: (_loguniform(r, -1, 5, n), _loguniform(r, -3, 7, n)),
}


def _scipy_log_iv(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.log(scipy.special.ive(v, x)) + x


def _ours(v: np.ndarray, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    return log_iv(torch.from_numpy(v).to(device), torch.from_numpy(x).to(device)).cpu().numpy()


def _accuracy(sampler: Sampler, points: int, seed: int) -> dict[str, float]:
    v, x = sampler(np.random.default_rng(seed), points)
    reference = np.array([float(ref.log_iv(vi, xi)) for vi, xi in zip(v, x)])
    scale = np.maximum(np.abs(reference), 1.0)
    ours = _ours(v, x)
    theirs = _scipy_log_iv(v, x)
    finite = np.isfinite(theirs)
    err_ours = np.abs(ours - reference) / scale
    err_scipy = np.abs(theirs[finite] - reference[finite]) / scale[finite]
    return {
        "ours_max_err": float(err_ours.max()),
        "ours_median_err": float(np.median(err_ours)),
        "ours_nonfinite": float(np.mean(~np.isfinite(ours))),
        "scipy_max_err_where_finite": float(err_scipy.max()) if err_scipy.size else math.nan,
        "scipy_median_err_where_finite": float(np.median(err_scipy)) if err_scipy.size else math.nan,
        "scipy_nonfinite": float(np.mean(~finite)),
    }


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, the calls interleaved round-robin so that a
    change of machine speed during the run hits every function alike (one untimed warm-up each)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _throughput(sampler: Sampler, size: int, repeats: int, seed: int) -> dict[str, float]:
    v, x = sampler(np.random.default_rng(seed), size)
    vt, xt = torch.from_numpy(v), torch.from_numpy(x)
    ours = lambda: log_iv(vt, xt)  # noqa: E731
    seconds = _interleaved({"ours_cpu_per_s": ours, "scipy_cpu_per_s": lambda: _scipy_log_iv(v, x)}, repeats)
    # Then ours on one thread, in a pass of its own (switching the thread count between calls
    # would make every call pay for restarting thread pools).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seconds |= _interleaved({"ours_cpu_1thread_per_s": ours}, repeats)
    finally:
        torch.set_num_threads(threads)
    out = {name: size / s for name, s in seconds.items()}
    if torch.cuda.is_available():
        vc, xc = vt.cuda(), xt.cuda()

        def on_cuda() -> None:
            log_iv(vc, xc)
            torch.cuda.synchronize()

        out["ours_cuda_per_s"] = size / _interleaved({"cuda": on_cuda}, repeats)["cuda"]
    return out


def _machine() -> dict[str, object]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return {
        "command": " ".join(sys.argv),
        "commit": commit,
        "uncommitted_changes": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None,
        "load_average_at_end": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "scipy": scipy.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accuracy-points", type=int, default=200, help="mpmath-checked points per region")
    parser.add_argument("--size", type=int, default=1_000_000, help="elements per region for the timing")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    rows = []
    for i, (name, sampler) in enumerate(REGIONS.items()):
        row = {"region": name}
        row.update(_accuracy(sampler, args.accuracy_points, args.seed + i))
        row.update(_throughput(sampler, args.size, args.repeats, args.seed + 100 + i))
        rows.append(row)
        print(f"done: {name}", file=sys.stderr)

    header = (
        f"{'region':30s} {'ours max err':>12s} {'scipy max err':>13s} {'scipy non-finite':>16s} "
        f"{'ours Melem/s':>12s} {'scipy Melem/s':>13s} {'ratio':>6s} {'1 thread':>8s}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['region']:30s} {r['ours_max_err']:12.2e} {r['scipy_max_err_where_finite']:13.2e} "
            f"{100 * r['scipy_nonfinite']:15.1f}% {r['ours_cpu_per_s'] / 1e6:12.2f} {r['scipy_cpu_per_s'] / 1e6:13.2f} "
            f"{r['ours_cpu_per_s'] / r['scipy_cpu_per_s']:6.2f} "
            f"{r['ours_cpu_1thread_per_s'] / r['scipy_cpu_per_s']:8.2f}"
            + (f"  cuda {r['ours_cuda_per_s'] / 1e6:.1f} Melem/s" if "ours_cuda_per_s" in r else "")
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"machine": _machine(), "args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
