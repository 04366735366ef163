"""Speed of von Mises-Fisher sampling: this package beside the libraries users would otherwise pick.

For each grid point (n, p, kappa) every installed peer draws one sample per row of an (n, p)
float32 ``loc`` (distinct random unit rows, seeded) with ``kappa`` given as a per-row (n,) tensor
(all rows at the grid's value). The measure is samples per second, median over repeats, with the
peers' timed calls interleaved round-robin so that a change of machine load hits all of them
alike. The first call of each peer at each point is an untimed warm-up (JIT compilation, caches);
its output feeds a sanity check: the mean of mu^T z over the rows against its expectation, in
standard errors.

On CUDA the table also has a device-to-device copy of the output's size (the physical floor) and
the output bandwidth n * p * 4 bytes / time; timings there use CUDA events.

    python benchmarks/bench_sampler.py [--device cpu|cuda] [--quick | --only-targets]
                                       [--json PATH] [--repeats 5] [--threads 2]

See benchmarks/README.md for the peers, how to install them, and how to read the output.
"""

from __future__ import annotations

# The thread settings must be in place before torch, numpy or jax start their pools: parse the
# few options that matter for that before importing anything heavy.
import argparse
import os
import sys


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    grid = parser.add_mutually_exclusive_group()
    grid.add_argument("--quick", action="store_true", help="small grid for a smoke test (well under a minute)")
    grid.add_argument("--only-targets", action="store_true", help="only the issue's target points")
    parser.add_argument("--json", type=str, help="write every measurement and the machine's description here")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per peer and point (default 5, quick 3)")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads for every peer (torch, XLA, BLAS); default 2"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="seconds of timed calls per peer and point: after 3 calls a peer stops once it has spent them; "
        "a peer without batched sampling (scipy) is measured on as many rows as fit (default 10, quick 1)",
    )
    parser.add_argument(
        "--max-elements",
        type=float,
        default=None,
        help="skip points with n * p above this (default 2.5e8 on CPU; on CUDA free memory / 32 bytes)",
    )
    parser.add_argument(
        "--peers", type=str, default=None, help="comma-separated subset of peer names (default: all installed)"
    )
    parser.add_argument(
        "--peer-path",
        action="append",
        default=[],
        help="a folder to put on sys.path before importing peers (e.g. an s-vae-pytorch checkout); repeatable. "
        "SPHERICAL_DISTS_BENCH_PEER_PATH (os.pathsep-separated) does the same",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.budget_s is None:
        args.budget_s = 1.0 if args.quick else 10.0
    return args


def _limit_threads(threads: int) -> list[int]:
    """Give every library the same number of threads.

    torch takes ``set_num_threads``; BLAS/OpenMP take environment variables; XLA sizes its CPU
    thread pool from the CPUs the process may run on, so the process's CPU affinity is restricted
    to ``threads`` CPUs (the only knob XLA honours for counts above one). Returns the CPUs used.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(threads)
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):
        cpus = cpus[:threads]
        os.sched_setaffinity(0, cpus)
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    return cpus


ARGS = _parse_args() if __name__ == "__main__" else None
CPUS = _limit_threads(ARGS.threads) if ARGS is not None else []

import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import Peer, PeerUnavailable, all_peers, sanity  # noqa: E402

Point = tuple[int, int, float]

# The CPU targets: ours at least 1.5x the fastest peer at each (2 threads, float32).
CPU_TARGETS: list[Point] = [(10_000, 50, 80.0), (10_000, 1000, 1e3), (100_000, 3, 10.0)]
CPU_TARGET_RATIO = 1.5
# The GPU target: n = 1e6, p = 1024, within 2x of the copy floor and 5x faster than pure torch.
GPU_TARGET_NP = (1_000_000, 1024)
GPU_FLOOR_RATIO, GPU_TORCH_SPEEDUP = 2.0, 5.0

REPOSITORY = Path(__file__).resolve().parent.parent
PROBE_ROWS = 1  # rows a slow peer (scipy: one p x p QR per row) is first timed on
# A 1-minute load average above this before the run means other processes hold the CPUs.
BUSY_LOAD = 0.5
MIN_REPEATS = 3  # timed calls every measured peer gets, whatever the time budget
# A timed call is a burst of back-to-back draws lasting about BURST_S (at most MAX_BURST draws),
# divided by its length: the steady state of a training loop. A single draw right after another
# peer's would share the cores with that peer's still-spinning thread pool (OpenMP, XLA's Eigen
# pool), which on 2 cores distorts the ratios by up to 2x, whoever comes second.
BURST_S, MAX_BURST = 0.1, 20
SANITY_ROWS = 100_000  # rows the sanity check reads: a standard error of ~0.003 sd, and cheap at any n


FULL_GRID: list[Point] = [
    (n, p, k) for n in (10_000, 1_000_000) for p in (3, 50, 1024, 16384) for k in (1.0, 80.0, 1e4)
]
# The smoke test: small p only, so that it takes well under a minute with every peer installed.
QUICK_GRID: list[Point] = [(10_000, p, k) for p in (3, 50) for k in (1.0, 1e4)] + [
    pt for pt in CPU_TARGETS if pt[1] <= 50
]


@dataclass
class Measurement:
    """One peer at one grid point. ``status``: ok, capped (fewer rows than n), skipped, error."""

    n: int
    p: int
    kappa: float
    peer: str
    status: str
    note: str = ""
    rows: int = 0
    burst: int = 1  # draws per timed call; times_s are per draw
    times_s: list[float] = field(default_factory=list)
    median_s: float = math.nan
    samples_per_s: float = math.nan
    output_gb_per_s: float = math.nan
    sanity: dict[str, float] = field(default_factory=dict)
    load_avg: list[float] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.status in ("ok", "capped")


# ---------------------------------------------------------------------------------------- timing


class Timer:
    """Times one call: CUDA events for work queued on the GPU, the wall clock otherwise."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __call__(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        if self.cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3, out
        start_s = time.perf_counter()
        out = fn()
        return time.perf_counter() - start_s, out


@dataclass
class _Run:
    """A peer's state while one grid point is measured."""

    peer: Peer
    m: Measurement
    inputs: Any
    timer: Timer


def _nice_rows(rows: float) -> int:
    """Round a row count down to two significant digits (so that capped rows read cleanly)."""
    rows = max(int(rows), 1)
    scale = 10 ** max(len(str(rows)) - 2, 0)
    return rows // scale * scale


def _start(peer: Peer, pt: Point, loc: torch.Tensor, kap: torch.Tensor, args: argparse.Namespace) -> _Run:
    """Warm up one peer at one point, size its measurement and check its warm-up draw.

    The returned measurement's status says whether it goes on to be timed.
    """
    n, p, kappa = pt
    m = Measurement(n=n, p=p, kappa=kappa, peer=peer.name, status="ok", rows=n)
    timer = Timer(args.device == "cuda" and peer.runs_on == "torch")
    if peer.max_dim is not None and p > peer.max_dim:
        m.status, m.note = "skipped", f"p > {peer.max_dim}: {peer.max_dim_note}"
        return _Run(peer, m, None, timer)

    def inputs_for(rows: int) -> Any:
        if peer.runs_on == "torch":
            return peer.prepare(loc[:rows], kap[:rows])
        return peer.prepare(loc[:rows].cpu(), kap[:rows].cpu())

    rows = n if peer.max_rows is None else min(n, peer.max_rows)
    inputs = None
    try:
        out = None
        if peer.probe and rows > PROBE_ROWS:
            # A slow peer (a Python loop over rows): time a few rows, then take as many rows as
            # fit one call in budget / repeats; the probe doubles as the warm-up if that is all.
            inputs = inputs_for(PROBE_ROWS)
            seconds, out = timer(lambda: peer.sample(inputs))
            rows = min(rows, max(PROBE_ROWS, _nice_rows(args.budget_s / args.repeats * PROBE_ROWS / seconds)))
        if out is None or rows > PROBE_ROWS:
            inputs = inputs_for(rows)
            _, out = timer(lambda: peer.sample(inputs))  # warm-up: compilation, allocator, caches
        seconds, _ = timer(lambda: peer.sample(inputs))
        m.burst = max(1, min(MAX_BURST, int(BURST_S / max(seconds, 1e-9))))
        checked = min(rows, SANITY_ROWS)
        m.sanity = sanity(peer, loc[:checked].cpu(), peer.to_numpy(out[:checked]), kappa)
        del out
    except torch.OutOfMemoryError:
        m.status, m.note = "error", "out of memory"
    except Exception as exc:  # a broken peer is a visible cell, not a stopped benchmark
        m.status, m.note = "error", f"{type(exc).__name__}: {exc}"[:300]
    m.rows = rows
    if m.status == "ok" and rows < n:
        m.status, m.note = "capped", f"measured on {rows} of {n} rows"
    return _Run(peer, m, inputs, timer)


def _measure_point(
    peers: list[Peer], n: int, p: int, kappa: float, args: argparse.Namespace, device: str
) -> list[Measurement]:
    """Every peer at one point, timed calls interleaved round-robin."""
    # Generated on the device: at n = 1e6, p = 1024 that is seconds, not a minute on the host.
    gen = torch.Generator(device=device).manual_seed(args.seed + 7919 * p + n)
    loc = torch.nn.functional.normalize(torch.randn(n, p, generator=gen, device=device), dim=-1)
    kap = torch.full((n,), kappa, dtype=torch.float32, device=device)
    runs = [_start(peer, (n, p, kappa), loc, kap, args) for peer in peers]
    active = [r for r in runs if r.m.measured]
    spent = {id(r): 0.0 for r in active}
    for i in range(args.repeats):
        for r in active:
            # After MIN_REPEATS, a peer whose calls have used up the budget stops early.
            if i >= MIN_REPEATS and spent[id(r)] > args.budget_s:
                continue
            try:
                seconds, _ = r.timer(lambda r=r: [r.peer.sample(r.inputs) for _ in range(r.m.burst)])
                seconds /= r.m.burst
            except Exception as exc:
                r.m.status, r.m.note = "error", f"{type(exc).__name__}: {exc}"[:300]
                continue
            r.m.times_s.append(seconds)
            spent[id(r)] += seconds * r.m.burst
        active = [r for r in active if r.m.measured]
    if device == "cuda":
        runs.append(_copy_floor(n, p, kappa, loc, args))
    for r in runs:
        m = r.m
        m.load_avg = list(os.getloadavg())
        if m.measured and m.times_s:
            m.median_s = float(np.median(m.times_s))
            m.samples_per_s = m.rows / m.median_s
            m.output_gb_per_s = m.rows * p * 4 / m.median_s / 1e9
    return [r.m for r in runs]


def _copy_floor(n: int, p: int, kappa: float, loc: torch.Tensor, args: argparse.Namespace) -> _Run:
    """A device-to-device copy of an (n, p) float32 tensor: what writing the output costs at least."""
    m = Measurement(n=n, p=p, kappa=kappa, peer="copy floor", status="ok", rows=n)
    timer = Timer(True)
    src = torch.empty_like(loc)
    timer(lambda: torch.empty_like(src).copy_(src))
    for _ in range(max(args.repeats, 10)):
        m.times_s.append(timer(lambda: torch.empty_like(src).copy_(src))[0])
    return _Run(Peer(), m, None, timer)


# ---------------------------------------------------------------------------------------- report


def _load_peers(args: argparse.Namespace) -> tuple[list[Peer], dict[str, str], dict[str, str]]:
    """Import every peer that can run; return them, the skipped ones' notes, and versions."""
    wanted = None if args.peers is None else {s.strip() for s in args.peers.split(",")}
    peers, notes, versions = [], {}, {}
    for peer in all_peers():
        if wanted is not None and peer.name not in wanted:
            continue
        if args.device == "cpu" and peer.name == "ours (pure torch)":
            continue  # on CPU the default path is the pure-torch path: one column, not two equal ones
        try:
            peer.load(args.device)
        except PeerUnavailable as exc:
            notes[peer.name] = str(exc)
            continue
        peers.append(peer)
        versions.update(peer.versions())
    return peers, notes, versions


def git_output(path: Path, *cmd: str) -> str:
    """The stripped output of ``git -C path *cmd``, or ``"unknown"`` where git fails (no git, not a
    repository): the commit and the dirty state recorded with the benchmarks' results."""
    try:
        return subprocess.run(["git", "-C", str(path), *cmd], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _portable(path: str, peer_folders: list[str]) -> str:
    """``path`` as the JSON records it: relative to the repository where it lies inside it, else
    from the last folder of the peer path it lies under (or by its name alone), so that the file
    names no folder of the machine it was written on."""
    resolved = Path(path).resolve()
    for base in (REPOSITORY, *(Path(folder).resolve().parent for folder in peer_folders)):
        if resolved.is_relative_to(base):
            return resolved.relative_to(base).as_posix()
    return resolved.name


def _machine(args: argparse.Namespace, versions: dict[str, str], peer_folders: list[str]) -> dict[str, Any]:
    import spherical_dists

    bench_dir = Path(__file__).resolve().parent
    package_dir = Path(spherical_dists.__file__).resolve().parent
    portable = {k: _portable(v, peer_folders) if os.path.isabs(v) else v for k, v in versions.items()}
    command = [_portable(a, peer_folders) if os.path.isabs(a) else a for a in sys.argv]
    info: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *command]),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_used": CPUS,
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        **portable,
        "benchmark_commit": git_output(bench_dir, "rev-parse", "HEAD"),
        "benchmark_dirty": git_output(bench_dir, "status", "--porcelain") not in ("", "unknown"),
        "spherical_dists_path": _portable(str(package_dir), peer_folders),
        "spherical_dists_commit": git_output(package_dir, "rev-parse", "HEAD"),
        "spherical_dists_dirty": git_output(package_dir, "status", "--porcelain", "--untracked-files=no")
        not in ("", "unknown"),
    }
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def _fmt_rate(m: Measurement | None) -> str:
    if m is None:
        return "-"
    if m.status == "skipped":
        return "skip"
    if m.status == "error":
        return "ERR"
    if not m.times_s:
        return "-"
    return f"{m.samples_per_s:.2e}" + ("*" if m.status == "capped" else "")


def _fastest_peer(ms: dict[str, Measurement]) -> Measurement | None:
    """The peer (not ours, not the copy floor) with the highest samples/s at one point."""
    rated = [
        m for m in ms.values() if m.measured and m.times_s and m.peer != "copy floor" and not m.peer.startswith("ours")
    ]
    return max(rated, key=lambda m: m.samples_per_s, default=None)


def _ratio(a: Measurement | None, b: Measurement | None) -> float:
    if a is None or b is None or not (a.measured and b.measured and a.times_s and b.times_s):
        return math.nan
    return a.samples_per_s / b.samples_per_s


def _print_tables(
    points: list[Point],
    results: dict[Point, dict[str, Measurement]],
    columns: list[str],
    device: str,
    load_start: tuple[float, ...],
    memory_skips: dict[Point, str],
) -> None:
    cuda = device == "cuda"
    width = {c: max(len(c), 10) for c in columns}  # every column as wide as its peer's name
    head = f"{'n':>9} {'p':>6} {'kappa':>7} |" + "".join(f" {c:>{width[c]}}" for c in columns)
    head += f" | {'fastest peer':>15} {'ours/fastest':>12}"
    if cuda:
        head += f" | {'ours GB/s':>9} {'copy GB/s':>9} {'ours/copy t':>11} {'vs torch':>8}"
    print(f"\nsamples/s (one draw per row, float32, {device}; median of repeats; * = measured on fewer rows)")
    print(head)
    print("-" * len(head))
    for pt in points:
        n, p, k = pt
        line = f"{n:>9.0e} {p:>6} {k:>7g} |"
        if pt in memory_skips:
            print(line + f" skipped: {memory_skips[pt]}")
            continue
        ms = results[pt]
        line += "".join(f" {_fmt_rate(ms.get(c)):>{width[c]}}" for c in columns)
        best = _fastest_peer(ms)
        ours = ms.get("ours")
        line += f" | {best.peer if best else '-':>15} {_ratio(ours, best):>12.2f}"
        if cuda:
            copy = ms.get("copy floor")
            gbs = ours.output_gb_per_s if ours and ours.times_s else math.nan
            copy_gbs = copy.output_gb_per_s if copy else math.nan
            vs_torch = _ratio(ours, ms.get("ours (pure torch)"))
            line += f" | {gbs:>9.1f} {copy_gbs:>9.1f} {_ratio(copy, ours):>11.2f} {vs_torch:>8.2f}"
        print(line)

    print(
        "\nsanity: (mean of mu^T z - its expectation) / standard error over the warm-up draw's rows"
        f" (at most {SANITY_ROWS}); |z| > 5 is flagged '!'.\npower-spherical is compared with its own"
        " distribution's mean, the others with A_p(kappa); [max |norm - 1|] when above 1e-5."
    )
    sanity_cols = [c for c in columns if c != "copy floor"]
    width = {c: max(len(c), 14) for c in sanity_cols}
    head = f"{'n':>9} {'p':>6} {'kappa':>7} |" + "".join(f" {c:>{width[c]}}" for c in sanity_cols)
    print(head)
    print("-" * len(head))
    for pt in points:
        if pt in memory_skips:
            continue
        n, p, k = pt
        cells = []
        for c in sanity_cols:
            m = results[pt].get(c)
            if m is None or not m.sanity:
                cells.append("-")
                continue
            s = m.sanity
            cell = "nonfinite!" if not s["finite"] else f"{s['z_score']:+.1f}" + ("!" if abs(s["z_score"]) > 5 else "")
            if s["max_norm_error"] > 1e-5:
                cell += f" [{s['max_norm_error']:.0e}]"
            cells.append(cell)
        print(f"{n:>9.0e} {p:>6} {k:>7g} |" + "".join(f" {cell:>{width[c]}}" for c, cell in zip(sanity_cols, cells)))

    notes = sorted(
        {
            (m.peer, m.status, m.note)
            for ms in results.values()
            for m in ms.values()
            if m.note and m.status in ("error", "skipped")
        }
    )
    if notes:
        print("\nnotes:")
        for peer, status, note in notes:
            print(f"  {peer} {status}: {note}")
    print(
        f"\nload average (1, 5, 15 min) at start: {tuple(round(x, 2) for x in load_start)}, "
        f"at end: {tuple(round(x, 2) for x in os.getloadavg())}"
    )


def _targets(results: dict[Point, dict[str, Measurement]], device: str) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured ratio."""
    out: list[dict[str, Any]] = []
    if device == "cpu":
        for pt in CPU_TARGETS:
            ms = results.get(pt)
            if ms is None:
                continue
            best, ours = _fastest_peer(ms), ms.get("ours")
            ratio = _ratio(ours, best)
            out.append(
                {
                    "n": pt[0],
                    "p": pt[1],
                    "kappa": pt[2],
                    "ours_samples_per_s": ours.samples_per_s if ours else None,
                    "fastest_peer": best.peer if best else None,
                    "fastest_peer_samples_per_s": best.samples_per_s if best else None,
                    "ratio_vs_fastest_peer": ratio,
                    "target": CPU_TARGET_RATIO,
                    "met": bool(ratio >= CPU_TARGET_RATIO) if best else None,  # None: no peer to compare with
                }
            )
    else:
        for pt, ms in results.items():
            if (pt[0], pt[1]) != GPU_TARGET_NP:
                continue
            ours, torch_path, copy = ms.get("ours"), ms.get("ours (pure torch)"), ms.get("copy floor")
            time_vs_copy, speedup = _ratio(copy, ours), _ratio(ours, torch_path)
            out.append(
                {
                    "n": pt[0],
                    "p": pt[1],
                    "kappa": pt[2],
                    "ours_time_over_copy_time": time_vs_copy,
                    "ours_over_pure_torch": speedup,
                    "ours_output_gb_per_s": ours.output_gb_per_s if ours else None,
                    "met": bool(time_vs_copy <= GPU_FLOOR_RATIO and speedup >= GPU_TORCH_SPEEDUP),
                }
            )
    return out


def _print_targets(targets: list[dict[str, Any]], device: str) -> None:
    if not targets:
        return
    if device == "cpu":
        print(f"\nCPU targets (ours >= {CPU_TARGET_RATIO}x the fastest peer in this run):")
        for t in targets:
            line = f"  n={t['n']:.0e} p={t['p']:<5} kappa={t['kappa']:<6g} ours {t['ours_samples_per_s']:.2e}/s"
            if t["fastest_peer"] is None:
                print(f"{line}, no peer measured")
                continue
            print(
                f"{line}, fastest peer {t['fastest_peer']} {t['fastest_peer_samples_per_s']:.2e}/s: "
                f"ratio vs fastest peer {t['ratio_vs_fastest_peer']:.2f} -> {'met' if t['met'] else 'NOT met'}"
            )
    else:
        print(
            f"\nGPU targets (n=1e6, p=1024: time <= {GPU_FLOOR_RATIO}x the copy floor,"
            f" >= {GPU_TORCH_SPEEDUP}x pure torch):"
        )
        for t in targets:
            print(
                f"  kappa={t['kappa']:<6g} ours/copy time {t['ours_time_over_copy_time']:.2f}, "
                f"ours vs pure torch {t['ours_over_pure_torch']:.2f}x -> {'met' if t['met'] else 'NOT met'}"
            )


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    env_paths = os.environ.get("SPHERICAL_DISTS_BENCH_PEER_PATH", "").split(os.pathsep)
    peer_folders = [*args.peer_path, *filter(None, env_paths)]
    for folder in peer_folders:
        sys.path.insert(0, folder)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device")

    peers, unavailable, versions = _load_peers(args)
    for name, note in unavailable.items():
        print(f"[{name}] not measured: {note}", file=sys.stderr)
    if args.only_targets:
        points = list(CPU_TARGETS) if args.device == "cpu" else [(*GPU_TARGET_NP, k) for k in (1.0, 80.0, 1e4)]
    else:
        points = sorted(set(QUICK_GRID) if args.quick else set(FULL_GRID) | set(CPU_TARGETS))
    if args.max_elements is None:
        if args.device == "cuda":
            args.max_elements = torch.cuda.mem_get_info()[0] / 32  # loc, output and peers' temporaries
        else:
            args.max_elements = 2.5e8

    load_start = os.getloadavg()
    busy = load_start[0] > BUSY_LOAD
    if busy:
        print(
            f"WARNING: load average {load_start[0]:.2f} before the run: other work shares the CPUs, and torch's "
            "multi-threaded ops can slow down 50x when one of their threads is descheduled; these timings are "
            "not fit to publish",
            file=sys.stderr,
        )
    results: dict[Point, dict[str, Measurement]] = {}
    memory_skips: dict[Point, str] = {}
    started = time.perf_counter()
    for pt in points:
        n, p, k = pt
        if n * p > args.max_elements:
            memory_skips[pt] = f"n*p = {n * p:.1e} floats > memory budget {args.max_elements:.1e}"
            continue
        t0 = time.perf_counter()
        results[pt] = {m.peer: m for m in _measure_point(peers, n, p, k, args, args.device)}
        print(f"  n={n:.0e} p={p} kappa={k:g}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if args.device == "cuda":
            torch.cuda.empty_cache()

    columns = [peer.name for peer in peers] + (["copy floor"] if args.device == "cuda" else [])
    _print_tables(points, results, columns, args.device, load_start, memory_skips)
    targets = _targets(results, args.device)
    _print_targets(targets, args.device)
    if busy:
        print(f"\nWARNING: the machine was busy (load average {load_start[0]:.2f} at start): timings unreliable")
    print(
        f"\ntotal {time.perf_counter() - started:.1f} s; peers not measured: "
        + (", ".join(f"{k} ({v})" for k, v in unavailable.items()) or "none")
    )

    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "machine": _machine(args, versions, peer_folders),
            "settings": {**vars(args), "peer_path": [_portable(p, peer_folders) for p in args.peer_path]},
            "load_avg_start": list(load_start),
            "load_avg_end": list(os.getloadavg()),
            "busy_at_start": busy,
            "peers_not_measured": unavailable,
            "skipped_points": [{"n": n, "p": p, "kappa": k, "reason": r} for (n, p, k), r in memory_skips.items()],
            "targets": targets,
            "measurements": [asdict(m) for ms in results.values() for m in ms.values()],
        }
        path.write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    assert ARGS is not None
    main(ARGS)
