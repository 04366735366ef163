"""What the example scripts share: one run end to end, several runs at once, and the command-line frame.

An example describes itself by a :class:`Pipeline` (how to label a configuration, build the model and the
batches of a run, and summarise its result); then

* :func:`run_one` trains (or resumes) one model, evaluates it on the test set and writes ``result.json``;
* :func:`run_many` runs named experiments one after the other, or ``--jobs`` at a time in ordinary child
  processes, which save their checkpoint and stop with their command, even after ``kill -9`` of it;
* :func:`main` runs a command and turns interruptions and the errors a user can fix into one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import torch

from . import config as cfg
from .checkpoint import CheckpointError
from .data import Batches, DataFormatError
from .environment import DEFAULT_THREADS, available_cores, die_with_parent, distributed_rank, seed_everything
from .evaluation import evaluate
from .report import write_json
from .training import BUDGETS, RESUMABLE_CHANGES, NonFiniteLossError, Trainer
from .vae import TextVAE


@dataclass
class RunSetup:
    """The pieces of one run: the fresh model, training batches (this process's shard under data
    parallelism) and validation batches, a callable returning fresh test batches, ``data`` (the data set's
    name and split sizes, for the result file) and a one-line ``description`` for the log."""

    model: TextVAE
    train: Batches
    valid: Batches
    test: Callable[[], Iterable[Any]]
    data: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Pipeline:
    """An example's own parts, module-level functions (child processes load them by name):
    ``label(flat_config) -> str``, ``setup(experiment, rank, world_size) -> RunSetup`` and
    ``summary(result) -> str``, one line of test metrics."""

    label: Callable[[dict[str, Any]], str]
    setup: Callable[[Any, int, int], RunSetup]
    summary: Callable[[dict[str, Any]], str]


class RunError(RuntimeError):
    """A command that cannot do what it was asked, for a reason its message gives."""


#: The errors a user can fix (bad data, settings, files, a diverging model): one ``error:`` line each.
USER_ERRORS = (NonFiniteLossError, CheckpointError, DataFormatError, cfg.ConfigError, RunError, OSError)


def read_result(run_dir: Path) -> dict[str, Any]:
    """``run_dir/result.json``, refused by name when it is missing or is not a result of these scripts."""
    path = run_dir / "result.json"
    if not path.exists():
        raise RunError(f"no result.json in {run_dir}: train a model there first")
    try:
        result = json.loads(path.read_text())
        if not isinstance(result, dict) or not {"config", "test"} <= result.keys():
            raise ValueError("not a result of this program")
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(
            f"{path} is damaged ({type(error).__name__}: {error}); delete it to evaluate the run again"
        ) from None
    return result


def _finished(run_dir: Path, experiment: Any, test: bool) -> dict[str, Any] | None:
    """The result in ``run_dir`` if it is of the same configuration and as complete as asked."""
    if not (run_dir / "result.json").exists():
        return None
    previous = read_result(run_dir)
    # A larger budget or patience continues the run from its checkpoint instead of reusing it.
    ignored = RESUMABLE_CHANGES - BUDGETS
    defaults = cfg.to_flat(type(experiment)())
    same = not cfg.changed_settings(defaults, previous["config"], cfg.to_flat(experiment)) - ignored
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

    previous = _finished(run_dir, experiment, test) if resume else None
    if previous is not None:
        log(f"{label}: already finished in {run_dir}")
        return previous
    # torch's default (which follows OMP_NUM_THREADS), but never more threads than cores, shared among the
    # processes of this machine under torchrun.
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    threads = min(DEFAULT_THREADS, max(1, available_cores() // local_processes))
    torch.set_num_threads(experiment.train.threads or threads)
    seed_everything(experiment.train.seed)
    setup = pipeline.setup(experiment, rank, world_size)
    defaults = cfg.to_flat(type(experiment)())
    trainer = Trainer(setup.model, setup.train, setup.valid, experiment.train, run_dir, flat, log, defaults)
    processes = f", {world_size} processes" if world_size > 1 else ""
    log(f"{label}: {setup.description}; {trainer.device}{processes}, {torch.get_num_threads()} thread(s); {run_dir}")
    fit = trainer.fit(resume=resume)
    speeds = [h["tokens_per_second"] for h in fit.history]
    result: dict[str, Any] = {
        "label": label,
        "config": flat,
        "data": setup.data,
        "best_epoch": fit.best_epoch,
        "epochs": fit.epochs,
        "stop_reason": fit.stop_reason,
        "train_seconds": fit.train_seconds,
        "cpu_seconds": fit.cpu_seconds,
        "tokens_per_second": sum(speeds) / len(speeds),
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
    write_json(run_dir / "result.json", result)
    return result


_Job = tuple[Pipeline, Any, Path, bool, bool, str]


def _run_or_report(job: _Job) -> dict[str, Any]:
    """:func:`run_one`, except that a diverged run becomes a result with an ``error``, so that one bad setting
    (a learning rate too large) does not stop the runs beside it."""
    pipeline, experiment, _, _, _, prefix = job
    try:
        return run_one(*job)
    except NonFiniteLossError as error:
        print(f"{prefix}error: {error}", file=sys.stderr, flush=True)
        return _failed(pipeline, experiment, error=str(error))


def _failed(pipeline: Pipeline, experiment: Any, **why: str) -> dict[str, Any]:
    """The result of a run that did not finish: its label, its configuration and ``error`` or ``fatal``."""
    flat = cfg.to_flat(experiment)
    return {"label": pipeline.label(flat), "config": flat, **why}


def _child(job: _Job, results: Any, parent: int) -> None:
    """A run in a child process of :func:`run_many`; its result goes back through ``results``."""
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        return
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = _run_or_report(job)
    except KeyboardInterrupt:  # its checkpoint is saved; the parent stops the command
        result = _failed(job[0], job[1], error="interrupted; run again with --resume")
    except USER_ERRORS as error:  # the parent stops the command with this message
        result = _failed(job[0], job[1], fatal=f"{job[5]}{_message(error)}")
    with contextlib.suppress(OSError):  # a parent killed meanwhile reads nothing
        results.send(result)


def parallel_plan(n_jobs: int, n_runs: int) -> tuple[int, int]:
    """``(processes, threads per process)`` for ``n_runs`` runs asked to go ``n_jobs`` at a time: never more
    processes than runs or cores, and processes x threads <= cores."""
    processes = max(1, min(n_jobs, n_runs, available_cores()))
    return processes, max(1, available_cores() // processes)


def longest_first(jobs: Sequence[tuple[str, Any]], cost: Callable[[Any], float] | None) -> list[int]:
    """The indices of ``jobs`` in decreasing ``cost(experiment)`` (stable: equal costs keep their order)."""
    return sorted(range(len(jobs)), key=lambda i: -cost(jobs[i][1]) if cost else 0)


def run_many(
    pipeline: Pipeline,
    jobs: Sequence[tuple[str, Any]],
    root: Path,
    resume: bool,
    n_jobs: int,
    test: bool = True,
    cost: Callable[[Any], float] | None = None,
) -> list[dict[str, Any]]:
    """Run named experiments under ``root/name``, one after the other or ``n_jobs`` at a time.

    At most one process per core runs, each with ``cores // n_jobs`` threads (unless ``--threads`` says
    otherwise) and no progress bar, its log lines prefixed with its name. ``cost(experiment)``, a rough
    relative duration, starts the longest runs first; the results keep the order of ``jobs``. A run that
    diverged or was interrupted comes back as ``{"label", "config", "error"}``.
    """
    n_jobs, threads = parallel_plan(n_jobs, len(jobs))
    if n_jobs <= 1:
        return [_run_or_report((pipeline, e, root / name, resume, test, "")) for name, e in jobs]
    work = [
        (pipeline, replace(e, train=replace(e.train, threads=e.train.threads or threads, progress=False)))
        + (root / name, resume, test, f"[{name}] ")
        for name, e in jobs
    ]
    queue = longest_first(jobs, cost)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, never a fork of running thread pools
    running: dict[Connection, tuple[int, Any]] = {}
    results: list[dict[str, Any]] = [{}] * len(work)
    try:
        while queue or running:
            while queue and len(running) < n_jobs:
                i = queue.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(work[i], send, os.getpid()))
                process.start()
                send.close()
                running[receive] = (i, process)
            for ready in multiprocessing.connection.wait(list(running)):
                receive = cast(Connection, ready)  # wait() returns some of the connections it was given
                i, process = running.pop(receive)
                try:
                    results[i] = receive.recv()
                except EOFError:  # the child died without a result
                    results[i] = _failed(pipeline, jobs[i][1], error="its process died")
                process.join()
                if "fatal" in results[i]:
                    raise RunError(results[i]["fatal"])
    except BaseException:  # Ctrl-C reaches the children by itself, kill or an error here not: tell them
        for _, process in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        for _, process in running.values():
            process.join()  # each finishes its step and writes its checkpoint
        raise
    return results


def load_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run (its ``metrics.jsonl``)."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def add_command(
    commands: Any, name: str, help_text: str, func: Callable[[argparse.Namespace], None], runs: str, jobs: bool = True
) -> argparse.ArgumentParser:
    """A sub-command with ``--run-dir``, ``--resume`` and (with ``jobs``) ``--jobs``; ``runs`` names the
    default run directory in the help."""
    p = commands.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(func=func)
    p.add_argument("--run-dir", help=f"where checkpoints, metrics.jsonl and result.json go (default: {runs}/...)")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from their last checkpoint")
    if jobs:
        p.add_argument("--jobs", type=int, default=1, help="models trained at once, one process each (default: 1)")
    return p


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):  # a full disk, a read-only folder
        return f"{error.filename or 'a file'}: {error.strerror or error}"
    return str(error)


def main(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    interrupted: str = "run the same command with --resume to continue",
) -> int:
    """Parse ``argv`` and run the command's ``func``; SIGTERM stops it like Ctrl-C (exit code 130, with the
    hint ``interrupted``), and an error a user can fix is one ``error:`` line (exit code 1)."""
    args = parser.parse_args(argv)
    if getattr(args, "jobs", 1) < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        print(f"error: {_message(error)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
