"""The document-model command line, end to end on a small slice of 20 Newsgroups."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nvdm
import pytest
import torch
from textvae import config as cfg
from textvae import runs as runs_module

SMALL = [
    "--limit-docs", "300", "--valid-docs", "60", "--hidden", "32", "--latent-dim", "4", "--batch-size", "32",
    "--max-epochs", "2", "--eval-samples", "2", "--iw-samples", "6", "--iw-chunk", "4", "--no-progress",
]  # fmt: skip


def test_train_evaluates_and_resume_reuses_the_finished_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert nvdm.main(["train", "--run-dir", str(tmp_path), *SMALL]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["data"] == {"name": "20ng", "train": 240, "valid": 60, "test": 300}
    assert result["epochs"] == 2 and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    test = result["test"]
    assert test["n_examples"] == 300
    # The IW bound is tighter than the ELBO; a per-document average weighs short, harder documents more.
    assert test["iw_ppl_corpus"] < test["ppl_corpus"] < test["ppl_per_doc"]
    assert "| G-NVDM d=4 |" in capsys.readouterr().out

    assert nvdm.main(["train", "--run-dir", str(tmp_path), "--resume", *SMALL]) == 0
    assert "already finished" in capsys.readouterr().out
    assert nvdm.main(["train", "--run-dir", str(tmp_path), *SMALL]) == 1  # would overwrite: refused
    assert "--resume" in capsys.readouterr().err


def test_a_run_stored_before_a_setting_existed_is_the_same_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert nvdm.main(["train", "--run-dir", str(tmp_path), *SMALL]) == 0
    result_path = tmp_path / "result.json"
    result = json.loads(result_path.read_text())
    del result["config"]["train_docs"]  # as written before --train-docs was added
    result_path.write_text(json.dumps(result))
    capsys.readouterr()
    assert nvdm.main(["train", "--run-dir", str(tmp_path), "--resume", *SMALL]) == 0
    assert "already finished" in capsys.readouterr().out
    # A missing setting counts at its default only: another value is a change.
    flat, defaults = result["config"], cfg.to_flat(nvdm.Experiment())
    assert cfg.changed_settings(defaults, flat, {**flat, "train_docs": 0}) == set()
    assert cfg.changed_settings(defaults, flat, {**flat, "train_docs": 100}) == {"train_docs"}
    assert cfg.changed_settings(defaults, {**flat, "seed": 3}, {**flat, "train_docs": 0}) == {"seed"}


def _metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl without its timing fields (the only ones that differ between identical runs)."""
    timing = {"seconds", "train_seconds", "tokens_per_second"}
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in timing} for line in lines]


def test_train_lowers_the_loss_and_resume_continues_where_it_stopped(tmp_path: Path) -> None:
    """Through the command line: three epochs in one go, or one epoch and then a resume to three,
    give the same epochs, the same metrics and the same test result."""
    vmf = ["--latent", "vmf", "--kappa", "20"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert nvdm.main(["train", "--run-dir", str(straight), *SMALL, *vmf, "--max-epochs", "3"]) == 0
    assert nvdm.main(["train", "--run-dir", str(split), *SMALL, *vmf, "--max-epochs", "1"]) == 0
    assert [m["epoch"] for m in _metrics(split)] == [1]
    assert nvdm.main(["train", "--run-dir", str(split), "--resume", *SMALL, *vmf, "--max-epochs", "3"]) == 0

    history = _metrics(straight)
    assert [m["epoch"] for m in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["valid_ppl_corpus"] < history[0]["valid_ppl_corpus"]
    assert _metrics(split) == history
    results = [json.loads((d / "result.json").read_text()) for d in (straight, split)]
    assert results[0]["test"] == results[1]["test"] and results[0]["epochs"] == results[1]["epochs"] == 3


@pytest.mark.parametrize("latent", [["--latent", "vmf", "--kappa", "20"], ["--latent", "vmf", "--learn-kappa"]])
def test_vmf_latents_train_and_evaluate(tmp_path: Path, latent: list[str]) -> None:
    assert nvdm.main(["train", "--run-dir", str(tmp_path), *SMALL, "--max-epochs", "1", *latent]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    test = result["test"]
    assert result["label"].startswith("v-NVDM d=4")
    assert test["iw_ppl_corpus"] < test["ppl_corpus"]
    if "--learn-kappa" not in latent:  # a fixed kappa: the same KL for every document
        assert result["valid"]["valid_kl"] == pytest.approx(test["kl"], rel=1e-5)
        assert test["kappa"] == pytest.approx(20.0)
    else:
        assert test["kappa"] > 0


def test_malformed_data_is_reported_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "vocab.new").write_text("a 1\nb 1\n")
    (tmp_path / "train.feat").write_text("1 1:1\n1 2:2\n")
    (tmp_path / "test.feat").write_text("1 1:1\n1 3:1\n")
    code = nvdm.main(["train", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--valid-docs", "1"])
    assert code == 1
    assert f"{tmp_path / 'test.feat'}, line 2: word id 3 outside the vocabulary 1..2" in capsys.readouterr().err


def test_presets_and_flags_combine() -> None:
    args = nvdm.build_parser().parse_args(["train", "--preset", "v-nvdm-25", "--kappa", "50"])
    experiment = nvdm.configure(args, args.preset)
    assert (experiment.model.latent, experiment.model.latent_dim, experiment.model.kappa) == ("vmf", 25, 50.0)
    assert experiment.train.lr == nvdm.PRESETS["v-nvdm-25"]["lr"]
    tune = nvdm.build_parser().parse_args(["tune", "--presets", "v-nvdm-50-learned-kappa"])  # an Adam preset too
    assert nvdm.configure(tune, "v-nvdm-50-learned-kappa", None, nvdm.ADAM_PRESETS).model.learn_kappa


# The commands whose validation runs chose each row's recipe (examples/results/nvdm/recipes.md).
VALIDATED = {
    "g-nvdm-200": "--lrs 1.0 --optimizer sgd --batch-size 50 --clip-grad 1 --dropout 0.1 --hidden 400 "
    "--decoder-hidden 400",
    "v-nvdm-25": "--lrs 5e-3 --clip-grad 2 --batch-size 50 --train-samples 5 --patience 5 --max-epochs 80 "
    "--lr-decay 1 --hidden 800 --dropout 0 --architecture paper-code",
    "v-nvdm-200": "--lrs 5e-3 --clip-grad 2 --batch-size 50 --train-samples 5 --patience 5 --max-epochs 80 "
    "--lr-decay 1 --hidden 400 --dropout 0",
}


@pytest.mark.parametrize("preset", sorted(VALIDATED))
def test_table2_recipes_are_the_configurations_chosen_on_validation(preset: str) -> None:
    parser = nvdm.build_parser()
    tune = parser.parse_args(["tune", "--presets", preset, *VALIDATED[preset].split()])
    validated = nvdm.configure(tune, preset, {"lr": tune.lrs[0]}, nvdm.ADAM_PRESETS)
    train = parser.parse_args(["train", "--preset", preset])
    assert nvdm.configure(train, preset) == validated
    assert nvdm.PRESETS[preset] != nvdm.ADAM_PRESETS[preset]  # `tune` starts from the Adam preset


def test_quick_start_trains_both_models_with_the_adam_presets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The quick start compares the two latents under one recipe and budget, whatever Table 2's rows use."""
    seen: list[tuple[str, nvdm.Experiment]] = []
    monkeypatch.setattr(nvdm.runs, "run_many", lambda pipeline, jobs, *rest, **kw: seen.extend(jobs) or [])
    monkeypatch.setattr(nvdm, "test_table", lambda results: "")
    assert nvdm.main(["compare", "--run-dir", str(tmp_path)]) == 0
    for name, experiment in seen:
        flat = nvdm.cfg.to_flat(experiment)
        assert {k: flat[k] for k in nvdm.ADAM_PRESETS[name]} == {**nvdm.ADAM_PRESETS[name], "max_epochs": 25}
    assert [name for name, _ in seen] == list(nvdm.QUICK_ROWS)


@pytest.mark.slow
def test_compare_in_two_processes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The multi-model path: both quick-start models trained at once, each in its own process."""
    assert nvdm.main(["compare", "--jobs", "2", "--run-dir", str(tmp_path), *SMALL, "--max-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "| G-NVDM d=4 | – |" in out and "| v-NVDM d=4 kappa=100 | – |" in out  # no paper row at latent 4
    for name in nvdm.QUICK_ROWS:
        assert json.loads((tmp_path / name / "result.json").read_text())["epochs"] == 1


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_kill_stops_parallel_runs_with_their_checkpoints_and_no_orphans(tmp_path: Path) -> None:
    """SIGTERM to the command alone (``kill``, not Ctrl-C, which reaches every process): each worker saves
    its checkpoint and exits, the command exits 130, and ``--resume`` continues both runs from there."""
    endless = ["--max-epochs", "100000", "--patience", "100000"]
    args = [sys.executable, nvdm.__file__, "compare", "--jobs", "2", "--run-dir", str(tmp_path), *SMALL, *endless]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        runs = [tmp_path / name for name in nvdm.QUICK_ROWS]
        deadline = time.monotonic() + 120
        while not all((r / "metrics.jsonl").exists() and len(_metrics(r)) >= 2 for r in runs):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.2)
        workers = [p for p in _children(process.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:  # never leave processes behind, whatever failed
        for pid in [process.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert "interrupted" in err
    for pid in workers:  # gone (or a zombie that only waits for its exit code to be read)
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "zombie" in status.read_text()
    before = [_metrics(r) for r in runs]
    assert all((r / "last.pt").exists() for r in runs)
    # Resume continues each run where its checkpoint left it, up to two epochs more than the longer one.
    target = max(len(m) for m in before) + 2
    resume = ["--resume", "--max-epochs", str(target), "--patience", "100000"]
    assert nvdm.main(["compare", "--jobs", "2", "--run-dir", str(tmp_path), *SMALL, *resume]) == 0
    for run, old in zip(runs, before, strict=True):
        new = _metrics(run)
        assert len(new) == target and new[: len(old)] == old


@pytest.mark.parametrize(
    ("flags", "paper"),
    [
        (["--preset", "v-nvdm-25"], 793),
        (["--preset", "g-nvdm-200"], 852),
        (["--preset", "v-nvdm-25", "--kappa", "50"], None),  # the paper reports kappa 100 only
        (["--preset", "v-nvdm-50-learned-kappa"], None),
        (["--preset", "g-nvdm-50", "--data-dir", "/elsewhere"], None),  # not 20NG
    ],
)
def test_paper_numbers_only_beside_the_same_configuration(flags: list[str], paper: int | None) -> None:
    args = nvdm.build_parser().parse_args(["train", *flags])
    experiment = nvdm.configure(args, args.preset)
    data_name = "20ng" if not experiment.data.data_dir else "rcv1"
    result = {"config": nvdm.cfg.to_flat(experiment), "data": {"name": data_name}}
    assert nvdm.paper_number(result) == paper


@pytest.mark.parametrize(
    ("preset", "max_epochs", "cut"),
    [
        ("g-nvdm-50", 100, True),  # the Adam protocol allows 200 epochs
        ("g-nvdm-50", 200, False),
        ("v-nvdm-25", 80, False),  # the recipe of May 2018 allows 80
        ("v-nvdm-25", 25, True),
    ],
)
def test_an_epoch_budget_is_truncated_against_the_rows_own_recipe(preset: str, max_epochs: int, cut: bool) -> None:
    """A run that stops at its epoch budget is cut short when that budget is below its row's recipe's; it
    used to be judged against the smallest budget of all presets (80), so 100 epochs of the Adam protocol
    passed for a full run."""
    args = nvdm.build_parser().parse_args(["train", "--preset", preset, "--max-epochs", str(max_epochs)])
    config = nvdm.cfg.to_flat(nvdm.configure(args, preset))
    result = {"config": config, "data": {"name": "20ng"}, "stop_reason": "max epochs"}
    assert nvdm.truncated(result) is cut
    assert (nvdm.paper_number(result) is None) is cut


def test_a_truncated_budget_hides_the_paper_column_and_points_to_the_full_run() -> None:
    """The quick start trains 25 epochs: its table used to sit beside the paper's numbers with no word that
    the budget was cut short (the vMF model's best epoch was its last)."""
    args = nvdm.build_parser().parse_args(["compare"])
    quick = nvdm.configure(args, "v-nvdm-25", nvdm.QUICK_BUDGET)
    result = {
        "label": "v-NVDM d=25 kappa=100",
        "config": nvdm.cfg.to_flat(quick),
        "data": {"name": "20ng"},
        "stop_reason": "max epochs",
        "best_epoch": 25,
        "epochs": 25,
    }
    assert nvdm.paper_number(result) is None
    note = nvdm.budget_note([result])
    assert "stopped at 25 epochs" in note and "25 of 25" in note and "table2.md" in note and "paper 793" in note
    assert nvdm.paper_number({**result, "stop_reason": "early stopping"}) == 793
    smoke = {**result, "stop_reason": "early stopping", "config": {**result["config"], "limit_docs": 400}}
    assert nvdm.paper_number(smoke) is None
    assert nvdm.budget_note([{**result, "stop_reason": "early stopping"}]) == ""


@pytest.mark.parametrize(
    ("cores", "jobs", "n_runs", "plan"), [(2, 2, 5, (2, 1)), (2, 4, 5, (2, 1)), (16, 4, 5, (4, 4)), (16, 4, 2, (2, 8))]
)
def test_parallel_runs_never_use_more_threads_than_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, jobs: int, n_runs: int, plan: tuple[int, int]
) -> None:
    """--jobs 2 used to give each of two processes torch's default threads (four threads on two cores, 14x
    slower); now processes x threads <= cores, and --jobs beyond the cores or the runs is cut down."""
    monkeypatch.setattr(runs_module, "available_cores", lambda: cores)
    assert runs_module.parallel_plan(jobs, n_runs) == plan


def test_an_interruption_stops_the_runs_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the first of several runs in one process stops the command: the next runs must not
    start (an interrupted run used to come back as a failed result, and the loop went on)."""
    started: list[str] = []

    def interrupted_run(pipeline, experiment, run_dir, *args):  # type: ignore[no-untyped-def]
        started.append(run_dir.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(runs_module, "run_one", interrupted_run)
    args = nvdm.build_parser().parse_args(["compare"])
    jobs = [(name, nvdm.configure(args, name)) for name in nvdm.QUICK_ROWS]
    with pytest.raises(KeyboardInterrupt):
        runs_module.run_many(nvdm.PIPELINE, jobs, Path("runs"), resume=False, n_jobs=1)
    assert started == [nvdm.QUICK_ROWS[0]]


def test_parallel_runs_start_with_the_longest() -> None:
    """run_many starts the runs in decreasing expected cost, so that no process is left alone with a long
    run at the end (it returns them in job order)."""
    args = nvdm.build_parser().parse_args(["reproduce"])
    jobs = [(name, nvdm.configure(args, name)) for name in nvdm.TABLE2_ROWS]
    order = [nvdm.TABLE2_ROWS[i] for i in runs_module.longest_first(jobs, nvdm.expected_cost)]
    assert order == ["v-nvdm-200", "g-nvdm-200", "v-nvdm-50", "g-nvdm-50", "v-nvdm-25"]
    assert runs_module.longest_first(jobs, None) == list(range(len(jobs)))


def test_a_diverging_run_stops_with_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """lr = 1 makes the Gaussian NVDM diverge: the weights overflow while the training loss stays finite.
    It used to end in a constraint dump from Normal (its scale became inf); the overflowing validation
    perplexity now stops it with one line that says what to do."""
    flags = ["--latent", "gaussian", "--lr", "1", "--limit-docs", "400", "--valid-docs", "100", "--hidden", "32"]
    flags += ["--latent-dim", "10", "--max-epochs", "3", "--iw-samples", "0", "--no-progress"]
    assert nvdm.main(["train", "--run-dir", str(tmp_path), *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "diverged" in err[0] and "--lr" in err[0]
    assert not (tmp_path / "result.json").exists()


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--eval-samples", "0"),
        ("--iw-chunk", "0"),
        ("--lr-decay", "0"),
        ("--lr", "-1"),
        ("--batch-size", "0"),
        ("--latent-dim", "1"),
        ("--dropout", "1"),
        ("--valid-docs", "0"),
        ("--kappa", "0"),
    ],
)
def test_a_bad_setting_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, value: str
) -> None:
    """--eval-samples 0 used to exit 0 with NaN in result.json, --iw-chunk 0 to fail after training and
    --lr-decay 0 to divide by zero: each is one error line naming the flag, and nothing is written."""
    assert nvdm.main(["train", "--run-dir", str(tmp_path / "run"), *SMALL, flag, value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith(f"error: {flag} must be ")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_kill_9_of_the_command_leaves_no_worker_and_resume_trains_each_epoch_once(tmp_path: Path) -> None:
    """kill -9 of a --jobs 2 command used to leave its workers training as orphans, and an immediate
    --resume then trained the same runs twice at once. The workers now stop with their parent."""
    endless = ["--max-epochs", "100000", "--patience", "100000"]
    args = [sys.executable, nvdm.__file__, "compare", "--jobs", "2", "--run-dir", str(tmp_path), *SMALL, *endless]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    runs = [tmp_path / name for name in nvdm.QUICK_ROWS]
    try:
        deadline = time.monotonic() + 120
        while not all((r / "metrics.jsonl").exists() and len(_metrics(r)) >= 1 for r in runs):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        workers = [p for p in _children(process.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2
        process.kill()
        process.wait(timeout=10)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived its command"
            time.sleep(0.2)
    finally:
        for pid in [process.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    target = max(len(_metrics(r)) for r in runs) + 1
    resume = ["--resume", "--max-epochs", str(target), "--patience", "100000"]
    assert nvdm.main(["compare", "--jobs", "2", "--run-dir", str(tmp_path), *SMALL, *resume]) == 0
    for run in runs:
        assert [m["epoch"] for m in _metrics(run)] == list(range(1, target + 1))


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


@pytest.mark.parametrize("content", ["", '{"config": {', "[1, 2]", "\udcff"])
def test_a_damaged_result_file_is_reported_by_name(tmp_path: Path, capsys: pytest.CaptureFixture, content: str) -> None:
    """An empty, truncated, foreign or non-UTF-8 result.json used to end in a raw JSON traceback."""
    assert nvdm.main(["train", "--run-dir", str(tmp_path), *SMALL]) == 0
    (tmp_path / "result.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    capsys.readouterr()
    assert nvdm.main(["train", "--run-dir", str(tmp_path), "--resume", *SMALL]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'result.json'} is damaged")


@pytest.mark.parametrize("device", ["gpu7"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_an_unusable_device_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture, device: str) -> None:
    assert nvdm.main(["train", "--run-dir", str(tmp_path / "run"), *SMALL, "--device", device]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device ")


def test_a_full_disk_is_one_error_line_naming_the_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch reports a failed write as a RuntimeError deep inside its serializer; the command says which
    checkpoint could not be written, and leaves no half-written file."""
    import textvae.training

    def full_disk(obj: object, path: object) -> None:
        Path(str(path)).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(textvae.training.torch, "save", full_disk)
    assert nvdm.main(["train", "--run-dir", str(tmp_path), *SMALL]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write {tmp_path}") and "disk full" in err[0]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_user_error_in_a_parallel_run_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An error a user can fix inside a --jobs child (here: data that is not there) used to print a child's
    traceback, come back as "process died" and end with exit status 0."""
    missing = tmp_path / "nothing"
    code = nvdm.main(
        ["compare", "--jobs", "2", "--run-dir", str(tmp_path / "runs"), *SMALL, "--data-dir", str(missing)]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert re.match(r"error: \[(g-nvdm-50|v-nvdm-25)\] ", err[-1]) and str(missing) in err[-1]  # the first to fail
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--latent", "gaussian", "--learn-kappa"], "error: --learn-kappa needs --latent vmf"),
        (["--limit-docs", "300", "--valid-docs", "1000"], "error: --valid-docs must be below the 300 training"),
    ],
)
def test_settings_that_contradict_each_other_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    """Both used to end in a ValueError traceback (from make_latent and from holdout_split)."""
    assert nvdm.main(["train", "--run-dir", str(tmp_path / "run"), "--no-progress", *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_a_run_cut_by_a_step_or_time_budget_has_no_paper_column() -> None:
    args = nvdm.build_parser().parse_args(["train"])
    flat = nvdm.cfg.to_flat(nvdm.configure(args, "v-nvdm-25"))
    for reason, setting, said in (
        ("max steps", {"max_steps": 400}, "400 steps"),
        ("time budget", {"time_budget": 300.0}, "300 s"),
    ):
        result = {"label": "v-NVDM", "config": {**flat, **setting}, "data": {"name": "20ng"}, "stop_reason": reason}
        result.update(best_epoch=3, epochs=3)
        assert nvdm.paper_number(result) is None and f"{said}, before early stopping" in nvdm.budget_note([result])


def test_topics_reports_the_npmi_coherence_of_a_trained_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run, tanh = tmp_path / "run", tmp_path / "tanh"  # a linear decoder, and one with a tanh layer (SGD recipe)
    assert nvdm.main(["train", "--run-dir", str(run), *SMALL, "--max-epochs", "1"]) == 0
    assert nvdm.main(["train", "--run-dir", str(tanh), *SMALL, "--max-epochs", "1", "--decoder-hidden", "8"]) == 0
    capsys.readouterr()
    assert nvdm.main(["topics", "--runs", str(run), str(tanh), "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "topics.json").read_text())["rows"]
    assert [r["topics"] for r in rows] == [4, 4] and all(-1 <= r["npmi"] <= 1 for r in rows)
    assert "| G-NVDM d=4 |" in capsys.readouterr().out
    # One word per topic has no pair to score: the mean over no pairs used to come out as NaN.
    assert nvdm.main(["topics", "--runs", str(run), "--top-words", "1"]) == 1
    assert "error: --top-words must be >= 2" in capsys.readouterr().err
