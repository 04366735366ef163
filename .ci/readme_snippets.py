"""Run every ```python block of a Markdown file, each in its own interpreter, against the installed package.

Usage: python .ci/readme_snippets.py README.md

Each block runs as ``python -c`` in an empty temporary directory, so the source tree is not on
``sys.path`` and ``import spherical_dists`` finds the installed copy (checked before the blocks run).
Exits non-zero when a block fails, or when the file has no Python block at all.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", flags=re.S | re.M)


def main() -> int:
    markdown = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md").resolve()
    source_tree = markdown.parent
    blocks = BLOCK.findall(markdown.read_text(encoding="utf-8"))
    if not blocks:
        print(f"{markdown}: no ```python block found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as workdir:
        where = subprocess.run(
            [sys.executable, "-c", "import spherical_dists; print(spherical_dists.__file__)"],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if Path(where).resolve().is_relative_to(source_tree):
            print(f"spherical_dists is imported from the source tree ({where}), not an installed copy", file=sys.stderr)
            return 1
        print(f"spherical_dists from {where}")
        failed = 0
        for number, code in enumerate(blocks, 1):
            result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True)
            status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
            print(f"{markdown.name} python block {number}/{len(blocks)}: {status}")
            if result.returncode != 0:
                failed += 1
                print(result.stdout + result.stderr, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
