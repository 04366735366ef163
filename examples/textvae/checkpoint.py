"""Checkpoint files that a crash cannot truncate and a damaged or crafted file cannot pass, the run
directory's lock, and the random-number state that makes a resumed run identical to an uninterrupted one."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import random
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A run directory that cannot be used as asked: a damaged checkpoint, one from other settings, one to
    overwrite, a directory in use by another process."""


def save_checkpoint(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file renamed into place, so that a crash never leaves a truncated
    checkpoint, with its SHA-256 beside it (``path.sha256``), which :func:`load_checkpoint` checks."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
    except (OSError, RuntimeError) as error:  # torch reports a failed write (a full disk) as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path}: {error}. Is the disk full? The previous one is intact.") from None
    checksum, checksum_tmp = (path.with_name(path.name + suffix) for suffix in (".sha256", ".sha256.tmp"))
    checksum_tmp.write_text(hashlib.sha256(tmp.read_bytes()).hexdigest() + "\n")
    os.replace(tmp, path)
    os.replace(checksum_tmp, checksum)


def load_checkpoint(path: Path, device: torch.device) -> Any:
    """A checkpoint of :func:`save_checkpoint`, refused by name unless its checksum matches, and read with
    ``weights_only=True``, so that a crafted file cannot run code."""
    try:
        data, expected = path.read_bytes(), path.with_name(path.name + ".sha256").read_text().strip()
    except OSError as error:
        raise CheckpointError(f"cannot read {error.filename}: {error.strerror}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(
            f"{path} is damaged: its SHA-256 does not match {path.name}.sha256. Start a new run directory, or "
            "restore the file from a copy."
        )
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as error:  # torch and pickle raise many kinds here; all mean "not a checkpoint of ours"
        raise CheckpointError(f"{path} is not a checkpoint this code can load safely: {error}") from None


def lock_run_dir(run_dir: Path) -> IO[str]:
    """An exclusive lock on ``run_dir/.lock`` for as long as the returned file stays open; the operating
    system releases it when the process ends, however it ends, so two processes never train one run."""
    lock = (run_dir / ".lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        owner = lock.read().strip() or "another process"
        lock.close()
        raise CheckpointError(f"{run_dir} is in use by {owner}: wait for it to finish or stop it first") from None
    lock.truncate(0)
    lock.write(f"process {os.getpid()}\n")
    lock.flush()
    return lock


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's random states, NumPy's as plain values (``weights_only`` loads no array)."""
    kind, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state of :func:`rng_state`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
