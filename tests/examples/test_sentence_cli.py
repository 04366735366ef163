"""The sentence-model command line end to end: train, sample, interpolate, presets, and two data-parallel
processes under torchrun (gloo on CPU)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sentence_vae

from .conftest import write_sentence_corpus

TINY = [
    "--embed", "8", "--hidden", "16", "--latent-dim", "4", "--kappa", "10", "--batch-size", "16", "--max-epochs", "2",
    "--eval-samples", "2", "--iw-samples", "4", "--iw-chunk", "2", "--no-progress", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sentence_corpus(tmp_path_factory.mktemp("sentences"), sizes=(96, 32, 32))


def test_train_sample_and_interpolate(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert sentence_vae.main(["train", "--data-dir", str(data_dir), "--run-dir", str(run), *TINY]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["data"]["train"] == 96 and result["epochs"] == 2 and result["tokens_per_second"] > 0
    test = result["test"]
    assert test["n_examples"] == 32 and test["kl"] > 0 and test["iw_nll"] < test["nll"] + 1.0
    out = capsys.readouterr().out
    assert "| vMF-VAE kappa=10 | – |" in out  # not PTB: no paper number

    assert sentence_vae.main(["sample", "--run-dir", str(run), "--n", "3", "--max-length", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3"]
    assert all(len(line.split()) <= 1 + 5 for line in lines)
    words = {w for line in lines for w in line.split()[1:]}
    assert words <= {f"{c}{i}" for c in "ab" for i in range(12)} | {"<unk>"}

    assert sentence_vae.main(["interpolate", "--run-dir", str(run), "--steps", "4", "--source", "a1 a2"]) == 0
    out = capsys.readouterr().out
    assert "from: a1 a2" in out and out.count("\n1.00 ") + out.startswith("1.00 ") == 1 and "0.33 " in out


def test_interpolation_points_stay_on_the_sphere() -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.nn.functional.normalize(torch.randn(2, 5, generator=gen), dim=-1)
    path = sentence_vae.slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(path[[0, -1]], torch.stack([a, b]))
    cosines = path @ a
    assert (cosines[1:] < cosines[:-1]).all()  # moves steadily away from a


def test_presets_quick_preset_and_flags_combine() -> None:
    parse = sentence_vae.build_parser().parse_args
    args = parse(["train", "--preset", "vmf-vae-inputless"])
    e = sentence_vae.configure(args, args.preset)
    assert (e.model.latent, e.model.kappa, e.model.inputless, e.model.hidden, e.model.embed) == (
        "vmf",
        80.0,
        True,
        400,
        100,
    )
    args = parse(["train", "--preset", "g-vae", "--quick", "--hidden", "32"])
    e = sentence_vae.configure(args, args.preset, args.quick)
    assert e.model.hidden == 32 and e.data.limit_sentences == sentence_vae.QUICK["limit_sentences"]
    assert e.train.kl_warmup_steps == sentence_vae.QUICK_ANNEALING["kl_warmup_steps"]
    args = parse(["train", "--preset", "vmf-vae", "--quick"])
    assert sentence_vae.configure(args, args.preset, args.quick).train.kl_warmup_steps == 0  # vMF: no annealing


@pytest.mark.parametrize(
    ("preset", "flags", "paper"),
    [
        ("vmf-vae", {}, "96 (5.7) / 98"),
        ("vmf-vae-inputless", {}, "117 (18.6) / 262"),
        ("rnnlm-inputless", {}, "134 (-) / 596"),
        ("g-vae", {}, "99 (4.4) / 109"),
        ("vmf-vae", {"kappa": 50.0}, None),  # the paper's kappa only
        ("vmf-vae-skip", {}, None),
        ("vmf-vae-learned-kappa", {}, None),
        ("vmf-vae", sentence_vae.QUICK, None),  # the CPU quick preset: a small model on a slice
        ("g-vae", {"hidden": 64}, None),
    ],
)
def test_paper_numbers_only_beside_the_same_row(preset: str, flags: dict, paper: str | None) -> None:
    flat = {**sentence_vae.cfg.to_flat(sentence_vae.Experiment()), **sentence_vae.PRESETS[preset], **flags}
    assert sentence_vae.paper_number({"config": flat, "data": {"name": "ptb"}}) == paper
    assert sentence_vae.paper_number({"config": flat, "data": {"name": "ptb:/elsewhere"}}) is None
    cut = {"config": flat, "data": {"name": "ptb"}, "stop_reason": "time budget"}  # a GPU lease's budget
    assert sentence_vae.paper_number(cut) is None


def _torchrun(data_dir: Path, run: Path, *flags: str) -> str:
    """``torchrun --nproc_per_node 2 sentence_vae.py train ...`` on CPU; returns its standard output."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(Path(sentence_vae.__file__)), "train", "--data-dir", str(data_dir), "--run-dir", str(run), *TINY,
        "--threads", "1", *flags,
    ]  # fmt: skip
    # A session of its own, so that a hang is ended with the workers and not only the launcher.
    launcher = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,
    )
    try:
        stdout, stderr = launcher.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        raise
    assert launcher.returncode == 0, stderr[-3000:]
    return stdout


@pytest.mark.slow
def test_two_data_parallel_processes_under_torchrun_and_resume(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    stdout = _torchrun(data_dir, run)
    result = json.loads((run / "result.json").read_text())
    assert result["world_size"] == 2 and result["epochs"] == 2 and result["test"]["n_examples"] == 32
    records = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == [1, 2]  # written once, by rank 0
    # 96 sentences in batches of 16 = 6 batches, 3 per process: both shards' examples are counted.
    assert json.loads(records[0])["step"] == 3
    assert stdout.count("epoch   1 |") == 1 and stdout.count("| vMF-VAE kappa=10 |") == 1  # one process prints

    (run / "result.json").unlink()  # as if it had stopped after epoch 2 of 3
    stdout = _torchrun(data_dir, run, "--max-epochs", "3", "--resume")
    assert "resumed" in stdout and json.loads((run / "result.json").read_text())["epochs"] == 3
    assert (run / "metrics.jsonl").read_text().splitlines()[:2] == records


@pytest.mark.parametrize("preset", ["g-vae", "vmf-vae", "rnnlm"])
def test_a_diverging_run_stops_with_one_error_line(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, preset: str
) -> None:
    """lr = 1000: the Gaussian posterior's scale overflows inside the forward pass (it used to raise
    Normal's constraint error), the vMF and the RNNLM diverge with a finite loss whose validation
    perplexity overflows (it used to end in "training ended without a single validated epoch")."""
    run = ["train", "--preset", preset, "--data-dir", str(data_dir), "--run-dir", str(tmp_path), *TINY]
    assert sentence_vae.main([*run, "--lr", "1000"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--lr" in err[0], err
    assert "became nan" in err[0] or "diverged" in err[0]


def test_perplexity_over_the_words_alone_is_reported_beside_the_scored_tokens() -> None:
    """The paper's NLL / PPL pairs imply about 21.0 tokens per PTB test sentence: its words without <eos>
    (20.94), not the 21.94 tokens the model is scored on; the table gives both perplexities."""
    test = {"nll": 42.0, "iw_nll": 40.0, "n_examples": 2, "n_tokens": 44}  # 22 tokens, 21 words per sentence
    row = sentence_vae.words_only({"test": test})["test"]
    assert row["ppl_words"] == pytest.approx(math.exp(84.0 / 42)) and row["iw_ppl_words"] == pytest.approx(
        math.exp(80.0 / 42)
    )
    assert sentence_vae.words_only({"label": "x", "error": "diverged"}) == {"label": "x", "error": "diverged"}


def test_the_device_pack_times_the_presets_and_counts_the_tokens_of_this_script() -> None:
    """benchmarks/device/training_timing.py runs this script as a program and cannot import it: its copies of
    the Table 1 rows, the presets' epoch budget and the loader's token count must agree with the script's."""
    import importlib.util

    from textvae.sentences import SentenceDataConfig, load_sentence_splits

    path = Path(sentence_vae.__file__).resolve().parents[1] / "benchmarks" / "device" / "training_timing.py"
    spec = importlib.util.spec_from_file_location("training_timing", path)
    assert spec is not None and spec.loader is not None
    timing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(timing)
    assert timing.TABLE1_ROWS == sentence_vae.TABLE1_ROWS
    assert timing.MAX_EPOCHS == sentence_vae.PRESETS["vmf-vae"]["max_epochs"]
    splits = load_sentence_splits(SentenceDataConfig())
    assert (timing.ptb_tokens("valid"), timing.ptb_tokens("test")) == (splits.valid.n_tokens(), splits.test.n_tokens())
