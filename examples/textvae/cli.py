"""What the example command lines share: one run end to end, many runs in parallel, reports, the parser scaffold.

An example (the document model, the sentence model) describes itself by a :class:`Pipeline`: how to label
a configuration, how to build the model and batches of a run, and how to summarise a result in one line.
Everything else is here, once:

* :func:`run_one`: train (or resume) one model, evaluate it on the test set, write ``result.json``;
* :func:`run_many`: named runs one after the other or in a pool of processes;
* :func:`results_table`: the Markdown table of test metrics, with the published number beside each row;
* :func:`start_report` / :func:`write_report`: a Markdown + JSON report with the command's provenance;
* :func:`add_command` / :func:`main`: sub-commands with the common flags, and clean exits on Ctrl-C,
  SIGTERM and the errors a user can fix.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import config as cfg
from .data import Batches, DataFormatError
from .evaluation import evaluate
from .results import markdown_table, run_metadata, write_json
from .training import (
    RESUMABLE_CHANGES,
    CheckpointError,
    NonFiniteLossError,
    Trainer,
    distributed_rank,
    seed_everything,
    select_device,
)
from .vae import TextVAE

__all__ = [
    "RunSetup",
    "Pipeline",
    "run_one",
    "run_many",
    "results_table",
    "start_report",
    "write_report",
    "load_history",
    "add_command",
    "main",
]


@dataclass
class RunSetup:
    """The pieces of one run, built by :attr:`Pipeline.setup`.

    Attributes
    ----------
    model : TextVAE
        The freshly initialised model.
    train, valid : Batches
        Training batches (sharded for this process under data parallelism) and validation batches.
    test : callable
        Returns a fresh iterable of test batches.
    data : dict
        ``name`` of the data set and the number of examples of each split, for the result file.
    description : str
        One line about the data, for the log.
    """

    model: TextVAE
    train: Batches
    valid: Batches
    test: Callable[[], Iterable[Any]]
    data: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Pipeline:
    """An example's own parts; the functions must be module-level so that worker processes can load them.

    Attributes
    ----------
    label : callable
        ``label(flat_config) -> str``: a short name of a configuration for tables and logs.
    setup : callable
        ``setup(experiment, rank, world_size) -> RunSetup``.
    summary : callable
        ``summary(result) -> str``: one line with the test metrics of a finished run.
    """

    label: Callable[[dict[str, Any]], str]
    setup: Callable[[Any, int, int], RunSetup]
    summary: Callable[[dict[str, Any]], str]


def _finished(result_path: Path, experiment: Any, test: bool) -> dict[str, Any] | None:
    """The result in ``result_path`` if it is of the same configuration and as complete as asked."""
    if not result_path.exists():
        return None
    try:
        previous = json.loads(result_path.read_text())
        if not isinstance(previous, dict) or not {"config", "test"} <= previous.keys():
            raise ValueError("not a result of this program")
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(
            f"{result_path} is damaged ({type(error).__name__}: {error}); delete it to evaluate the run again "
            "from its checkpoint"
        ) from None
    # A larger max_epochs or patience continues the run from its checkpoint instead of reusing it.
    ignored = RESUMABLE_CHANGES - {"max_epochs", "patience"}
    same = not cfg.changed_settings(type(experiment), previous["config"], cfg.to_flat(experiment)) - ignored
    return previous if same and (previous["test"] is not None or not test) else None


def run_one(
    pipeline: Pipeline, experiment: Any, run_dir: Path, resume: bool, test: bool = True, prefix: str = ""
) -> dict[str, Any]:
    """Train one model (or continue it), evaluate it on the test set, write and return ``run_dir/result.json``.

    With ``resume`` and a finished ``result.json`` of the same configuration, that result is returned as is.
    ``test=False`` skips the test set (model selection must never see it); ``prefix`` starts every log line.
    Under data parallelism every process trains, and rank 0 alone evaluates and writes the result.
    """
    flat = cfg.to_flat(experiment)
    label = pipeline.label(flat)
    rank, world_size = distributed_rank()

    def log(line: str) -> None:
        if rank == 0:
            print(prefix + line, flush=True)

    result_path = run_dir / "result.json"
    previous = _finished(result_path, experiment, test) if resume else None
    if previous is not None:
        log(f"{label}: already finished in {run_dir}")
        return previous
    if experiment.train.threads:
        torch.set_num_threads(experiment.train.threads)
    seed_everything(experiment.train.seed)
    setup = pipeline.setup(experiment, rank, world_size)
    trainer = Trainer(setup.model, setup.train, setup.valid, experiment.train, run_dir, run_config=flat, log=log)
    processes = f", {world_size} processes" if world_size > 1 else ""
    log(
        f"{label}: {setup.description}; {trainer.device}{processes}, {torch.get_num_threads()} thread(s); "
        f"run dir {run_dir}"
    )
    fit = trainer.fit(resume=resume)
    speeds = [h["tokens_per_second"] for h in fit.history if "tokens_per_second" in h]
    result: dict[str, Any] = {
        "label": label,
        "config": flat,
        "data": setup.data,
        "best_epoch": fit.best_epoch,
        "epochs": fit.epochs,
        "stop_reason": fit.stop_reason,
        "train_seconds": fit.train_seconds,
        "cpu_seconds": fit.cpu_seconds,
        "tokens_per_second": sum(speeds) / len(speeds) if speeds else None,
        "world_size": world_size,
        "valid": fit.best_valid,
        "test": None,
    }
    if rank != 0:
        return result
    if test:
        log(f"{label}: best epoch {fit.best_epoch} of {fit.epochs} ({fit.stop_reason}); evaluating on test")
        started = time.perf_counter()
        result["test"] = evaluate(setup.model, setup.test, experiment.eval, log, experiment.train.progress)
        result["eval_seconds"] = time.perf_counter() - started
        log(pipeline.summary(result))
    write_json(result_path, result)
    return result


_Job = tuple[Pipeline, Any, Path, bool, bool, str]


def _run_or_report(job: _Job) -> dict[str, Any]:
    """:func:`run_one`, except that a diverged run becomes a result with an ``error`` instead of an exception,
    so that one bad setting (a learning rate too large) does not stop the runs beside it."""
    pipeline, experiment, _, _, _, prefix = job
    try:
        return run_one(*job)
    except NonFiniteLossError as error:
        print(f"{prefix}error: {error}", file=sys.stderr, flush=True)
        flat = cfg.to_flat(experiment)
        return {"label": pipeline.label(flat), "config": flat, "error": str(error)}


# In a pool worker of run_many: the event that says the command was interrupted, so start no more runs.
_STOP: Any = None


_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def _init_worker(stop: Any, parent: int) -> None:
    global _STOP
    _STOP = stop
    # A worker must not outlive its command, even after kill -9 of it: Linux sends SIGTERM (a clean stop,
    # checkpoint saved) when the parent dies. Where that is not available the run-directory lock still
    # keeps a second command from training the same run at once.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _run_in_worker(job: _Job) -> dict[str, Any]:
    """:func:`_run_or_report` in a pool worker, where an interruption (its checkpoint is saved) must come back
    as a result: a worker that dies of it would leave the pool waiting forever. SIGTERM counts as one here
    too, also outside the training loop (while the data load or the evaluation runs)."""
    flat = cfg.to_flat(job[1])
    interrupted = {"label": job[0].label(flat), "config": flat, "error": "interrupted; run again with --resume"}
    try:
        with terminate_as_interrupt():
            if _STOP is not None and _STOP.is_set():
                return interrupted
            return _run_or_report(job)
    except KeyboardInterrupt:
        return interrupted


# A stopping run finishes one training step and writes its checkpoint: seconds, far less than this.
_INTERRUPT_GRACE_SECONDS = 120.0


def _wait_for_interrupted_workers(pool: Any, pending: Any, stop: Any) -> None:
    """After an interruption of this process: no queued run starts, every running one saves its checkpoint
    and returns. Ctrl-C reaches the workers by itself, ``kill`` this process only, so the workers are sent
    SIGTERM too (a second signal changes nothing for a run already stopping). Killing them instead would cut
    a checkpoint write short, and a worker left alone would go on training as an orphan."""
    stop.set()
    for worker in pool._pool:  # the pool has no public list of its processes
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)
    pending.wait(_INTERRUPT_GRACE_SECONDS)


def run_many(
    pipeline: Pipeline,
    jobs: Sequence[tuple[str, Any]],
    root: Path,
    resume: bool,
    n_jobs: int,
    test: bool = True,
    cost: Callable[[Any], float] | None = None,
) -> list[dict[str, Any]]:
    """Run named experiments under ``root/name``, one after the other or in ``n_jobs`` processes.

    In parallel each process gets ``cpu_count // n_jobs`` threads (unless ``--threads`` says otherwise) and
    no progress bar; every log line starts with the run's name. ``cost(experiment)``, a rough relative
    duration, makes the longest runs start first, so that no process is left alone with a long run at
    the end; the results keep the order of ``jobs`` whatever the order of the runs. A run whose loss
    became NaN is returned as ``{"label", "config", "error"}``.
    """
    if n_jobs <= 1:
        return [_run_or_report((pipeline, e, root / name, resume, test, "")) for name, e in jobs]
    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    work = []
    for name, e in jobs:
        train = replace(e.train, threads=e.train.threads or threads, progress=False)
        work.append((pipeline, replace(e, train=train), root / name, resume, test, f"[{name}] "))
    order = list(range(len(work)))
    if cost is not None:
        order.sort(key=lambda i: -cost(jobs[i][1]))  # stable: equal costs keep their order
    # spawn: a fresh interpreter per worker, never a fork of a process whose thread pools are running.
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    with context.Pool(n_jobs, initializer=_init_worker, initargs=(stop, os.getpid())) as pool:
        pending = pool.map_async(_run_in_worker, [work[i] for i in order], chunksize=1)
        try:
            done = pending.get()
        except KeyboardInterrupt:
            _wait_for_interrupted_workers(pool, pending, stop)
            raise
    results: list[dict[str, Any]] = [{}] * len(work)
    for i, result in zip(order, done, strict=True):
        results[i] = result
    return results


def results_table(
    results: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str, str]],
    paper: Callable[[dict[str, Any]], Any],
) -> str:
    """Markdown table of test metrics (``columns`` as in :func:`~textvae.results.markdown_table`), with
    ``paper(result)`` in the ``paper`` column; failed runs are listed under the table with their error."""
    rows = [
        {
            **r["test"],
            **{k: r.get(k) for k in ("label", "best_epoch", "train_seconds", "cpu_seconds", "tokens_per_second")},
            "paper": paper(r),
        }
        for r in results
        if "error" not in r
    ]
    failed = "".join(f"\n\n{r['label']}: failed: {r['error']}" for r in results if "error" in r)
    return markdown_table(rows, columns) + failed


def start_report(args: argparse.Namespace) -> dict[str, Any]:
    """Provenance of a command (see :func:`textvae.results.run_metadata`), and its start time."""
    meta = run_metadata(select_device(args.device if "device" in args else "auto"))
    return {**meta, "jobs": getattr(args, "jobs", 1), "_started": time.perf_counter()}


def write_report(out: Path, stem: str, title: str, body: str, meta: dict[str, Any], payload: dict[str, Any]) -> float:
    """Write ``out/stem.md`` (title, body, provenance) and ``out/stem.json`` (provenance and ``payload``).

    ``meta`` comes from :func:`start_report`; the wall time and the load average at the end are added here.
    Returns the wall time in seconds.
    """
    wall = time.perf_counter() - meta.pop("_started")
    meta = {**meta, "wall_seconds": wall, "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    write_json(out / f"{stem}.json", {**meta, **payload})
    m = meta["machine"]
    (out / f"{stem}.md").write_text(
        f"# {title}\n\n{body}\n\n"
        f"- command: `{meta['command']}`\n"
        f"- commit: `{meta['commit']}`; spherical_dists {meta['spherical_dists']['version']} from "
        f"`{meta['spherical_dists']['path']}` at `{meta['spherical_dists']['commit']}`\n"
        f"- machine: {m['cpu']}, {m['cpu_count']} CPUs, {meta['jobs']} model(s) trained at a time; device "
        f"{m['device']}; torch {m['torch']}, Python {m['python']}\n"
        f"- load average (1 / 5 / 15 min) at the start {m['load_average']}, at the end {meta['load_average_end']}\n"
        f"- date: {meta['date']}\n"
        f"- wall time: {wall:.0f} s\n"
    )
    meta["_started"] = time.perf_counter()  # a later report from the same command times its own part
    return wall


def load_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run (its ``metrics.jsonl``)."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def add_command(
    commands: Any, name: str, help_text: str, func: Callable[[argparse.Namespace], None], runs: str, jobs: bool = True
) -> argparse.ArgumentParser:
    """A sub-command with ``--run-dir``, ``--resume`` and (with ``jobs``) ``--jobs``; ``runs`` names the default
    run directory in the help."""
    p = commands.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(func=func)
    p.add_argument("--run-dir", help=f"where checkpoints, metrics.jsonl and result.json go (default: {runs}/...)")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from their last checkpoint")
    if jobs:
        p.add_argument(
            "--jobs", type=int, default=1, help="models trained at once, each in its own process (default: 1)"
        )
    return p


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises ``KeyboardInterrupt``: ``kill`` stops a command as cleanly as Ctrl-C
    (runs save their checkpoint; :func:`run_many` stops its workers the same way)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen command's ``func``, and turn interruptions and user errors into exit codes
    (130 after an interruption, 1 after an error, with the message on stderr)."""
    args = parser.parse_args(argv)
    try:
        with terminate_as_interrupt():
            args.func(args)
    except KeyboardInterrupt:
        print("interrupted: run the same command with --resume to continue", file=sys.stderr)
        return 130
    except (NonFiniteLossError, CheckpointError, DataFormatError, FileNotFoundError, cfg.ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a result or log that cannot be written, a full disk
        print(f"error: {error.filename or 'a file'}: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0
