"""Results carry no machine's absolute paths: run metadata, and every committed result file."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from textvae.report import REPOSITORY, portable_path, run_metadata

# A machine folder anywhere in a path, also after a prefix such as <outside>.
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users|mnt|opt|var|usr)/")


def test_run_metadata_records_portable_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    inside = REPOSITORY / "examples" / "runs" / "x"
    monkeypatch.setattr(sys, "argv", ["examples/nvdm.py", "train", "--run-dir", str(inside), "--out", "/tmp/a/b/c"])
    meta = run_metadata()
    assert meta["command"] == "python examples/nvdm.py train --run-dir examples/runs/x --out <outside>/c"
    assert not Path(meta["spherical_dists"]["path"]).is_absolute()
    assert portable_path(REPOSITORY) == "."


def test_committed_results_hold_no_absolute_paths() -> None:
    offenders = []
    for folder in ("examples/results", "benchmarks/results"):
        for path in sorted((REPOSITORY / folder).rglob("*")):
            if path.suffix in {".json", ".md", ".csv", ".jsonl"}:
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    if ABSOLUTE.search(line):
                        offenders.append(f"{path.relative_to(REPOSITORY)}:{number}")
    assert not offenders, offenders[:10]
