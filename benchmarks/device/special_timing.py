"""Step 4 of the device pack: ``log_iv`` and ``vmf_log_normalizer`` on the GPU.

Accuracy, per region of the (v, x) plane, as the mixed error ``|value - ref| / max(|ref|, 1)``:

* against mpmath (``tests/data/special_reference.csv``, 50 digits) on the device and on the CPU;
* against the CPU's float64 value of the same function on a log-spaced grid over every region
  (``log_iv``), and over p in {3, 50, 1024, 16384} x log-spaced kappa (``vmf_log_normalizer``).

Throughput: elements per second of each function on the device, float64 and float32, median of
repeats after a warm-up. A dry run does the same on the CPU with small grids.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spherical_dists.special import log_iv, vmf_log_normalizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_sampler import Timer  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "special_reference.csv"
TARGET_ERROR = 1e-13  # float64, every region
DIMS = (3, 50, 1024, 16384)


def region(v: float, x: float) -> str:
    """The (v, x) region a point belongs to (the evaluation's regimes)."""
    if v < 20:
        if x <= 1:
            return "v<20, x<=1"
        return "v<20, 1<x<=1e4" if x <= 1e4 else "v<20, x>1e4"
    if x <= 0.1:
        return "v>=20, x<=0.1"
    return "v>=20, 0.1<x<=v" if x <= v else "v>=20, x>v"


def _mixed_error(value: np.ndarray, ref: np.ndarray) -> np.ndarray:
    both_inf = np.isinf(value) & np.isinf(ref) & (np.sign(value) == np.sign(ref))
    with np.errstate(invalid="ignore"):
        err = np.abs(value - ref) / np.maximum(np.abs(ref), 1.0)
    return np.where(both_inf, 0.0, np.where(np.isnan(err), np.inf, err))


def _by_region(v: np.ndarray, x: np.ndarray, err: np.ndarray) -> dict[str, dict[str, float]]:
    names = np.array([region(float(a), float(b)) for a, b in zip(v, x)])
    return {
        name: {"points": int((names == name).sum()), "max_error": float(err[names == name].max())}
        for name in sorted(set(names.tolist()))
    }


def _reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with REFERENCE.open() as f:
        rows = list(csv.DictReader(f))
    return tuple(np.array([float(r[k]) for r in rows]) for k in ("v", "x", "log_iv"))  # type: ignore[return-value]


def _log_iv_on(v: np.ndarray, x: np.ndarray, device: str, dtype: torch.dtype = torch.float64) -> np.ndarray:
    vt, xt = torch.from_numpy(v).to(device, dtype), torch.from_numpy(x).to(device, dtype)
    return log_iv(vt, xt).double().cpu().numpy()


def _accuracy(device: str, grid_points: int) -> dict[str, Any]:
    v, x, ref = _reference()
    out: dict[str, Any] = {
        "mpmath_device": _by_region(v, x, _mixed_error(_log_iv_on(v, x, device), ref)),
        "mpmath_cpu": _by_region(v, x, _mixed_error(_log_iv_on(v, x, "cpu"), ref)),
    }
    vs = np.concatenate([[0.0], np.logspace(-1, 5, grid_points)])
    xs = np.concatenate([[0.0], np.logspace(-10, 7, grid_points)])
    gv, gx = (a.ravel() for a in np.meshgrid(vs, xs))
    out["device_vs_cpu_log_iv"] = _by_region(
        gv, gx, _mixed_error(_log_iv_on(gv, gx, device), _log_iv_on(gv, gx, "cpu"))
    )
    kappa = torch.from_numpy(np.concatenate([[0.0], np.logspace(-3, 5, grid_points)]))
    normalizer: dict[str, dict[str, float]] = {}
    for p in DIMS:
        cpu = vmf_log_normalizer(p, kappa).numpy()
        dev = vmf_log_normalizer(p, kappa.to(device)).cpu().numpy()
        normalizer[f"p={p}"] = {"points": int(kappa.numel()), "max_error": float(_mixed_error(dev, cpu).max())}
    out["device_vs_cpu_vmf_log_normalizer"] = normalizer
    worst = [r["max_error"] for key in ("mpmath_device", "device_vs_cpu_log_iv") for r in out[key].values()]
    worst += [r["max_error"] for r in normalizer.values()]
    out["max_error"] = max(worst)
    out["target"] = TARGET_ERROR
    out["met"] = bool(out["max_error"] <= TARGET_ERROR)
    return out


def _throughput(device: str, size: int, seed: int, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    v, x = 10.0 ** rng.uniform(-1, 5, size), 10.0 ** rng.uniform(-3, 7, size)
    timer = Timer(device == "cuda")
    rows = []
    for dtype in (torch.float64, torch.float32):
        vt, xt = torch.from_numpy(v).to(device, dtype), torch.from_numpy(x).to(device, dtype)
        fns: dict[str, Callable[[], Any]] = {
            "log_iv": lambda vt=vt, xt=xt: log_iv(vt, xt),
            "vmf_log_normalizer(p=1024)": lambda xt=xt: vmf_log_normalizer(1024, xt),
        }
        for name, fn in fns.items():
            fn()  # warm-up
            seconds = float(np.median([timer(fn)[0] for _ in range(repeats)]))
            rows.append(
                {"function": name, "dtype": str(dtype).removeprefix("torch."), "elements_per_s": size / seconds}
            )
    return rows


def run(device: str, dry_run: bool, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {"accuracy": _accuracy(device, 40 if dry_run else 300)}
    result["throughput"] = _throughput(device, 10_000 if dry_run else 10_000_000, seed, 3 if dry_run else 7)
    result["seconds"] = time.perf_counter() - started
    return result


def _err(row: dict[str, Any] | None) -> str:
    return "-" if row is None else f"{row['max_error']:.2e}"


def markdown(result: dict[str, Any]) -> list[str]:
    acc = result["accuracy"]
    lines = [
        f"Max mixed error |value - ref| / max(|ref|, 1), float64: {acc['max_error']:.2e} "
        f"(target {acc['target']:.0e}: {'met' if acc['met'] else 'NOT met'}).",
        "",
        "| region | points (mpmath) | device vs mpmath | CPU vs mpmath | points (grid) | device vs CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    grid = acc["device_vs_cpu_log_iv"]
    for name in sorted(set(acc["mpmath_device"]) | set(grid)):
        dev, cpu, g = acc["mpmath_device"].get(name), acc["mpmath_cpu"].get(name), grid.get(name)
        lines.append(
            f"| {name} | {dev['points'] if dev else 0} | {_err(dev)} | {_err(cpu)} "
            f"| {g['points'] if g else 0} | {_err(g)} |"
        )
    lines += ["", "| vmf_log_normalizer | points | device vs CPU |", "| --- | ---: | ---: |"]
    for name, r in acc["device_vs_cpu_vmf_log_normalizer"].items():
        lines.append(f"| {name} | {r['points']} | {r['max_error']:.2e} |")
    lines += ["", "| function | dtype | elements/s |", "| --- | --- | ---: |"]
    for r in result["throughput"]:
        lines.append(f"| {r['function']} | {r['dtype']} | {r['elements_per_s']:.3e} |")
    return lines
