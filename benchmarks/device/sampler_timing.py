"""Step 3 of the device pack: the von Mises-Fisher sampler on the GPU.

Three variants at each point, timed in the same run, calls interleaved round-robin after a
warm-up: ``kernel`` (``VonMisesFisher(...).sample()`` with the sampler backend ``"auto"``: the
Triton kernel on CUDA), ``torch`` (the same call with ``set_sampler_backend("torch")``) and
``copy`` (a device-to-device copy of the output's bytes: the floor). Each row has its own ``loc``
and a per-row ``kappa`` tensor. Then, at three points, the kernel's draws are checked for bias
(z-score of the mean of mu^T z against A_p(kappa)) and for host synchronisations
(``torch.cuda.set_sync_debug_mode("error")`` around ``sample()`` after the warm-up).

In a dry run the same code runs on CPU tensors at tiny sizes, the kernel through Triton's
interpreter (``_sampling._use_triton`` forced on, as the test suite does), timed with the wall
clock; the synchronisation check has no meaning there and is recorded as not applicable.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import spherical_dists
from spherical_dists import VonMisesFisher, _sampling

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_sampler import GPU_FLOOR_RATIO, GPU_TARGET_NP, GPU_TORCH_SPEEDUP, SANITY_ROWS, Timer  # noqa: E402
from peers import SphericalDists, sanity  # noqa: E402

Point = tuple[int, int, float, str]  # n, p, kappa, dtype name

FULL_POINTS: list[Point] = [
    (n, p, k, "float32") for n in (10_000, 100_000, 1_000_000) for p in (3, 50, 1024, 16384) for k in (1.0, 80.0, 1e4)
] + [(1_000_000, 50, 80.0, "float64"), (100_000, 1024, 80.0, "float64")]
# Bias and synchronisation checks: low, middle and high dimension and concentration.
FULL_CHECKS: list[tuple[int, int, float]] = [(1_000_000, 3, 1.0), (1_000_000, 50, 80.0), (100_000, 1024, 1e4)]
# The interpreter draws about 1e3 rows/s at p = 50 on one core: a dry run stays at a few seconds.
DRY_POINTS: list[Point] = [(n, p, k, "float32") for n in (64, 256) for p in (3, 50) for k in (1.0, 1e4)] + [
    (32, 1024, 80.0, "float32"),
    (128, 50, 80.0, "float64"),
]
DRY_CHECKS: list[tuple[int, int, float]] = [(4000, 3, 1.0), (1000, 50, 80.0), (200, 1024, 1e4)]
MAX_Z = 5.0  # |z| above this flags a biased sampler
BYTES_PER_OUTPUT = 8  # the memory budget counts loc, output and the pure-torch path's temporaries
REPEATS = 7
BURST_S = 0.02  # a timed call is a burst of draws lasting about this long (at most MAX_BURST)
MAX_BURST = 20


@contextlib.contextmanager
def _backend(name: str, force_kernel: bool) -> Iterator[None]:
    """The sampler backend ``name``; with ``force_kernel`` (dry run) ``"auto"`` takes the kernel
    on CPU tensors too, through the interpreter."""
    previous, use_triton = spherical_dists.get_sampler_backend(), _sampling._use_triton
    spherical_dists.set_sampler_backend("auto" if name == "kernel" else "torch")
    if force_kernel and name == "kernel":
        _sampling._use_triton = lambda t: True  # type: ignore[assignment]
    try:
        yield
    finally:
        spherical_dists.set_sampler_backend(previous)
        _sampling._use_triton = use_triton


def kernel_status(device: str, dry_run: bool) -> str:
    """Why the kernel variant can or cannot run: ``"ok"`` or a note."""
    from spherical_dists import _triton_sampler

    if _triton_sampler.triton is None:
        return "triton is not importable: kernel not timed"
    if dry_run or _sampling._use_triton(torch.empty(1, device=device)):
        return "ok"
    return "the sampler does not dispatch to the Triton kernel on this device"


def _inputs(n: int, p: int, kappa: float, dtype: torch.dtype, device: str, seed: int) -> tuple[Any, Any]:
    gen = torch.Generator(device=device).manual_seed(seed + 7919 * p + n)
    loc = torch.nn.functional.normalize(torch.randn(n, p, generator=gen, device=device, dtype=dtype), dim=-1)
    return loc, torch.full((n,), kappa, dtype=dtype, device=device)


def _draw(loc: torch.Tensor, kap: torch.Tensor, variant: str, force_kernel: bool) -> torch.Tensor:
    with _backend(variant, force_kernel), torch.no_grad():
        return VonMisesFisher(loc, kap, validate_args=False).sample()


def _repeat(fn: Callable[[], Any], times: int) -> None:
    """``fn`` called ``times`` times back to back, each output freed before the next call."""
    for _ in range(times):
        fn()


def _time_variants(fns: dict[str, Callable[[], Any]], timer: Timer, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function: warm-up, burst size, then interleaved bursts."""
    bursts = {}
    for name, fn in fns.items():
        fn()  # warm-up: compilation, allocator, caches
        seconds, _ = timer(fn)
        bursts[name] = max(1, min(MAX_BURST, int(BURST_S / max(seconds, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds, _ = timer(lambda fn=fn, b=bursts[name]: _repeat(fn, b))
            times[name].append(seconds / bursts[name])
    return {name: float(np.median(t)) for name, t in times.items()}


def _point(pt: Point, device: str, kernel_ok: bool, dry_run: bool, seed: int, timer: Timer) -> dict[str, Any]:
    n, p, kappa, dtype_name = pt
    dtype = getattr(torch, dtype_name)
    loc, kap = _inputs(n, p, kappa, dtype, device, seed)
    fns: dict[str, Callable[[], Any]] = {"torch": lambda: _draw(loc, kap, "torch", dry_run)}
    if kernel_ok:
        fns["kernel"] = lambda: _draw(loc, kap, "kernel", dry_run)
    out = torch.empty_like(loc)
    fns["copy"] = lambda: torch.empty_like(out).copy_(out)
    seconds = _time_variants(fns, timer, REPEATS if not dry_run else 2)
    row: dict[str, Any] = {"n": n, "p": p, "kappa": kappa, "dtype": dtype_name, "status": "ok"}
    nbytes = n * p * loc.element_size()
    for name, s in seconds.items():
        row[f"{name}_s"] = s
        row[f"{name}_gb_per_s"] = nbytes / s / 1e9
        if name != "copy":
            row[f"{name}_samples_per_s"] = n / s
    if kernel_ok:
        row["kernel_time_over_copy"] = seconds["kernel"] / seconds["copy"]
        row["kernel_speedup_over_torch"] = seconds["torch"] / seconds["kernel"]
    return row


def _check(n: int, p: int, kappa: float, device: str, dry_run: bool, seed: int, sync_check: bool) -> dict[str, Any]:
    """The kernel's draw at one point: bias (z-score) and, on CUDA, host synchronisations."""
    loc, kap = _inputs(n, p, kappa, torch.float32, device, seed + 1)
    z = _draw(loc, kap, "kernel", dry_run)  # warm-up (and the draw checked for bias)
    rows = min(n, SANITY_ROWS)
    stats = sanity(SphericalDists("auto"), loc[:rows].cpu(), z[:rows].cpu().numpy(), kappa)
    out: dict[str, Any] = {"n": n, "p": p, "kappa": kappa, "rows_checked": rows, **stats}
    out["unbiased"] = bool(stats["finite"] and abs(stats["z_score"]) <= MAX_Z)
    if not sync_check:
        out["host_sync"] = "not applicable (no CUDA device)"
        return out
    dist = VonMisesFisher(loc, kap, validate_args=False)  # built outside: only sample() is checked
    torch.cuda.synchronize()
    with _backend("kernel", dry_run), torch.no_grad():
        torch.cuda.set_sync_debug_mode("error")
        try:
            dist.sample()
            out["host_sync"] = "none"
        except RuntimeError as exc:
            out["host_sync"] = f"synchronised: {exc}"[:300]
        finally:
            torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    return out


def run(device: str, dry_run: bool, seed: int, budget_s: float) -> dict[str, Any]:
    """Every point (skipping those over the memory budget or past ``budget_s``), then the checks."""
    started = time.perf_counter()
    cuda = device == "cuda"
    timer = Timer(cuda)
    status = kernel_status(device, dry_run)
    kernel_ok = status == "ok"
    points, checks = (DRY_POINTS, DRY_CHECKS) if dry_run else (FULL_POINTS, FULL_CHECKS)
    budget_bytes = torch.cuda.mem_get_info()[0] / BYTES_PER_OUTPUT if cuda else 2e9 / BYTES_PER_OUTPUT
    rows: list[dict[str, Any]] = []
    for pt in points:
        n, p, kappa, dtype_name = pt
        base = {"n": n, "p": p, "kappa": kappa, "dtype": dtype_name}
        nbytes = n * p * getattr(torch, dtype_name).itemsize
        if nbytes > budget_bytes:
            rows.append({**base, "status": "skipped", "note": f"output {nbytes:.1e} B > budget {budget_bytes:.1e} B"})
            continue
        if time.perf_counter() - started > budget_s:
            rows.append({**base, "status": "skipped", "note": f"time budget of {budget_s:.0f} s spent"})
            continue
        t0 = time.perf_counter()
        try:
            rows.append(_point(pt, device, kernel_ok, dry_run, seed, timer))
        except torch.OutOfMemoryError:
            rows.append({**base, "status": "error", "note": "out of memory"})
        except Exception as exc:  # a failing point is a visible row, not a stopped pack
            rows.append({**base, "status": "error", "note": f"{type(exc).__name__}: {exc}"[:300]})
        print(f"  sampler n={n} p={p} kappa={kappa:g} {dtype_name}: {time.perf_counter() - t0:.1f} s", flush=True)
        if cuda:
            torch.cuda.empty_cache()
    check_rows: list[dict[str, Any]] = []
    if kernel_ok:
        for n, p, kappa in checks:
            try:
                check_rows.append(_check(n, p, kappa, device, dry_run, seed, sync_check=cuda))
            except Exception as exc:
                check_rows.append({"n": n, "p": p, "kappa": kappa, "error": f"{type(exc).__name__}: {exc}"[:300]})
    return {
        "kernel": status,
        "timer": "CUDA events" if cuda else "time.perf_counter",
        "memory_budget_bytes": budget_bytes,
        "points": rows,
        "checks": check_rows,
        "targets": _targets(rows),
        "seconds": time.perf_counter() - started,
    }


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets at n = 1e6, p = 1024, float32 (absent in a dry run)."""
    out = []
    for r in rows:
        if (r["n"], r["p"]) != GPU_TARGET_NP or r["dtype"] != "float32" or "kernel_time_over_copy" not in r:
            continue
        ratio, speedup = r["kernel_time_over_copy"], r["kernel_speedup_over_torch"]
        out.append(
            {
                "kappa": r["kappa"],
                "kernel_time_over_copy": ratio,
                "target_time_over_copy": GPU_FLOOR_RATIO,
                "kernel_speedup_over_torch": speedup,
                "target_speedup_over_torch": GPU_TORCH_SPEEDUP,
                "met": bool(ratio <= GPU_FLOOR_RATIO and speedup >= GPU_TORCH_SPEEDUP),
            }
        )
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    """The step's section of the Markdown summary."""

    def f(r: dict[str, Any], key: str, fmt: str) -> str:
        value = r.get(key)
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)

    lines = [
        f"Kernel: {result['kernel']}; timer: {result['timer']}; memory budget "
        f"{result['memory_budget_bytes']:.2e} B of output.",
        "",
        "| n | p | kappa | dtype | kernel samples/s | torch samples/s | kernel GB/s | copy GB/s "
        "| kernel/copy time | kernel vs torch | note |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["points"]:
        lines.append(
            f"| {r['n']:g} | {r['p']} | {r['kappa']:g} | {r['dtype']} | {f(r, 'kernel_samples_per_s', '.3e')} "
            f"| {f(r, 'torch_samples_per_s', '.3e')} | {f(r, 'kernel_gb_per_s', '.1f')} "
            f"| {f(r, 'copy_gb_per_s', '.1f')} | {f(r, 'kernel_time_over_copy', '.2f')} "
            f"| {f(r, 'kernel_speedup_over_torch', '.2f')} | {r.get('note', '') if r['status'] != 'ok' else ''} |"
        )
    lines += ["", "| n | p | kappa | rows | mean mu^T z | A_p(kappa) | z-score | unbiased | host sync |"]
    lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for c in result["checks"]:
        if "error" in c:
            lines.append(f"| {c['n']:g} | {c['p']} | {c['kappa']:g} | error: {c['error']} | | | | | |")
            continue
        lines.append(
            f"| {c['n']:g} | {c['p']} | {c['kappa']:g} | {c['rows_checked']} | {c['mean_w']:.6f} "
            f"| {c['expected_mean_w']:.6f} | {c['z_score']:+.2f} | {c['unbiased']} | {c['host_sync']} |"
        )
    if result["targets"]:
        lines += [
            "",
            f"Targets at n=1e6, p=1024, float32 (time <= {GPU_FLOOR_RATIO}x copy, >= {GPU_TORCH_SPEEDUP}x torch):",
        ]
        for t in result["targets"]:
            lines.append(
                f"- kappa={t['kappa']:g}: kernel/copy {t['kernel_time_over_copy']:.2f}, "
                f"vs torch {t['kernel_speedup_over_torch']:.2f}x -> {'met' if t['met'] else 'NOT met'}"
            )
    return lines
