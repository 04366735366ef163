"""Step 5 of the device pack: training steps of every full-size Table 1 preset of the sentence VAE.

One command of the example script (run as a program: the pack imports nothing from ``examples/``)
trains each preset for 200 steps on the full PTB training set, without checkpoints, validates on
the first 256 validation sentences and tests on the first 256 test sentences with the preset's
samples (10 for the ELBO, K = 500 for the importance-weighted bound):

    python examples/sentence_vae.py reproduce --rows <presets> --max-steps 200 --no-checkpoints
        --limit-eval-sentences 256 --no-progress --device cuda --run-dir <tmp> --out <tmp>

From each run's ``metrics.jsonl`` and ``result.json``: ms per step and tokens per second of training,
and extrapolations of a full epoch (training on every training token at the measured rate, plus the
validation scaled from 256 sentences to the whole split by tokens), a row of at most ``max_epochs``
epochs, and the test evaluation on the whole test set (scaled by tokens). The first steps include
CUDA and cuDNN warm-up, so the rates are a lower bound. A dry run does the same on the CPU with the
quick preset, 3 steps, 32 sentences and K = 10, for two presets.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY / "examples" / "sentence_vae.py"
PTB = REPOSITORY / "examples" / "data" / "ptb"
TABLE1_ROWS = ("rnnlm", "g-vae", "vmf-vae", "rnnlm-inputless", "g-vae-inputless", "vmf-vae-inputless")
TABLE1_ROWS += ("g-vae-skip", "vmf-vae-skip")
MAX_EPOCHS = 30  # the presets' max_epochs (examples/sentence_vae.py)
MIN_WORDS = 2  # the presets' min_words: shorter sentences are not read


def ptb_tokens(split: str) -> int:
    """Tokens the sentence VAE scores on a whole PTB split: words + ``<eos>`` of every sentence it reads."""
    lines = gzip.decompress((PTB / f"{split}.txt.gz").read_bytes()).decode("utf-8").splitlines()
    return sum(len(words) + 1 for words in map(str.split, lines) if len(words) >= MIN_WORDS)


def _estimate(name: str, run_dir: Path, full: dict[str, int]) -> dict[str, Any]:
    result = json.loads((run_dir / "result.json").read_text())
    (record,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tokens = result["data"]["tokens"]
    train_rate = record["tokens_per_second"]
    valid_seconds = (record["seconds"] - record["train_seconds"]) * full["valid"] / tokens["valid"]
    epoch_seconds = tokens["train"] / train_rate + valid_seconds
    test_seconds = result["eval_seconds"] * full["test"] / tokens["test"]
    return {
        "preset": name,
        "steps": record["step"],
        "ms_per_step": 1000 * record["train_seconds"] / record["step"],
        "train_tokens_per_s": train_rate,
        "epoch_s": epoch_seconds,
        "row_s_at_max_epochs": MAX_EPOCHS * epoch_seconds + test_seconds,
        "test_eval_s": test_seconds,
        "iw_samples": result["config"]["iw_samples"],
        "eval_samples": result["config"]["eval_samples"],
    }


def run(device: str, dry_run: bool, budget_s: float) -> dict[str, Any]:
    """Time the presets' steps (at most ``budget_s`` for the whole command) and extrapolate."""
    rows = TABLE1_ROWS[:3:2] if dry_run else TABLE1_ROWS
    sizes = ["--max-steps", "3", "--limit-eval-sentences", "32", "--iw-samples", "10", "--quick"] if dry_run else []
    sizes = sizes or ["--max-steps", "200", "--limit-eval-sentences", "256"]
    full = {split: ptb_tokens(split) for split in ("valid", "test")}
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, str(SCRIPT), "reproduce", "--rows", *rows, *sizes, "--no-checkpoints"]
        command += ["--no-progress", "--device", device, "--run-dir", f"{tmp}/runs", "--out", f"{tmp}/report"]
        shown = " ".join(["python", *command[1:]]).replace(tmp, "<tmp>").replace(str(REPOSITORY) + "/", "")
        started, note = time.perf_counter(), ""
        try:
            proc = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=budget_s)
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
                raise RuntimeError(f"`{shown}` exited {proc.returncode}: " + " | ".join(tail))
        except subprocess.TimeoutExpired:  # the rows finished so far still count
            note = f"stopped at the step's budget of {budget_s:.0f} s"
        seconds = time.perf_counter() - started
        done = [name for name in rows if (Path(tmp) / "runs" / name / "result.json").exists()]
        estimates = [_estimate(name, Path(tmp) / "runs" / name, full) for name in done]
    missing = [name for name in rows if name not in done]
    return {
        "command": shown,
        "seconds": seconds,
        "note": note + (f"; not timed: {', '.join(missing)}" if missing else ""),
        "full_tokens": full,
        "max_epochs": MAX_EPOCHS,
        "rows": estimates,
    }


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [
        f"`{result['command']}` ({result['seconds']:.0f} s). Epoch: all training tokens at the measured rate plus "
        f"validation scaled to {result['full_tokens']['valid']} tokens; row: {result['max_epochs']} epochs (the "
        f"presets' maximum) plus the test evaluation scaled to {result['full_tokens']['test']} tokens. "
        + (result["note"] or "Every preset timed."),
        "",
        "| preset | ms/step | train tokens/s | epoch s | test eval s (K) | row s, at most |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['preset']} | {r['ms_per_step']:.1f} | {r['train_tokens_per_s']:.0f} | {r['epoch_s']:.0f} | "
            f"{r['test_eval_s']:.0f} ({r['iw_samples']}) | {r['row_s_at_max_epochs']:.0f} |"
        )
    return lines
