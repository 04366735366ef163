"""The device pack's dry run (benchmarks/device/): the GPU pack's code paths end to end on the
CPU (tiny sizes, the Triton kernel through the interpreter), so that the pack cannot rot while no
GPU is around. Its output must hold every key that a real run's summary is read for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
CHECK = REPOSITORY / "benchmarks" / "device" / "check.sh"


@pytest.mark.slow
def test_dry_run_writes_the_summaries(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.run(
        ["bash", str(CHECK), "--dry-run", "--seed", "0", "--out", str(tmp_path)],
        cwd=tmp_path,  # the entry point finds the repository by itself
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = json.loads((tmp_path / "device_pack.json").read_text())
    for key in ("command", "commit", "date_utc", "device", "environment", "tests", "sampler", "special", "wall_s"):
        assert key in doc, key
    assert doc["dry_run"] is True and doc["device"] == "cpu"
    for key in ("python", "torch", "torch_cuda", "cuda_available", "triton", "numpy"):
        assert key in doc["environment"], key

    assert [t["name"] for t in doc["tests"]] == ["cuda", "cuda_cases"]
    for t in doc["tests"]:
        assert t["status"] == "passed", t
        assert (tmp_path / t["junit"]).is_file() and (tmp_path / t["log"]).is_file()

    sampler = doc["sampler"]
    assert sampler["timer"] == "time.perf_counter"
    measured = [r for r in sampler["points"] if r["status"] == "ok"]
    assert measured and {r["dtype"] for r in measured} == {"float32", "float64"}
    for r in measured:
        assert r["torch_samples_per_s"] > 0 and r["copy_gb_per_s"] > 0
    if sampler["kernel"] == "ok":  # triton installed: the kernel runs through the interpreter
        assert all(r["kernel_samples_per_s"] > 0 for r in measured)
        assert len(sampler["checks"]) == 3
        for c in sampler["checks"]:
            assert c["unbiased"], c
            assert c["host_sync"].startswith("not applicable")
    else:
        assert "not importable" in sampler["kernel"] and not sampler["checks"]

    accuracy = doc["special"]["accuracy"]
    assert accuracy["met"] and accuracy["max_error"] <= 1e-13
    assert len(accuracy["mpmath_device"]) == 6 and len(accuracy["device_vs_cpu_vmf_log_normalizer"]) == 4
    assert {r["function"] for r in doc["special"]["throughput"]} == {"log_iv", "vmf_log_normalizer(p=1024)"}
    training = doc["training"]  # step 5: the sentence VAE's script run as a program, two presets in a dry run
    assert training["note"] == "" and [r["preset"] for r in training["rows"]] == ["rnnlm", "vmf-vae"]
    for r in training["rows"]:
        assert r["steps"] == 3 and r["ms_per_step"] > 0 and r["train_tokens_per_s"] > 0
        assert 0 < r["epoch_s"] < r["row_s_at_max_epochs"] and r["test_eval_s"] > 0 and r["iw_samples"] == 10
    assert training["full_tokens"]["test"] > training["full_tokens"]["valid"] > 0
    assert set(doc["verdict"]) >= {"tests_passed", "sampler_unbiased", "no_host_sync", "special_within_1e-13"}
    assert doc["verdict"]["training_timed"] is True

    markdown = (tmp_path / "device_pack.md").read_text()
    for heading in ("# Device pack (dry run)", "## 1. Environment", "## 2. CUDA tests", "## 3. Sampler"):
        assert heading in markdown
    assert "## 4. Special functions" in markdown and "## Verdict" in markdown
    assert "## 5. Sentence VAE training steps" in markdown and "| vmf-vae |" in markdown
    assert str(tmp_path) not in markdown  # paths in the summaries are the repository's or $OUT
