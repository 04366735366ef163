r"""The training loop shared by the text-VAE examples.

:class:`Trainer` minimises the negative ELBO, :math:`\frac1B \sum_{d \in \text{batch}} (\mathrm{recon}_d +
\beta_t \mathrm{KL}_d)`, of any :class:`~textvae.vae.TextVAE`, with :math:`\beta_t` an optional linear
KL warm-up (Bowman et al. 2016). Around that:

* validation after every epoch on the ELBO per token (the log of the corpus-level perplexity);
  the best weights are kept in ``best.pt``; the learning rate is divided by ``lr_decay`` after an epoch
  without improvement and training stops after ``patience`` such epochs in a row;
* a checkpoint (``last.pt``: model, optimizer, counters, random-number states, history) at the end of
  every epoch, every ``checkpoint_every`` steps, and on Ctrl-C / SIGTERM (the current step is finished
  first). ``fit(resume=True)`` continues from it and reproduces the uninterrupted run exactly on the
  same device, because the batch order of an epoch is a function of (seed, epoch) alone
  (:class:`~textvae.data.Batches`) and the random state is restored;
* ``metrics.jsonl`` in the run directory, one JSON record per epoch (rewritten from the checkpoint's
  history on resume, so it never holds an epoch twice);
* a progress bar per epoch with the running loss (tqdm when installed);
* a clean stop with a clear message (:class:`NonFiniteLossError`) when the loss becomes NaN or infinite:
  nothing is saved after that point, so ``last.pt`` and ``best.pt`` still hold finite weights;
* training throughput, scored tokens per second of training (validation excluded), in the logs and metrics;
* optional bfloat16 autocast (``amp``), on CUDA or CPU; the losses are summed in float32;
* data parallelism when ``torch.distributed`` is initialised (``torchrun``): the model is wrapped in
  :class:`~torch.nn.parallel.DistributedDataParallel`, every process trains on its shard of the batches
  (built with ``Batches(..., rank=, world_size=)``), the epoch's sums are added across processes, every
  process validates and rank 0's validation decides, and only rank 0 writes files and logs. A resumed
  data-parallel run continues from its checkpoint but is not bit-identical to an uninterrupted one (the
  random states of the other ranks are not saved).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .config import ConfigError, check_settings
from .data import Batches, derive_seed, move_to_device
from .evaluation import elbo_terms, perplexities, perplexity
from .progress import Progress
from .vae import TextVAE

__all__ = [
    "TrainConfig",
    "Trainer",
    "FitResult",
    "NonFiniteLossError",
    "CheckpointError",
    "load_checkpoint",
    "seed_everything",
    "select_device",
    "RESUMABLE_CHANGES",
]

#: Settings that may differ between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = frozenset({"max_epochs", "patience", "device", "threads", "progress", "checkpoint_every"})


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` unless ``torch.distributed`` is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run settings, independent of the model.

    Attributes
    ----------
    optimizer : str
        ``adam`` or ``sgd``.
    lr : float
        Initial learning rate.
    batch_size : int
        Examples per training batch.
    max_epochs : int
        Upper bound on the number of epochs.
    patience : int
        Stop after this many epochs in a row without a validation improvement.
    lr_decay : float
        Divide the learning rate by this after an epoch without improvement (1 disables it).
    clip_grad : float
        Clip the gradient norm to this value (0 disables it).
    kl_warmup_steps : int
        Anneal the KL weight linearly from 0 to 1 over this many steps (0: weight 1 from the start).
    train_samples : int
        Samples of ``z`` per example in a training step.
    valid_samples : int
        Samples of ``z`` per example for the validation ELBO.
    seed : int
        Seed of parameters, batch order and sampling.
    device : str
        ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    threads : int
        CPU threads for torch (0 keeps torch's default).
    checkpoint_every : int
        Also checkpoint every this many steps inside an epoch (0: at epoch ends only).
    progress : bool
        Show a progress bar per epoch.
    amp : bool
        Run the forward pass under bfloat16 autocast (mixed precision; CUDA or CPU).
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    batch_size: int = 64
    max_epochs: int = 100
    patience: int = 10
    lr_decay: float = 1.0
    clip_grad: float = 0.0
    kl_warmup_steps: int = 0
    train_samples: int = 1
    valid_samples: int = 1
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    checkpoint_every: int = 0
    progress: bool = True
    amp: bool = False

    def __post_init__(self) -> None:
        check_settings(
            self,
            lr=(lambda v: 0 < v < math.inf, "a positive number"),
            batch_size=(lambda v: v >= 1, ">= 1"),
            max_epochs=(lambda v: v >= 1, ">= 1"),
            patience=(lambda v: v >= 1, ">= 1"),
            lr_decay=(lambda v: 1 <= v < math.inf, ">= 1 (the learning rate is divided by it; 1 disables it)"),
            clip_grad=(lambda v: 0 <= v < math.inf, ">= 0 (0 disables it)"),
            kl_warmup_steps=(lambda v: v >= 0, ">= 0"),
            train_samples=(lambda v: v >= 1, ">= 1"),
            valid_samples=(lambda v: v >= 1, ">= 1"),
            threads=(lambda v: v >= 0, ">= 0 (0 keeps torch's default)"),
            checkpoint_every=(lambda v: v >= 0, ">= 0"),
        )


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped without saving the bad state."""


class CheckpointError(RuntimeError):
    """A run directory that cannot be used as asked: a checkpoint to overwrite, or one from other settings."""


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` reports.

    Attributes
    ----------
    best_epoch : int
        1-based epoch of the best validation score (its weights are loaded in the model).
    best_valid : dict
        Validation metrics of that epoch.
    epochs : int
        Epochs completed.
    stop_reason : str
        ``early stopping``, ``max epochs``.
    train_seconds : float
        Wall time spent training and validating, summed over resumed sessions.
    cpu_seconds : float
        CPU time of this process (all its threads) over the same spans: unlike the wall time, it does not
        grow when other programs compete for the cores.
    history : list of dict
        One record per epoch, as in ``metrics.jsonl``.
    """

    best_epoch: int
    best_valid: dict[str, float]
    epochs: int
    stop_reason: str
    train_seconds: float
    cpu_seconds: float
    history: list[dict[str, Any]] = field(repr=False)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) and ask torch for deterministic kernels where it has them."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; any other name is passed to :class:`torch.device`."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # one GPU per process under torchrun
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    return device


def _atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file and rename it, so that a crash never leaves a truncated checkpoint, with
    its SHA-256 beside it (``path.sha256``), which :func:`load_checkpoint` checks before reading."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
    except (OSError, RuntimeError) as error:  # torch reports a failed write (a full disk) as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path}: {error}. Is the disk full? The previous one is intact.") from None
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    checksum = path.with_name(path.name + ".sha256")
    checksum_tmp = checksum.with_name(checksum.name + ".tmp")
    checksum_tmp.write_text(digest + "\n")
    os.replace(tmp, path)
    os.replace(checksum_tmp, checksum)


def load_checkpoint(path: Path, device: torch.device) -> Any:
    """A checkpoint written by :func:`_atomic_save`, refused by name unless its checksum matches; read with
    ``weights_only=True``, so that a crafted file cannot run code."""
    checksum = path.with_name(path.name + ".sha256")
    try:
        data = path.read_bytes()
        expected = checksum.read_text().strip()
    except OSError as error:
        raise CheckpointError(f"cannot read {error.filename}: {error.strerror}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(
            f"{path} is damaged: its SHA-256 does not match {checksum.name}. Start a new run directory, or "
            "restore the file from a copy."
        )
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as error:  # torch and pickle raise many kinds here; all mean "not a checkpoint of ours"
        raise CheckpointError(f"{path} is not a checkpoint this code can load safely: {error}") from None


def _lock_run_dir(run_dir: Path) -> Any:
    """An exclusive lock on ``run_dir/.lock`` for as long as the returned file stays open, which the
    operating system releases when the process ends, however it ends: two processes never train one run
    at once (an immediate --resume beside a still-running one would interleave their epochs)."""
    lock = (run_dir / ".lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        owner = lock.read().strip() or "another process"
        lock.close()
        raise CheckpointError(f"{run_dir} is in use by {owner}: wait for it to finish or stop it first") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"process {os.getpid()}\n")
    lock.flush()
    return lock


def _rng_state() -> dict[str, Any]:
    # NumPy's state as plain values and a tensor: weights_only loading accepts no NumPy array.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr)
    try:
        # One kernel for all parameters: the update is 2-3 times faster on CPU than the default loop, and
        # it is the same algorithm.
        return torch.optim.Adam(params, lr=config.lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=config.lr)


class _GracefulInterrupt:
    """Turns the first SIGINT / SIGTERM into a flag checked between steps; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt received: finishing the current step and saving a checkpoint...", file=sys.stderr)

    @contextmanager
    def installed(self) -> Iterator[_GracefulInterrupt]:
        import threading

        if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Trainer:
    """Train a :class:`~textvae.vae.TextVAE` with validation, checkpoints and early stopping.

    Parameters
    ----------
    model
        The model, on any device (it is moved to ``config.device``).
    train, valid
        Training batches (shuffled) and validation batches (fixed order).
    config
        Optimisation and run settings.
    run_dir
        Where ``last.pt``, ``best.pt`` and ``metrics.jsonl`` go.
    run_config
        The complete, flat, JSON-able configuration of the run. It is stored in the checkpoint, and a
        resume with different settings (other than :data:`RESUMABLE_CHANGES`) is refused.
    log
        Where one-line messages go.
    """

    def __init__(
        self,
        model: TextVAE,
        train: Batches,
        valid: Batches,
        config: TrainConfig,
        run_dir: str | Path,
        run_config: dict[str, Any] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self._lock: Any = None  # the run directory's lock, held during fit() (see _lock_run_dir)
        if config.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {config.optimizer!r}; choose adam or sgd")
        self.config = config
        self.device = select_device(config.device)
        self.model = model.to(self.device)
        self.rank, self.world_size = distributed_rank()
        if train.world_size != self.world_size:
            raise ValueError(f"{self.world_size} processes but training batches sharded {train.world_size} ways")
        # Gradients are averaged across processes by the wrapper's backward; files use the bare model.
        self.parallel_model = DistributedDataParallel(self.model) if self.world_size > 1 else self.model
        self.train_batches = train
        self.valid_batches = valid
        self.run_dir = Path(run_dir)
        self.run_config = dict(run_config or asdict(config))
        self.log = log if self.rank == 0 else (lambda line: None)
        self.optimizer = _make_optimizer(list(model.parameters()), config)
        self.state: dict[str, Any] = {
            "epoch": 0,  # 0-based index of the epoch in progress (or next to start)
            "step_in_epoch": 0,
            "global_step": 0,
            "lr": config.lr,
            "best_score": math.inf,
            "best_epoch": 0,
            "bad_epochs": 0,
            "sums": self._zero_sums(),
            "history": [],
            "train_seconds": 0.0,
            "cpu_seconds": 0.0,
            "stop_reason": None,
        }

    # ----------------------------------------------------------------------------------------- paths
    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    # ------------------------------------------------------------------------------------ checkpoints
    @staticmethod
    def _zero_sums() -> dict[str, float]:
        return {"loss": 0.0, "recon": 0.0, "kl": 0.0, "tokens": 0.0, "examples": 0.0, "seconds": 0.0}

    def _clock(self, started: tuple[float, float]) -> tuple[float, float]:
        """Add the wall and CPU time since ``started`` to the epoch's and the run's totals; return the current
        ``(wall, cpu)`` times."""
        now = (time.perf_counter(), time.process_time())
        self.state["sums"]["seconds"] += now[0] - started[0]
        self.state["train_seconds"] += now[0] - started[0]
        self.state["cpu_seconds"] += now[1] - started[1]
        return now

    def _all_sum(self, values: list[float]) -> list[float]:
        """Sums of ``values`` over the processes (the values themselves in a single process)."""
        if self.world_size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def _save_last(self) -> None:
        if self.world_size > 1:
            # Rank 0 saves the epoch's running sums of all processes; the others restart theirs from zero,
            # so that the sums over the processes stay the epoch's totals.
            sums = self.state["sums"]
            keys = [k for k in sums if k != "seconds"]
            totals = self._all_sum([sums[k] for k in keys])
            sums.update(zip(keys, totals) if self.rank == 0 else dict.fromkeys(keys, 0.0))
        if self.rank != 0:
            return
        _atomic_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "trainer": self.state,
                "rng": _rng_state(),
                "run_config": self.run_config,
            },
            self.last_path,
        )

    def _load_last(self) -> None:
        checkpoint = load_checkpoint(self.last_path, self.device)
        changed = {
            key
            for key in set(checkpoint["run_config"]) | set(self.run_config)
            if checkpoint["run_config"].get(key) != self.run_config.get(key)
        } - RESUMABLE_CHANGES
        if changed:
            details = ", ".join(
                f"{k}: {checkpoint['run_config'].get(k)!r} -> {self.run_config.get(k)!r}" for k in sorted(changed)
            )
            raise CheckpointError(f"cannot resume {self.last_path}: it was started with other settings ({details})")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.state = checkpoint["trainer"]
        if self.rank != 0:
            self.state["sums"] = {k: (v if k == "seconds" else 0.0) for k, v in self.state["sums"].items()}
        _set_rng_state(checkpoint["rng"])
        self._set_lr(self.state["lr"])
        # The JSONL mirrors the checkpoint: drop any line written after it.
        if self.rank == 0:
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in self.state["history"]))

    def _set_lr(self, lr: float) -> None:
        self.state["lr"] = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # --------------------------------------------------------------------------------------- training
    def _kl_weight(self) -> float:
        steps = self.config.kl_warmup_steps
        return 1.0 if steps <= 0 else min(1.0, self.state["global_step"] / steps)

    def _step(self, batch: Any) -> None:
        """One optimisation step; accumulates the epoch's running sums."""
        state, sums = self.state, self.state["sums"]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp):
            terms = self.parallel_model(move_to_device(batch, self.device), n_samples=self.config.train_samples)
        kl_weight = self._kl_weight()
        loss = (terms.recon.float() + kl_weight * terms.kl.float()).mean()
        loss_value = loss.item()
        # All processes stop together: a NaN on any of them is a NaN for all.
        if not math.isfinite(self._all_sum([loss_value])[0]):
            raise NonFiniteLossError(
                f"the training loss became {loss_value} at epoch {state['epoch'] + 1}, step "
                f"{state['step_in_epoch'] + 1} (global step {state['global_step'] + 1}, lr {state['lr']:.3g}). "
                f"Training stopped; nothing was saved after the last good checkpoint ({self.last_path}, "
                f"and the best weights in {self.best_path}). Try a lower --lr or gradient clipping (--clip-grad)."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad)
        self.optimizer.step()
        n = terms.recon.numel()
        sums["loss"] += loss_value * n
        sums["recon"] += float(terms.recon.detach().sum())
        sums["kl"] += float(terms.kl.detach().sum())
        sums["tokens"] += float(terms.n_tokens.sum())
        sums["examples"] += n
        state["step_in_epoch"] += 1
        state["global_step"] += 1

    def _validate(self) -> dict[str, float]:
        valid = self._validate_here()
        if self.world_size > 1:  # the processes' sampling noise differs: rank 0's numbers decide for all
            shared = [valid]
            dist.broadcast_object_list(shared, src=0)
            valid = shared[0]
        return valid

    def _validate_here(self) -> dict[str, float]:
        terms = elbo_terms(self.model, self.valid_batches.epoch(), self.config.valid_samples)
        bound = terms["recon"] + terms["kl"]
        if not bool(torch.isfinite(bound).all()):
            raise NonFiniteLossError(
                f"the validation bound is not finite after epoch {self.state['epoch'] + 1}; training stopped "
                f"without saving this epoch. Try a lower --lr or gradient clipping (--clip-grad)."
            )
        ppl = perplexities(bound, terms["n_tokens"])
        if not math.isfinite(ppl["corpus"]):
            nats = float(bound.sum() / terms["n_tokens"].sum())
            raise NonFiniteLossError(
                f"the validation perplexity overflowed after epoch {self.state['epoch'] + 1} ({nats:.4g} nats per "
                f"token): the model diverged; training stopped without saving this epoch. Try a lower --lr or "
                f"gradient clipping (--clip-grad)."
            )
        return {
            "valid_ppl_corpus": ppl["corpus"],
            "valid_ppl_per_doc": ppl["per_doc"],
            "valid_nll": float(bound.mean()),
            "valid_recon": float(terms["recon"].mean()),
            "valid_kl": float(terms["kl"].mean()),
        }

    def _end_epoch(self, started: tuple[float, float]) -> None:
        """Validate, update the early-stopping state, checkpoint and log (``started``: see :meth:`_clock`)."""
        state, sums, config = self.state, self.state["sums"], self.config
        started = self._clock(started)
        if self.world_size > 1:
            keys = [k for k in sums if k != "seconds"]
            sums.update(zip(keys, self._all_sum([sums[k] for k in keys])))
        train_seconds = sums["seconds"]
        valid = self._validate()
        self._clock(started)
        score = math.log(valid["valid_ppl_corpus"])  # negative ELBO per validation token
        improved = score < state["best_score"]
        epoch = state["epoch"] + 1
        record = {
            "epoch": epoch,
            "step": state["global_step"],
            "lr": state["lr"],
            "kl_weight": self._kl_weight(),
            "train_loss": sums["loss"] / sums["examples"],
            "train_recon": sums["recon"] / sums["examples"],
            "train_kl": sums["kl"] / sums["examples"],
            "train_ppl_corpus": perplexity((sums["recon"] + sums["kl"]) / sums["tokens"]),
            "tokens_per_second": sums["tokens"] / train_seconds if train_seconds > 0 else math.nan,
            **valid,
            "best": improved,
            "seconds": sums["seconds"],
        }
        if improved:
            state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
            if self.rank == 0:
                _atomic_save(self.model.state_dict(), self.best_path)
        else:
            state["bad_epochs"] += 1
            if config.lr_decay != 1.0:
                self._set_lr(state["lr"] / config.lr_decay)
        state["history"].append(record)
        state.update(epoch=epoch, step_in_epoch=0, sums=self._zero_sums())
        if state["bad_epochs"] >= config.patience:
            state["stop_reason"] = "early stopping"
        elif epoch >= config.max_epochs:
            state["stop_reason"] = "max epochs"
        self._save_last()
        if self.rank == 0:
            with self.metrics_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        if self.world_size > 1:
            dist.barrier()  # best.pt and last.pt are on disk before any process reads them
        self.log(
            f"epoch {epoch:3d} | loss {record['train_loss']:8.2f} (kl {record['train_kl']:6.2f}) | valid ppl "
            f"{valid['valid_ppl_corpus']:7.1f} corpus, {valid['valid_ppl_per_doc']:7.1f} per doc | lr "
            f"{record['lr']:.3g} | {record['tokens_per_second']:7.0f} tok/s | {record['seconds']:5.1f}s"
            f"{' *' if improved else ''}"
        )

    def fit(self, resume: bool = False) -> FitResult:
        """Train until early stopping or ``max_epochs``, then load the best weights into the model.
        The run directory is locked meanwhile: another process training it is refused.

        Parameters
        ----------
        resume
            Continue from ``run_dir/last.pt``. Without it, a run directory that already holds a checkpoint
            is refused rather than overwritten.

        Raises
        ------
        KeyboardInterrupt
            After Ctrl-C or SIGTERM, once the checkpoint is written.
        NonFiniteLossError
            The loss became NaN or infinite.
        """
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_run_dir(self.run_dir)
        try:
            return self._fit(resume)
        finally:
            if self._lock is not None:
                self._lock.close()  # closing the file releases the lock
                self._lock = None

    def _fit(self, resume: bool) -> FitResult:
        """The body of :meth:`fit`."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.last_path.exists():
            self._load_last()
            self.log(f"resumed {self.last_path} at epoch {self.state['epoch'] + 1}, step {self.state['step_in_epoch']}")
        elif self.last_path.exists():
            raise CheckpointError(f"{self.last_path} exists: pass resume=True (--resume) or use a new run directory")
        else:
            if self.rank == 0:
                self.metrics_path.write_text("")
            # The run's random stream (sampling, dropout) depends on the seed alone, not on whatever
            # consumed the global generator before (such as building the model); each process has its own.
            seed_everything(derive_seed(self.config.seed, 1, *([self.rank] if self.world_size > 1 else [])))
        state, config = self.state, self.config
        if state["stop_reason"] is None and state["epoch"] >= config.max_epochs:
            state["stop_reason"] = "max epochs"  # a resume with a smaller max_epochs
        elif state["stop_reason"] == "max epochs" and state["epoch"] < config.max_epochs:
            state["stop_reason"] = None  # a resume with a larger max_epochs continues
        with _GracefulInterrupt().installed() as interrupt:
            while state["stop_reason"] is None:
                self.model.train()
                started = (time.perf_counter(), time.process_time())
                progress = Progress(
                    config.progress and self.rank == 0,
                    len(self.train_batches),
                    state["step_in_epoch"],
                    f"epoch {state['epoch'] + 1}",
                )
                try:
                    for batch in self.train_batches.epoch(state["epoch"], start=state["step_in_epoch"]):
                        self._step(batch)
                        sums = state["sums"]
                        progress.update(loss=sums["loss"] / sums["examples"])
                        if self.world_size > 1:  # a signal reaches the processes at different steps
                            interrupt.requested = self._all_sum([float(interrupt.requested)])[0] > 0
                        if interrupt.requested or (
                            config.checkpoint_every and state["global_step"] % config.checkpoint_every == 0
                        ):
                            started = self._clock(started)
                            self._save_last()
                        if interrupt.requested:
                            self.log(f"checkpoint saved to {self.last_path}; continue with --resume")
                            raise KeyboardInterrupt
                finally:
                    progress.close()
                self._end_epoch(started)
        if state["best_epoch"] == 0:
            raise RuntimeError("training ended without a single validated epoch")
        self.model.load_state_dict(load_checkpoint(self.best_path, self.device))
        best = state["history"][state["best_epoch"] - 1]
        return FitResult(
            best_epoch=state["best_epoch"],
            best_valid={k: v for k, v in best.items() if k.startswith("valid_")},
            epochs=state["epoch"],
            stop_reason=state["stop_reason"],
            train_seconds=state["train_seconds"],
            cpu_seconds=state["cpu_seconds"],
            history=list(state["history"]),
        )
