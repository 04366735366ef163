"""End to end: the training loop learns, resumes exactly, is deterministic, and stops cleanly on NaN."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from textvae.bow import BowCorpus
from textvae.checkpoint import CheckpointError, load_checkpoint
from textvae.data import Batches
from textvae.environment import seed_everything
from textvae.nvdm_model import NVDM, NVDMConfig
from textvae.training import NonFiniteLossError, TrainConfig, Trainer
from textvae.vae import ELBOTerms

MODEL = NVDMConfig(latent_dim=4, hidden=32)
TRAIN = TrainConfig(lr=3e-3, batch_size=16, max_epochs=3, patience=5, seed=0, device="cpu", progress=False)


def _trainer(
    corpora: tuple[BowCorpus, BowCorpus],
    run_dir: Path,
    config: TrainConfig = TRAIN,
    init_seed: int = 0,
    model_cls: type[NVDM] = NVDM,
    **model_kwargs: int,
) -> Trainer:
    train, valid = corpora
    seed_everything(init_seed)
    model = model_cls(MODEL, train.vocab_size, **model_kwargs)
    seed_everything(config.seed)
    return Trainer(
        model,
        Batches(train, config.batch_size, shuffle=True, seed=config.seed),
        Batches(valid, 64, shuffle=False),
        config,
        run_dir,
        log=lambda s: None,
    )


def _params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds", "tokens_per_second")} for r in history]


def test_loss_decreases_and_metrics_are_logged(tiny_corpora, tmp_path: Path) -> None:
    trainer = _trainer(tiny_corpora, tmp_path, replace(TRAIN, max_epochs=6))
    result = trainer.fit()
    history = result.history
    assert len(history) == 6 and result.stop_reason == "max epochs"
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 1.0
    assert history[-1]["valid_ppl_corpus"] < history[0]["valid_ppl_corpus"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert _without_time(lines) == _without_time(history)
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()


def test_same_seed_same_run(tiny_corpora, tmp_path: Path) -> None:
    a = _trainer(tiny_corpora, tmp_path / "a", replace(TRAIN, max_epochs=1))
    b = _trainer(tiny_corpora, tmp_path / "b", replace(TRAIN, max_epochs=1))
    a.fit()
    b.fit()
    assert _same(_params(a), _params(b))
    c = _trainer(tiny_corpora, tmp_path / "c", replace(TRAIN, max_epochs=1, seed=1))
    c.fit()
    assert not _same(_params(a), _params(c))


class _SelfInterruptingNVDM(NVDM):
    """An NVDM that sends its own process a SIGINT (as Ctrl-C would) during the given training step."""

    def __init__(self, *args, interrupt_at: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.interrupt_at = interrupt_at
        self.calls = 0

    def forward(self, batch, n_samples=1):  # type: ignore[no-untyped-def]
        if self.training:
            self.calls += 1
            if self.calls == self.interrupt_at:
                signal.raise_signal(signal.SIGINT)
        return super().forward(batch, n_samples)


@pytest.mark.parametrize("interrupt_at", [8, 6])  # 6 batches per epoch: mid-epoch and an epoch boundary
def test_ctrl_c_checkpoints_and_resume_continues_exactly(tiny_corpora, tmp_path: Path, interrupt_at: int) -> None:
    reference = _trainer(tiny_corpora, tmp_path / "ref")
    reference.fit()

    # The same initial weights as the reference, in a model that interrupts itself.
    interrupted = _trainer(tiny_corpora, tmp_path / "run", model_cls=_SelfInterruptingNVDM, interrupt_at=interrupt_at)
    before = signal.getsignal(signal.SIGINT)  # not always the default: a background job starts with SIG_IGN
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    # The interrupted step was completed, then saved.
    saved = load_checkpoint(tmp_path / "run" / "last.pt", torch.device("cpu"))["trainer"]
    assert saved["global_step"] == interrupt_at
    assert signal.getsignal(signal.SIGINT) is before  # handler restored

    # A new process would build a fresh model (here from another seed, to show the checkpoint is loaded).
    resumed = _trainer(tiny_corpora, tmp_path / "run", init_seed=99)
    said: list[str] = []
    resumed.log = said.append
    result = resumed.fit(resume=True)
    epoch = (interrupt_at - 1) // 6 + 1  # the epoch in progress, and its steps done, when the checkpoint was saved
    assert said[0].endswith(f"at epoch {epoch}, step {interrupt_at - 6 * (epoch - 1)}")
    assert result.epochs == 3
    assert _same(_params(resumed), _params(reference))
    assert _without_time(result.history) == _without_time(reference.state["history"])
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_resume_with_more_epochs_extends_a_finished_run(tiny_corpora, tmp_path: Path) -> None:
    reference = _trainer(tiny_corpora, tmp_path / "ref")
    reference.fit()
    short = _trainer(tiny_corpora, tmp_path / "run", replace(TRAIN, max_epochs=2))
    short.fit()
    longer = _trainer(tiny_corpora, tmp_path / "run", TRAIN)
    longer.fit(resume=True)
    assert _same(_params(longer), _params(reference))


def test_existing_run_is_not_overwritten_and_settings_must_match(tiny_corpora, tmp_path: Path) -> None:
    _trainer(tiny_corpora, tmp_path, replace(TRAIN, max_epochs=1)).fit()
    with pytest.raises(CheckpointError, match="--resume"):
        _trainer(tiny_corpora, tmp_path, replace(TRAIN, max_epochs=1)).fit()
    with pytest.raises(CheckpointError, match=r"lr: 0\.003 -> 0\.01"):
        _trainer(tiny_corpora, tmp_path, replace(TRAIN, lr=0.01)).fit(resume=True)


class _PoisonedNVDM(NVDM):
    """An NVDM whose loss becomes NaN from the given training step on."""

    def __init__(self, *args, poison_at: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.poison_at = poison_at
        self.calls = 0

    def forward(self, batch, n_samples=1):  # type: ignore[no-untyped-def]
        terms = super().forward(batch, n_samples)
        if self.training:
            self.calls += 1
            if self.calls >= self.poison_at:
                return ELBOTerms(terms.recon * float("nan"), terms.kl, terms.n_tokens)
        return terms


def test_nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(tiny_corpora, tmp_path: Path) -> None:
    trainer = _trainer(tiny_corpora, tmp_path, model_cls=_PoisonedNVDM, poison_at=9)  # epoch 2, step 3
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 2, step 3,.*--lr"):
        trainer.fit()
    checkpoint = load_checkpoint(tmp_path / "last.pt", torch.device("cpu"))
    assert checkpoint["trainer"]["epoch"] == 1
    assert all(bool(torch.isfinite(v).all()) for v in checkpoint["model"].values() if v.is_floating_point())
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_kl_warmup_weight(tiny_corpora, tmp_path: Path) -> None:
    trainer = _trainer(tiny_corpora, tmp_path, replace(TRAIN, max_epochs=1, kl_warmup_steps=12))
    result = trainer.fit()
    assert result.history[0]["kl_weight"] == pytest.approx(6 / 12)  # 6 steps done of 12


class _RunsCode:
    """A pickle payload that would run code when unpickled without weights_only."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('ran')",))


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "no-checksum", "crafted"])
def test_a_damaged_or_crafted_checkpoint_is_refused_by_name(
    tiny_corpora, tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints carry a SHA-256 beside them and load with weights_only=True: a damaged one is refused by
    name (it used to load silently with changed weights, or fail with a raw pickle error), and a crafted one
    cannot run code even with a matching checksum."""
    import hashlib

    run = tmp_path / "run"
    _trainer(tiny_corpora, run, replace(TRAIN, max_epochs=1)).fit()
    last, checksum = run / "last.pt", run / "last.pt.sha256"
    data = last.read_bytes()
    if damage == "flip":
        middle = len(data) // 2
        last.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    elif damage == "truncate":
        last.write_bytes(data[: len(data) // 3])
    elif damage == "empty":
        last.write_bytes(b"")
    elif damage == "no-checksum":
        checksum.unlink()
    else:
        torch.save({"model": _RunsCode()}, last)
        checksum.write_text(hashlib.sha256(last.read_bytes()).hexdigest() + "\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="last.pt"):
        _trainer(tiny_corpora, run, replace(TRAIN, max_epochs=2)).fit(resume=True)
    assert not (tmp_path / "PWNED").exists()


def test_a_run_directory_in_use_is_refused(tiny_corpora, tmp_path: Path) -> None:
    """Two processes never train one run at once: an immediate --resume beside a worker that was still
    training wrote the same epochs twice into metrics.jsonl ([1, 2, 3, 3, 4, 4])."""
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    with (run / ".lock").open("a+") as held:
        held.write("process 4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(CheckpointError, match=r"in use by process 4242"):
            _trainer(tiny_corpora, run, replace(TRAIN, max_epochs=1)).fit()
    _trainer(tiny_corpora, run, replace(TRAIN, max_epochs=1)).fit()  # released: it trains


def test_max_steps_ends_the_epoch_early_and_a_larger_budget_continues(tiny_corpora, tmp_path: Path) -> None:
    """6 steps per epoch: max_steps 8 stops after 2 steps of epoch 2, which is validated; a resume with a
    larger budget continues from the next epoch."""
    result = _trainer(tiny_corpora, tmp_path, replace(TRAIN, max_epochs=5, max_steps=8)).fit()
    assert result.stop_reason == "max steps" and [r["step"] for r in result.history] == [6, 8]
    resumed = _trainer(tiny_corpora, tmp_path, replace(TRAIN, max_epochs=5, max_steps=16)).fit(resume=True)
    assert resumed.stop_reason == "max steps" and [r["step"] for r in resumed.history] == [6, 8, 14, 16]


def test_a_time_budget_stops_training_and_keeps_the_validated_best(tiny_corpora, tmp_path: Path) -> None:
    result = _trainer(tiny_corpora, tmp_path, replace(TRAIN, time_budget=1e-9)).fit()  # spent after one step
    assert result.stop_reason == "time budget" and [r["step"] for r in result.history] == [1]
    assert result.best_epoch == 1 and (tmp_path / "best.pt").exists()


def test_without_checkpoints_nothing_is_written_but_metrics_and_the_run_is_the_same(
    tiny_corpora, tmp_path: Path
) -> None:
    """For a GPU lease that must not send checkpoints back: the best weights stay in memory."""
    with_files = _trainer(tiny_corpora, tmp_path / "a")
    without = _trainer(tiny_corpora, tmp_path / "b", replace(TRAIN, checkpoints=False))
    a, b = with_files.fit(), without.fit()
    assert _without_time(a.history) == _without_time(b.history) and a.best_epoch == b.best_epoch
    assert _same(_params(with_files), _params(without))  # both hold the best epoch's weights
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [".lock", "metrics.jsonl"]


def test_a_checkpoint_from_before_a_setting_existed_resumes(tiny_corpora, tmp_path: Path) -> None:
    """A checkpoint written before --no-checkpoints existed lacks that setting: it counts at its default
    (resuming it used to fail with "started with other settings (checkpoints: None -> True)")."""
    from textvae.checkpoint import save_checkpoint

    _trainer(tiny_corpora, tmp_path, replace(TRAIN, max_epochs=1)).fit()
    checkpoint = load_checkpoint(tmp_path / "last.pt", torch.device("cpu"))
    for name in ("checkpoints", "max_steps", "time_budget"):
        del checkpoint["run_config"][name]
    save_checkpoint(checkpoint, tmp_path / "last.pt")
    assert _trainer(tiny_corpora, tmp_path, replace(TRAIN, max_epochs=2)).fit(resume=True).epochs == 2


def test_a_resumed_partial_epoch_whose_budget_is_spent_is_validated(tiny_corpora, tmp_path: Path) -> None:
    """Ctrl-C at step 8 (epoch 2, step 2), then --resume with --max-steps 8: the two steps of epoch 2 are
    validated and scored instead of being dropped (which left a first-epoch run without best.pt)."""
    interrupted = _trainer(tiny_corpora, tmp_path, model_cls=_SelfInterruptingNVDM, interrupt_at=8)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    result = _trainer(tiny_corpora, tmp_path, replace(TRAIN, max_steps=8)).fit(resume=True)
    assert result.stop_reason == "max steps" and [r["step"] for r in result.history] == [6, 8]
