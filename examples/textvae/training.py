r"""The training loop of the text-VAE examples.

:class:`Trainer` minimises the negative ELBO, :math:`\frac1B \sum_{d \in \text{batch}} (\mathrm{recon}_d +
\beta_t \mathrm{KL}_d)`, of any :class:`~textvae.vae.TextVAE`, with :math:`\beta_t` an optional linear KL
warm-up (Bowman et al. 2016). It validates after every epoch (ELBO per token; best weights in ``best.pt``;
lr divided by ``lr_decay`` after an epoch without improvement; a stop after ``patience`` of them), writes
``metrics.jsonl`` and ``last.pt`` (model, optimizer, counters, random states) at epoch ends, every
``checkpoint_every`` steps and on Ctrl-C / SIGTERM, and stops at the first non-finite loss with nothing saved
after it. ``fit(resume=True)`` reproduces the uninterrupted run exactly on the same device: an epoch's batch
order is a function of (seed, epoch) alone and the random states are restored. Under ``torchrun`` the model
is wrapped in DistributedDataParallel, each process trains on its shard of the batches, the epoch's sums are
added across processes, rank 0's validation decides and rank 0 alone writes files (a resumed data-parallel
run is not bit-identical: the other ranks' random states are not saved).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import CheckpointError, load_checkpoint, lock_run_dir, rng_state, save_checkpoint, set_rng_state
from .config import POSITIVE, Settings, at_least, changed_settings, setting
from .data import Batches, derive_seed, move_to_device
from .environment import distributed_rank, interrupt_requests, seed_everything, select_device
from .evaluation import elbo_summary, elbo_terms, perplexity
from .progress import Progress
from .vae import TextVAE

#: Settings that may differ between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = frozenset(
    {"max_epochs", "max_steps", "time_budget", "patience", "device", "threads", "progress", "checkpoint_every"}
)
#: Of those, the ones that decide when training ends: a larger value continues a finished run.
BUDGETS = frozenset({"max_epochs", "max_steps", "time_budget", "patience"})


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Optimisation and run settings, independent of the model."""

    optimizer: Literal["adam", "sgd"] = setting("adam", "adam or sgd")
    lr: float = setting(1e-3, "initial learning rate", POSITIVE)
    batch_size: int = setting(64, "examples per training batch", at_least(1))
    max_epochs: int = setting(100, "upper bound on the number of epochs", at_least(1))
    max_steps: int = setting(0, "stop after this many steps, ending the epoch early (0: no limit)", at_least(0))
    time_budget: float = setting(0.0, "stop after this many seconds of training, ending the epoch early", at_least(0))
    patience: int = setting(10, "stop after this many epochs in a row without validation improvement", at_least(1))
    lr_decay: float = setting(1.0, "divide the lr by this after an epoch without improvement (1: never)", at_least(1))
    clip_grad: float = setting(0.0, "clip the gradient norm to this (0: never)", at_least(0))
    kl_warmup_steps: int = setting(0, "anneal the KL weight linearly from 0 to 1 over this many steps", at_least(0))
    train_samples: int = setting(1, "samples of z per example in a training step", at_least(1))
    valid_samples: int = setting(1, "samples of z per example for the validation ELBO", at_least(1))
    seed: int = setting(0, "seed of parameters, batch order and sampling")
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N")
    threads: int = setting(0, "CPU threads for torch (0: one per core, shared among parallel runs)", at_least(0))
    checkpoint_every: int = setting(0, "also checkpoint every this many steps (0: at epoch ends only)", at_least(0))
    checkpoints: bool = setting(True, "write last.pt and best.pt (without: best weights kept in memory, no resume)")
    progress: bool = setting(True, "show progress bars")
    amp: bool = setting(False, "bfloat16 autocast in the forward pass (CUDA or CPU)")


_ZERO_SUMS = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "tokens": 0.0, "examples": 0.0, "seconds": 0.0}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped without saving the bad state."""


@dataclass
class FitResult:
    """The best epoch (1-based; its weights are in the model) and its validation metrics, the epochs done,
    why training stopped, wall and CPU seconds over all sessions, and one record per epoch."""

    best_epoch: int
    best_valid: dict[str, float]
    epochs: int
    stop_reason: str
    train_seconds: float
    cpu_seconds: float
    history: list[dict[str, Any]] = field(repr=False)


class Trainer:
    """Train a :class:`~textvae.vae.TextVAE` on the ``train`` batches (shuffled; this process's shard under
    data parallelism), validated on ``valid``, into ``run_dir`` (``last.pt``, ``best.pt``, ``metrics.jsonl``).
    ``run_config``, the run's flat configuration, is stored in the checkpoint: a resume with other settings
    than :data:`RESUMABLE_CHANGES` is refused (a setting the checkpoint lacks counts at its value in
    ``defaults``, else at TrainConfig's default). ``log`` receives one-line messages."""

    def __init__(
        self,
        model: TextVAE,
        train: Batches,
        valid: Batches,
        config: TrainConfig,
        run_dir: str | Path,
        run_config: dict[str, Any] | None = None,
        log: Callable[[str], None] = print,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.device = select_device(config.device)
        self.model = model.to(self.device)
        self.rank, self.world_size = distributed_rank()
        if train.world_size != self.world_size:
            raise ValueError(f"{self.world_size} processes but training batches sharded {train.world_size} ways")
        # Gradients are averaged across processes by the wrapper's backward; files hold the bare model.
        self.parallel_model = DistributedDataParallel(self.model) if self.world_size > 1 else self.model
        self.train_batches, self.valid_batches = train, valid
        self.run_dir = Path(run_dir)
        self.last_path, self.best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.run_config = dict(run_config or asdict(config))
        self.defaults = {**asdict(TrainConfig()), **(defaults or {})}
        self.log = log if self.rank == 0 else (lambda line: None)
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
        else:  # fused: one kernel for all parameters, 2-3 times faster on CPU, the same algorithm
            self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
        # epoch: 0-based index of the epoch in progress (or next to start)
        self.state: dict[str, Any] = dict(epoch=0, step_in_epoch=0, global_step=0, lr=config.lr, best_score=math.inf)
        self.state.update(best_epoch=0, bad_epochs=0, sums=dict(_ZERO_SUMS), history=[], stop_reason=None)
        self.state.update(train_seconds=0.0, cpu_seconds=0.0)
        self.best_weights: dict[str, Any] | None = None  # without checkpoints: the best weights, in memory

    def _clock(self, started: tuple[float, float]) -> tuple[float, float]:
        """Add the wall and CPU time since ``started`` to the epoch's and the run's totals (CPU time does not
        grow when other programs compete for the cores); return now."""
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

    def _sum_epoch_over_processes(self, keep_on_other_ranks: bool) -> None:
        sums = self.state["sums"]
        keys = [k for k in sums if k != "seconds"]
        totals = self._all_sum([sums[k] for k in keys])
        sums.update(zip(keys, totals) if keep_on_other_ranks or self.rank == 0 else dict.fromkeys(keys, 0.0))

    def _save_last(self) -> None:
        if not self.config.checkpoints:
            return
        if self.world_size > 1:  # rank 0 saves the totals so far; the others restart their sums from zero
            self._sum_epoch_over_processes(keep_on_other_ranks=False)
        if self.rank == 0:
            checkpoint = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
            checkpoint.update(trainer=self.state, rng=rng_state(), run_config=self.run_config)
            save_checkpoint(checkpoint, self.last_path)

    def _load_last(self) -> None:
        checkpoint = load_checkpoint(self.last_path, self.device)
        stored, current = checkpoint["run_config"], self.run_config
        changed = changed_settings(self.defaults, stored, current)
        if changed - RESUMABLE_CHANGES:
            details = ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in sorted(changed))
            raise CheckpointError(f"cannot resume {self.last_path}: it was started with other settings ({details})")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.state = checkpoint["trainer"]
        if self.rank != 0:
            self.state["sums"] = {k: (v if k == "seconds" else 0.0) for k, v in self.state["sums"].items()}
        set_rng_state(checkpoint["rng"])
        self._set_lr(self.state["lr"])
        if self.rank == 0:  # the JSONL mirrors the checkpoint: drop any line written after it
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in self.state["history"]))

    def _set_lr(self, lr: float) -> None:
        self.state["lr"] = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _kl_weight(self) -> float:
        steps = self.config.kl_warmup_steps
        return 1.0 if steps <= 0 else min(1.0, self.state["global_step"] / steps)

    def _diverged(self, what: str) -> NonFiniteLossError:
        saved = f"the last good checkpoint ({self.last_path}; the best weights are in {self.best_path})"
        saved = saved if self.config.checkpoints else "the start (--no-checkpoints)"
        return NonFiniteLossError(
            f"the model diverged: {what}; training stopped, and nothing was saved after {saved}. "
            "Try a lower --lr or --clip-grad."
        )

    def _step(self, batch: Any) -> None:
        """One optimisation step; accumulates the epoch's running sums."""
        state, sums = self.state, self.state["sums"]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp):
            terms = self.parallel_model(move_to_device(batch, self.device), n_samples=self.config.train_samples)
        loss = (terms.recon.float() + self._kl_weight() * terms.kl.float()).mean()
        loss_value = loss.item()
        if not math.isfinite(self._all_sum([loss_value])[0]):  # a NaN on any process stops them all
            where = f"epoch {state['epoch'] + 1}, step {state['step_in_epoch'] + 1}, lr {state['lr']:.3g}"
            raise self._diverged(f"the training loss became {loss_value} at {where}")
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
        """Validation metrics; rank 0's decide for all processes (their sampling noise differs)."""
        shared: list[Any] = [None]
        if self.rank == 0:
            terms = elbo_terms(self.model, self.valid_batches.epoch(), self.config.valid_samples)
            shared[0] = {f"valid_{k}": v for k, v in elbo_summary(terms).items()}
        if self.world_size > 1:
            dist.broadcast_object_list(shared, src=0)
        if not math.isfinite(shared[0]["valid_ppl_corpus"]):  # NaN and overflow both give inf
            raise self._diverged(f"the validation bound overflowed after epoch {self.state['epoch'] + 1}")
        return shared[0]

    def _end_epoch(self, started: tuple[float, float]) -> None:
        """Validate, update the early-stopping state, checkpoint and log."""
        state, config = self.state, self.config
        started = self._clock(started)
        if self.world_size > 1:
            self._sum_epoch_over_processes(keep_on_other_ranks=True)
        sums = state["sums"]
        train_seconds = sums["seconds"]
        valid = self._validate()
        self._clock(started)
        score = math.log(valid["valid_ppl_corpus"])  # negative ELBO per validation token
        improved, epoch = score < state["best_score"], state["epoch"] + 1
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
            "train_seconds": train_seconds,  # the epoch's training, without validation
            "seconds": sums["seconds"],
        }
        if improved:
            state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
            if not config.checkpoints:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            elif self.rank == 0:
                save_checkpoint(self.model.state_dict(), self.best_path)
        else:
            state["bad_epochs"] += 1
            self._set_lr(state["lr"] / config.lr_decay)
        state["history"].append(record)
        state.update(epoch=epoch, step_in_epoch=0, sums=dict(_ZERO_SUMS))
        reason = [self._stop_reason()]
        if self.world_size > 1:  # the processes' clocks differ: rank 0's decides for the time budget
            dist.broadcast_object_list(reason, src=0)
        state["stop_reason"] = reason[0]
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

    def _stop_reason(self) -> str | None:
        state, config = self.state, self.config
        reached = {
            "early stopping": state["bad_epochs"] >= config.patience,
            "max epochs": state["epoch"] >= config.max_epochs,
            "max steps": 0 < config.max_steps <= state["global_step"],
            "time budget": 0 < config.time_budget <= state["train_seconds"],
        }
        return next((reason for reason, done in reached.items() if done), None)

    def _out_of_budget(self, started: tuple[float, float]) -> bool:
        """Whether ``max_steps`` or ``time_budget`` ends the epoch in progress (``started``: see :meth:`_clock`)."""
        spent = self.state["train_seconds"] + time.perf_counter() - started[0]
        return 0 < self.config.max_steps <= self.state["global_step"] or 0 < self.config.time_budget <= spent

    def fit(self, resume: bool = False) -> FitResult:
        """Train until early stopping or a budget (``max_epochs``, ``max_steps``, ``time_budget``), then load the
        best weights. With ``resume``, continue from ``last.pt``; without, a directory holding one is refused.
        The run directory is locked meanwhile. Raises KeyboardInterrupt after Ctrl-C or SIGTERM (once the
        checkpoint is written) and :class:`NonFiniteLossError` when the model diverges."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with lock_run_dir(self.run_dir) if self.rank == 0 else contextlib.nullcontext():  # closing it unlocks
            return self._fit(resume)

    def _fit(self, resume: bool) -> FitResult:
        state, config = self.state, self.config
        if resume and self.last_path.exists():
            self._load_last()
            state = self.state
            self.log(f"resumed {self.last_path} at epoch {state['epoch'] + 1}, step {state['step_in_epoch']}")
        elif self.last_path.exists():
            raise CheckpointError(f"{self.last_path} exists: pass --resume or use a new run directory")
        else:
            if self.rank == 0:
                self.metrics_path.write_text("")
            # The run's random stream (sampling, dropout) depends on the seed alone, not on what consumed
            # the global generator before (building the model); each process has its own.
            seed_everything(derive_seed(self.config.seed, 1, *([self.rank] if self.world_size > 1 else [])))
        if state["step_in_epoch"] and self._stop_reason() in ("max steps", "time budget"):
            self._end_epoch((time.perf_counter(), time.process_time()))  # score the partial epoch of a resume
        state["stop_reason"] = self._stop_reason()  # a resume with a larger budget or patience continues
        with interrupt_requests() as interrupt:
            while state["stop_reason"] is None:
                self.model.train()
                started = (time.perf_counter(), time.process_time())
                desc = f"epoch {state['epoch'] + 1}"
                progress = Progress(
                    config.progress and self.rank == 0, len(self.train_batches), state["step_in_epoch"], desc
                )
                with progress:
                    for batch in self.train_batches.epoch(state["epoch"], start=state["step_in_epoch"]):
                        self._step(batch)
                        progress.update(loss=state["sums"]["loss"] / state["sums"]["examples"])
                        # The processes decide together: a signal or a clock reaches them at different steps.
                        flags = self._all_sum([float(interrupt["stop"]), float(self._out_of_budget(started))])
                        every = config.checkpoint_every
                        if flags[0] or (every and state["global_step"] % every == 0):
                            started = self._clock(started)
                            self._save_last()
                        if flags[0]:
                            saved = f"checkpoint saved to {self.last_path}" if config.checkpoints else "no checkpoint"
                            self.log(f"{saved}; continue with --resume")
                            raise KeyboardInterrupt
                        if flags[1]:
                            break
                self._end_epoch(started)
        best_weights = self.best_weights or load_checkpoint(self.best_path, self.device)
        self.model.load_state_dict(best_weights)
        best = state["history"][state["best_epoch"] - 1]
        valid = {k: v for k, v in best.items() if k.startswith("valid_")}
        seconds = state["train_seconds"], state["cpu_seconds"]
        return FitResult(state["best_epoch"], valid, state["epoch"], state["stop_reason"], *seconds, state["history"])
