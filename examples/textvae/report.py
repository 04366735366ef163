"""Provenance and presentation of results: run metadata, Markdown / JSON reports, tables, plots.

Every committed result carries the exact command, the git commit, the machine (CPU model, threads, GPU),
the library versions, the wall time and the load, so that a number in a table can be traced and re-run,
and only paths relative to the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .environment import select_device


def git_commit(path: str | Path = ".") -> str:
    """The commit checked out at ``path``, suffixed ``-dirty`` when tracked files have uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=path, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """CPU model and count, torch threads, the accelerator if one is used, and library versions."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other programs running at the same time inflate wall times: the 1, 5 and 15-minute load averages.
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


#: The repository the examples belong to (examples/textvae/report.py -> the root).
REPOSITORY = Path(__file__).resolve().parents[2]


def portable_path(path: str | Path) -> str:
    """``path`` relative to the repository when it is inside it; otherwise its name alone after
    ``<outside>/`` (no folder of the machine, such as ``/tmp``): results must not carry a machine's
    absolute paths."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(REPOSITORY):
        return resolved.relative_to(REPOSITORY).as_posix() or "."
    return f"<outside>/{resolved.name}"


def _package_info() -> dict[str, str]:
    """Version, location and commit of the spherical_dists actually imported: an editable install can run
    the code of another checkout than the examples'."""
    import spherical_dists

    location = Path(spherical_dists.__file__).resolve().parent
    return {"version": spherical_dists.__version__, "path": portable_path(location), "commit": git_commit(location)}


def run_metadata(device: torch.device | None = None, repo: str | Path | None = None) -> dict[str, Any]:
    """The command line (as typed; absolute paths in it made portable), commit, machine, the spherical_dists
    in use, and the start time."""
    repo = repo if repo is not None else Path(__file__).resolve().parent
    return {
        "command": " ".join(["python", *(portable_path(a) if os.path.isabs(a) else a for a in sys.argv)]),
        "commit": git_commit(repo),
        "spherical_dists": _package_info(),
        "machine": machine_info(device),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (floats as Python prints them), creating parent directories; through a
    temporary file renamed into place, so that an interruption never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table: one row per dict, ``columns`` as ``(key, header, format spec)``.

    Missing keys and ``None`` values print as an en dash.

    >>> print(markdown_table([{"a": 1.234, "b": None}], [("a", "A", ".1f"), ("b", "B", "")]))
    | A | B |
    |---|---|
    | 1.2 | – |
    """
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _, spec in columns:
            value = row.get(key)
            cells.append("–" if value is None else format(value, spec))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_table(
    results: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]], paper: Callable[[dict[str, Any]], Any]
) -> str:
    """Markdown table of the test metrics of finished runs (``columns`` as in :func:`markdown_table`), with
    ``paper(result)`` in the ``paper`` column; failed runs are listed under it with their error."""
    keys = ("label", "best_epoch", "train_seconds", "cpu_seconds", "tokens_per_second")
    rows = [{**r["test"], **{k: r.get(k) for k in keys}, "paper": paper(r)} for r in results if "error" not in r]
    failed = "".join(f"\n\n{r['label']}: failed: {r['error']}" for r in results if "error" in r)
    return markdown_table(rows, columns) + failed


class Report:
    """The provenance of a command, taken when it starts, and the reports it writes."""

    def __init__(self, args: argparse.Namespace) -> None:
        device = select_device(getattr(args, "device", "auto"))
        self.meta = {**run_metadata(device), "jobs": getattr(args, "jobs", 1)}
        self.started = time.perf_counter()

    def write(self, out: Path, stem: str, title: str, body: str, payload: dict[str, Any]) -> float:
        """``out/stem.md`` (title, body, provenance) and ``out/stem.json`` (provenance and ``payload``), with
        the wall time since the start (or the previous report) and the load average now; returns the time."""
        wall, self.started = time.perf_counter() - self.started, time.perf_counter()
        meta = {**self.meta, "wall_seconds": wall, "load_average_end": [round(x, 2) for x in os.getloadavg()]}
        write_json(out / f"{stem}.json", {**meta, **payload})
        m, package = meta["machine"], meta["spherical_dists"]
        (out / f"{stem}.md").write_text(
            f"# {title}\n\n{body}\n\n"
            f"- command: `{meta['command']}`\n"
            f"- commit: `{meta['commit']}`; spherical_dists {package['version']} from `{package['path']}` at "
            f"`{package['commit']}`\n"
            f"- machine: {m['cpu']}, {m['cpu_count']} CPUs, {meta['jobs']} model(s) trained at a time; device "
            f"{m['device']}; torch {m['torch']}, Python {m['python']}\n"
            f"- load average (1 / 5 / 15 min) at the start {m['load_average']}, at the end {meta['load_average_end']}\n"
            f"- date: {meta['date']}\n"
            f"- wall time: {wall:.0f} s\n"
        )
        return wall


def plot_lines(
    path: str | Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    hlines: dict[str, float] | None = None,
) -> None:
    """Save a small PNG of named ``(x, y)`` series, with optional labelled horizontal reference lines.

    matplotlib is imported here, so that nothing else in the examples needs it.
    """
    try:
        import matplotlib
    except ImportError:  # a machine without it (a GPU lease) still gets the tables
        print(f"matplotlib is not installed: {path} not drawn", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, (x, y) in series.items():
        ax.plot(x, y, marker="o" if len(x) < 20 else None, markersize=4, label=label)
    for label, value in (hlines or {}).items():
        ax.axhline(value, linestyle="--", linewidth=1, color="gray")
        ax.annotate(label, (ax.get_xlim()[0], value), textcoords="offset points", xytext=(4, 3), fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
