"""The device pack: every GPU claim of the package checked by one prepared command.

    bash benchmarks/device/check.sh [--dry-run] [--out DIR] [--seed 0]

Steps: (1) the environment, refusing without a CUDA device; (2) the CUDA tests of the suite with
JUnit XML; (3) the sampler's timings and checks (``sampler_timing.py``); (4) the special
functions' accuracy and throughput (``special_timing.py``); (5) 200 training steps of each full-size
Table 1 preset of the sentence VAE (``training_timing.py``); then one JSON and one Markdown summary
in the output folder (``--out``, else ``$OUT``, else ``./device_out``). ``--dry-run``: the same code paths on the
CPU at tiny sizes, the kernel through Triton's interpreter, the wall clock for CUDA events.
See benchmarks/device/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, Triton's interpreter")
    parser.add_argument("--out", type=str, default=None, help="output folder (default: $OUT, else ./device_out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-tests", action="store_true", help="leave out step 2 (the test suite)")
    parser.add_argument("--tests-timeout-s", type=float, default=None, help="default 200 (dry run 120)")
    parser.add_argument("--sampler-budget-s", type=float, default=None, help="default 120 (dry run 30)")
    parser.add_argument("--training-budget-s", type=float, default=None, help="default 150 (dry run 120)")
    return parser.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.dry_run:
    # Before triton is first imported: the kernel then runs on CPU tensors through the interpreter.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sampler_timing  # noqa: E402
import special_timing  # noqa: E402
import training_timing  # noqa: E402
from bench_sampler import git_output  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[2]
JSON_NAME, MARKDOWN_NAME = "device_pack.json", "device_pack.md"
# Files whose tests run on every device of conftest.DEVICES (or have CUDA-only cases).
CUDA_CASE_FILES = [
    "tests/test_special.py",
    "tests/test_mixture.py",
    "tests/test_vmf_sampling.py",
    "tests/test_power_spherical.py",
]
# Step 2: the CUDA tests. Whole files, then the CUDA cases of files that test both devices.
TEST_RUNS: dict[str, list[str]] = {
    "cuda": ["tests/test_cuda.py", "tests/test_triton_kernel.py"],
    "cuda_cases": [*CUDA_CASE_FILES, "-k", "cuda"],
}
# A dry run runs the same commands on the fast tier (the kernel's tests through the interpreter).
DRY_TEST_RUNS: dict[str, list[str]] = {
    "cuda": ["tests/test_cuda.py", "tests/test_triton_kernel.py", "-m", "not slow", "-k", "not law"],
    "cuda_cases": [*CUDA_CASE_FILES, "-k", "cuda"],
}


def _out_dir(args: argparse.Namespace) -> Path:
    return Path(args.out or os.environ.get("OUT") or "device_out")


def _portable_out(out: Path) -> str:
    """The output folder as the summaries name it: inside the repository, relative to it; else
    ``$OUT`` (the device tool's folder) or ``<out>``, so that no machine's folder is recorded."""
    resolved = out.resolve()
    if resolved.is_relative_to(REPOSITORY):
        return resolved.relative_to(REPOSITORY).as_posix()
    return "$OUT" if os.environ.get("OUT") and Path(os.environ["OUT"]).resolve() == resolved else "<out>"


def environment(dry_run: bool) -> dict[str, Any]:
    """Step 1: versions, device and driver."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError as exc:
        env["triton"] = f"not importable: {exc}"
    import spherical_dists

    env["spherical_dists"] = spherical_dists.__version__
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["multiprocessors"] = props.multi_processor_count
        env["compute_capability"] = f"{props.major}.{props.minor}"
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            env["driver"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            env["driver"] = f"unknown ({exc})"
    return env


def run_tests(out: Path, dry_run: bool, timeout_s: float) -> list[dict[str, Any]]:
    """Step 2: pytest on the CUDA tests, natively (no TRITON_INTERPRET), one JUnit XML per run."""
    runs = []
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET" or dry_run}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    deadline = time.perf_counter() + timeout_s
    for name, selection in (DRY_TEST_RUNS if dry_run else TEST_RUNS).items():
        xml, log = out / f"junit_{name}.xml", out / f"pytest_{name}.log"
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *selection]
        cmd += [f"--junitxml={xml}", "-o", "junit_family=xunit2"]
        left = deadline - time.perf_counter()
        command = " ".join(["python", *cmd[1:]]).replace(str(out), _portable_out(out))
        record: dict[str, Any] = {"name": name, "command": command}
        if left <= 5:
            runs.append({**record, "status": "skipped", "note": "time budget spent"})
            continue
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=left)
            log.write_text(proc.stdout + proc.stderr)
            summary = (proc.stdout.strip().splitlines() or [""])[-1]
            # pytest: 0 passed, 5 no tests collected (all deselected); both are a clean run.
            status = "passed" if proc.returncode in (0, 5) else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired as exc:
            log.write_text(f"{exc.stdout or ''}{exc.stderr or ''}\nTIMEOUT after {left:.0f} s\n")
            summary, status = f"timed out after {left:.0f} s", "timeout"
        record.update(status=status, summary=summary, junit=xml.name, log=log.name)
        record["seconds"] = time.perf_counter() - started
        runs.append(record)
        print(f"  tests {name}: {status}: {summary}", flush=True)
    return runs


def _step(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One step's result, or its error: a broken step must not cost the summary of the others."""
    try:
        return fn()
    except Exception:
        text = traceback.format_exc()
        print(text, file=sys.stderr)
        return {"error": text.strip().splitlines()[-1][:500], "traceback": text}


def _section(result: dict[str, Any], lines: Callable[[dict[str, Any]], list[str]]) -> list[str]:
    if "error" in result:
        return [f"**The step failed**: `{result['error']}` (traceback in the JSON)."]
    return lines(result)


_DIRTY = {True: " (uncommitted changes)", False: "", None: " (no git checkout: commit from $PACK_COMMIT)"}


def _markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Device pack" + (" (dry run)" if doc["dry_run"] else ""),
        "",
        f"- command: `{doc['command']}`",
        f"- commit: {doc['commit']}{_DIRTY[doc['dirty']]}",
        f"- date (UTC): {doc['date_utc']}; wall time {doc['wall_s']:.1f} s",
        "",
        "## 1. Environment",
        "",
        *(f"- {k}: {v}" for k, v in doc["environment"].items()),
        "",
        "## 2. CUDA tests",
        "",
    ]
    if not doc["tests"]:
        lines.append("Not run (--skip-tests).")
    for t in doc["tests"]:
        lines.append(f"- {t['name']}: **{t['status']}** {t.get('summary', t.get('note', ''))} (`{t['command']}`)")
    lines += ["", "## 3. Sampler", "", *_section(doc["sampler"], sampler_timing.markdown)]
    lines += ["", "## 4. Special functions", "", *_section(doc["special"], special_timing.markdown)]
    lines += ["", "## 5. Sentence VAE training steps", "", *_section(doc["training"], training_timing.markdown)]
    lines += ["", "## Verdict", ""]
    lines += [f"- {k}: {v}" for k, v in doc["verdict"].items()]
    return "\n".join(lines) + "\n"


def _verdict(doc: dict[str, Any]) -> dict[str, bool | None]:
    """Each claim: True (checked, holds), False (checked, fails) or None (not checked here)."""
    sampler, special = doc["sampler"], doc["special"]
    checks = sampler.get("checks", [])
    targets = sampler.get("targets", [])
    return {
        "tests_passed": all(t["status"] == "passed" for t in doc["tests"]) if doc["tests"] else None,
        "sampler_ran": "error" not in sampler,
        "sampler_unbiased": all(c.get("unbiased", False) for c in checks) if checks else None,
        "no_host_sync": all(c.get("host_sync") == "none" for c in checks) if checks and not doc["dry_run"] else None,
        "sampler_targets_met": all(t["met"] for t in targets) if targets else None,
        "special_within_1e-13": special["accuracy"]["met"] if "error" not in special else False,
        "training_timed": "error" not in doc["training"] and not doc["training"]["note"],
    }


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    out = _out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(args.dry_run)
    print("environment:", *(f"  {k}: {v}" for k, v in env.items()), sep="\n", flush=True)
    if not args.dry_run and not torch.cuda.is_available():
        print("ERROR: torch sees no CUDA device; this pack needs one (or --dry-run on CPU).", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    torch.set_num_threads(min(torch.get_num_threads(), 2) if args.dry_run else torch.get_num_threads())
    commit = git_output(REPOSITORY, "rev-parse", "HEAD")  # "unknown" where the tree came without .git
    changes = git_output(REPOSITORY, "status", "--porcelain", "--untracked-files=no")
    doc: dict[str, Any] = {
        "command": " ".join(["bash benchmarks/device/check.sh", *sys.argv[1:]]).replace(str(out), _portable_out(out)),
        "commit": os.environ.get("PACK_COMMIT", commit) if commit == "unknown" else commit,
        "dirty": None if changes == "unknown" else changes != "",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "device": env.get("gpu", "cpu"),
        "environment": env,
    }
    print("step 2: CUDA tests", flush=True)
    timeout = args.tests_timeout_s or (120.0 if args.dry_run else 200.0)
    doc["tests"] = [] if args.skip_tests else run_tests(out, args.dry_run, timeout)
    print("step 3: sampler", flush=True)
    budget = args.sampler_budget_s or (30.0 if args.dry_run else 120.0)
    doc["sampler"] = _step(lambda: sampler_timing.run(device, args.dry_run, args.seed, budget))
    print("step 4: special functions", flush=True)
    doc["special"] = _step(lambda: special_timing.run(device, args.dry_run, args.seed))
    print("step 5: sentence VAE training steps", flush=True)
    budget = args.training_budget_s or (120.0 if args.dry_run else 150.0)
    doc["training"] = _step(lambda: training_timing.run(device, args.dry_run, budget))
    doc["verdict"] = _verdict(doc)
    doc["wall_s"] = time.perf_counter() - started
    (out / JSON_NAME).write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
    (out / MARKDOWN_NAME).write_text(_markdown(doc))
    print(_markdown(doc))
    print(f"wrote {JSON_NAME} and {MARKDOWN_NAME} into {out} in {doc['wall_s']:.1f} s")
    failed = [k for k, v in doc["verdict"].items() if v is False]
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the summary)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    assert ARGS is not None
    sys.exit(main(ARGS))
