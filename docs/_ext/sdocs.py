"""Local Sphinx extension of the spherical-dists documentation.

Directives that put committed result files into the pages, so that every number comes from a
file in the repository and a page never goes stale when the file changes:

* ``.. results-file:: PATH-OR-GLOB`` (relative to the repository root): a Markdown report
  (``.md``, as written by the examples) converted to reST, or an image (``.png``) as a figure.
  With nothing matching, a "pending" note names the file the page expects.
* ``.. bench-sampler:: GLOB`` and ``.. bench-special:: GLOB``: tables from the JSON written by
  ``benchmarks/bench_sampler.py --json`` and ``benchmarks/bench_special.py --json``, with the
  machine and command they came from; for the sampler, the throughput chart drawn at build time
  by ``docs/make_figures.py``'s :func:`throughput_chart` into ``docs/_generated/``.

``.. if-importable:: NAME`` keeps its content only when ``NAME`` can be imported: the reference
of a module that is on its way to the main branch appears as soon as it lands.

And one check: every public name of the package (``spherical_dists.__all__`` and the ``__all__``
of each public submodule listed there) must be documented somewhere in the API reference, under
that name or another one for the same object; a missing one is a warning, which fails the ``-W``
build.
"""

from __future__ import annotations

import glob
import importlib
import json
import math
import re
import types
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"


# ----------------------------------------------------------------------------- Markdown -> reST

_INLINE = re.compile(
    r"(?P<code>`[^`\n]+`)|(?P<bold>\*\*[^*\n]+\*\*)|(?P<link>\[(?P<text>[^\]\n]+)\]\((?P<url>[^)\s]+)\))"
)
_RST_SPECIAL = re.compile(r"([\\*`|_])")


def _escape(text: str) -> str:
    return _RST_SPECIAL.sub(r"\\\1", text)


def _inline(text: str, md_dir: Path) -> str:
    """Markdown inline markup (code, bold, links) to reST; everything else escaped."""
    out: list[str] = []
    pos = 0
    for m in _INLINE.finditer(text):
        out.append(_escape(text[pos : m.start()]))
        if m.group("code"):
            token = f"``{m.group('code')[1:-1]}``"
        elif m.group("bold"):
            token = f"**{_escape(m.group('bold')[2:-2].strip())}**"
        else:
            label, url = m.group("text"), m.group("url")
            if re.match(r"https?://", url):
                token = f"`{_escape(label)} <{url}>`__"
            else:  # a file of the repository: name it (its page may not exist in the docs)
                target = (md_dir / url.split("#")[0]).resolve()
                try:
                    shown = target.relative_to(ROOT).as_posix()
                except ValueError:
                    shown = url
                token = f"{_escape(label)} (``{shown}``)"
        # reST inline markup must be delimited by whitespace or punctuation: separate it with an
        # escaped space where Markdown allowed a letter or digit next to it.
        before = text[m.start() - 1] if m.start() > 0 else " "
        after = text[m.end()] if m.end() < len(text) else " "
        if before.isalnum():
            token = "\\ " + token
        if after.isalnum():
            token += "\\ "
        out.append(token)
        pos = m.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def _table(lines: list[str], md_dir: Path) -> list[str]:
    def cells(line: str) -> list[str]:
        line = line.strip()
        if line.startswith("|"):
            line = line[1:]
        if line.endswith("|"):
            line = line[:-1]
        return [c.strip() for c in re.split(r"(?<!\\)\|", line)]

    header = cells(lines[0])
    body = [cells(line) for line in lines[2:]] if len(lines) > 1 and re.match(r"^\|?\s*:?-", lines[1]) else []
    out = [".. list-table::", "   :header-rows: 1", "   :class: numbers", ""]
    for row in [header, *body]:
        row = (row + [""] * len(header))[: len(header)]
        for i, cell in enumerate(row):
            converted = _inline(cell, md_dir) or "\\ "
            out.append(("   * - " if i == 0 else "     - ") + converted)
    return out + [""]


def markdown_to_rst(text: str, md_dir: Path) -> list[str]:
    """A small Markdown subset (headings, pipe tables, lists, fenced code, paragraphs) as reST lines.

    Headings become rubrics, so that a report can be placed anywhere in a page."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            language = stripped[3:].strip() or "text"
            block = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                block.append(lines[i])
                i += 1
            out += [f".. code-block:: {language}", ""] + ["   " + b for b in block] + [""]
            i += 1
            continue
        if stripped.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i])
                i += 1
            out += [""] + _table(block, md_dir)
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            out += ["", f".. rubric:: {_inline(heading.group(2), md_dir)}", ""]
        elif re.match(r"^[-*]\s+", stripped):
            if out and out[-1].strip() and not out[-1].startswith(("- ", "  ")):
                out.append("")  # Markdown lets a list follow a paragraph line; reST needs a blank line
            out.append("- " + _inline(re.sub(r"^[-*]\s+", "", stripped), md_dir))
        elif stripped and out and out[-1].startswith(("- ", "  ")) and line.startswith(" "):
            out.append("  " + _inline(stripped, md_dir))  # continuation of a list item
        elif stripped in ("---", "***"):
            out.append("")
        else:
            if stripped and out and out[-1].startswith("- "):
                out.append("")
            out.append(_inline(stripped, md_dir))
        i += 1
    return out + [""]


# ----------------------------------------------------------------------------- helpers


def _matches(pattern: str) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(ROOT / pattern)))


def _note_pattern(env: Any, pattern: str) -> None:
    """Make incremental builds notice new and changed result files: a dependency that does not
    exist (a missing file, or a glob pattern) makes Sphinx re-read the page on every build."""
    env.note_dependency(str(ROOT / pattern))


def _pending(pattern: str, what: str) -> list[str]:
    return [
        ".. admonition:: Pending",
        "   :class: pending",
        "",
        f"   ``{pattern}`` is not in the repository yet. {' '.join(what.split())}",
        "",
    ]


def _fmt_rate(value: float | None) -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return f"{value:.2e}"


def _rel(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()


# A cell of a number column has digits and no letters, once exponents are set aside ("1.2e-16",
# "0.458–0.483", "8 / 25 / 91", "42.0 %", "3.1e+05 *", "+0.4 ! [3e-05]", "100 (-) / 114").
_EXPONENT = re.compile(r"(?<=\d)[eE](?=[-+]?\d)")
_LETTER = re.compile(r"[^\W\d_]")
# A cell of several numbers ("0.458–0.483", "8 / 25 / 91"), which may wrap where a table is too wide.
_SEVERAL_NUMBERS = re.compile(r"\d\s*[/–]\s*[-+(\d]")


def _is_number(text: str) -> bool:
    return any(c.isdigit() for c in text) and not _LETTER.search(_EXPONENT.sub("", text))


def _mark_text_columns(children: list[nodes.Node]) -> None:
    """Give the cells of every non-numeric column of a ``numbers`` table the class ``text``, and
    the cells of several numbers the class ``numbers-list``.

    The stylesheet right-aligns the numbers of such a table and keeps each on one line; the cells
    of a ``text`` column (model names, settings, file links) are left-aligned and may wrap, as may
    a list of numbers, so that a wide results table fits the text column."""
    for child in children:
        for table in child.findall(nodes.table):
            if "numbers" not in table["classes"]:
                continue
            for tgroup in table.findall(nodes.tgroup):
                head = [row for part in tgroup.findall(nodes.thead) for row in part.children]
                body = [row for part in tgroup.findall(nodes.tbody) for row in part.children]
                for column in range(tgroup["cols"]):
                    cells = [row.children[column].astext().strip() for row in body if column < len(row.children)]
                    values = [text for text in cells if text not in ("", "–", "-")]
                    numbers = sum(_is_number(text) for text in values)
                    if values and 2 * numbers >= len(values):
                        for row in body:
                            entry = row.children[column] if column < len(row.children) else None
                            if entry is not None and _SEVERAL_NUMBERS.search(entry.astext()):
                                entry["classes"].append("numbers-list")
                        continue
                    for row in head + body:
                        if column < len(row.children):
                            row.children[column]["classes"].append("text")


class _ResultsDirective(SphinxDirective):
    required_arguments = 1
    final_argument_whitespace = False
    option_spec = {"pending": directives.unchanged}

    def _parse(self, lines: list[str]) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), self.content_offset, container)
        _mark_text_columns(container.children)
        return container.children


# ----------------------------------------------------------------------------- results-file


class ResultsFile(_ResultsDirective):
    """Markdown reports and images from the repository, or a pending note."""

    option_spec = {"pending": directives.unchanged, "width": directives.unchanged, "alt": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        pattern = self.arguments[0]
        _note_pattern(self.env, pattern)
        files = _matches(pattern)
        if not files:
            return self._parse(_pending(pattern, self.options.get("pending", "It will be shown here once committed.")))
        lines: list[str] = []
        for path in files:
            self.env.note_dependency(str(path))
            if path.suffix == ".md":
                lines += markdown_to_rst(path.read_text(encoding="utf-8"), path.parent)
                lines += [f"*Source:* ``{_rel(path)}``", ""]
            elif path.suffix in (".png", ".svg", ".jpg"):
                # Image paths starting with "/" are relative to the source directory (docs/).
                lines += [
                    f".. figure:: /../{_rel(path)}",
                    f"   :alt: {self.options.get('alt', path.stem)}",
                ]
                lines.append(f"   :width: {self.options.get('width', '100%')}")  # scaled: links to full size
                lines += ["", f"   ``{_rel(path)}``", ""]
            else:
                lines += [f".. literalinclude:: /../{_rel(path)}", ""]
        return self._parse(lines)


# ----------------------------------------------------------------------------- benchmarks


def _machine_line(doc: dict[str, Any], path: Path) -> list[str]:
    """Where and how the file's numbers were measured, from its ``machine`` record."""
    m = doc.get("machine", {})
    parts = []
    if m.get("date_utc") or m.get("date"):
        parts.append(f"date {_escape(str(m.get('date_utc') or m.get('date')))}")
    if m.get("gpu") or m.get("cuda"):
        parts.append(f"GPU {_escape(str(m.get('gpu') or m.get('cuda')))}")
    if m.get("cpu"):
        parts.append(f"CPU {_escape(str(m['cpu']))}")
    if m.get("threads") is not None:
        parts.append(f"{m['threads']} threads")
    for lib in ("torch", "scipy", "jax", "jaxlib", "tfp", "power_spherical", "power-spherical"):
        if m.get(lib):
            parts.append(f"{_escape(lib)} {_escape(str(m[lib]))}")
    commit = m.get("spherical_dists_commit") or m.get("commit")
    if commit:
        dirty = " (with uncommitted changes)" if m.get("spherical_dists_dirty") else ""
        parts.append(f"spherical-dists commit ``{str(commit)[:12]}``{dirty}")
    lines = [f"``{_rel(path)}``: " + "; ".join(parts) + "."]
    if m.get("command"):
        lines += ["", f"Command: ``{m['command']}``"]
    load = doc.get("load_avg_start")
    if load:
        lines += ["", f"Load average (1, 5, 15 min) at the start: {', '.join(f'{x:.2f}' for x in load)}."]
    lines.append("")
    if doc.get("busy_at_start"):
        lines += [
            ".. warning::",
            "",
            "   The machine was busy when this run started (see the load average): the timings, and the",
            "   ratios between libraries, are unreliable.",
            "",
        ]
    return lines


def sampler_tables(doc: dict[str, Any]) -> list[str]:
    """Samples/s per grid point and peer, and the sanity check, as reST list-tables."""
    measurements = doc.get("measurements", [])
    peers = list(dict.fromkeys(m["peer"] for m in measurements))
    points = sorted({(m["n"], m["p"], m["kappa"]) for m in measurements})
    by_key = {(m["n"], m["p"], m["kappa"], m["peer"]): m for m in measurements}
    ours_names = [p for p in peers if p.startswith("ours")]

    def cell(m: dict[str, Any] | None) -> str:
        if m is None:
            return "–"
        status = m.get("status")
        if status == "skipped":
            return "skip"
        if status == "error":
            return "error"
        text = _fmt_rate(m.get("samples_per_s"))
        return text + (" \\*" if status == "capped" else "")

    header = ["n", "p", "κ", *peers, "fastest other", "ours / fastest other"]
    rows = []
    for n, p, k in points:
        row = [f"{n:.0e}".replace("e+0", "e"), str(p), f"{k:g}"]
        row += [cell(by_key.get((n, p, k, peer))) for peer in peers]
        others = [
            by_key[(n, p, k, peer)]
            for peer in peers
            if peer not in ours_names and peer != "copy floor" and (n, p, k, peer) in by_key
        ]
        rated = [m for m in others if m.get("status") in ("ok", "capped") and _finite(m.get("samples_per_s"))]
        best = max(rated, key=lambda m: m["samples_per_s"], default=None)
        ours = by_key.get((n, p, k, "ours"))
        if best is not None and ours is not None and _finite(ours.get("samples_per_s")):
            row += [_escape(best["peer"]), f"{ours['samples_per_s'] / best['samples_per_s']:.2f}"]
        else:
            row += ["–", "–"]
        rows.append(row)
    lines = _list_table(header, rows)
    # Sanity: the z-score of the mean of mu^T z per peer and point.
    sanity_rows = []
    for n, p, k in points:
        row = [f"{n:.0e}".replace("e+0", "e"), str(p), f"{k:g}"]
        any_value = False
        for peer in peers:
            m = by_key.get((n, p, k, peer))
            z = _sanity_z(m)
            any_value |= z is not None
            text = "–" if z is None else f"{z:+.1f}" + (" !" if abs(z) > 5 else "")
            norm_error = (m or {}).get("sanity", {}).get("max_norm_error")
            if z is not None and isinstance(norm_error, (int, float)) and norm_error > 1e-5:
                text += f" [{norm_error:.0e}]"
            row.append(text)
        if any_value:
            sanity_rows.append(row)
    if sanity_rows:
        lines += [
            "",
            "Sanity check of the same draws: (mean of μᵀz − its expectation) / standard error. A correct",
            "sampler gives values of order 1; ``!`` marks \\|z\\| > 5; ``[3e-05]`` is the largest",
            "\\| \\|z\\| − 1 \\| over the draws where it exceeds 1e-5 (samples off the sphere). power-spherical",
            "is compared with the mean of its own distribution, every other column with A_p(κ).",
            "",
        ]
        lines += _list_table(["n", "p", "κ", *peers], sanity_rows)
    return lines


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _sanity_z(m: dict[str, Any] | None) -> float | None:
    if not m or not isinstance(m.get("sanity"), dict):
        return None
    for key in ("z", "z_score", "mean_z", "zscore"):
        value = m["sanity"].get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return None


def _list_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = [".. list-table::", "   :header-rows: 1", "   :class: numbers", ""]
    for row in [header, *rows]:
        for i, c in enumerate(row):
            out.append(("   * - " if i == 0 else "     - ") + (c or "\\ "))
    return out + [""]


def special_tables(doc: dict[str, Any]) -> list[str]:
    rows = []
    cuda = any("ours_cuda_per_s" in r for r in doc.get("rows", []))
    one_thread = bool(doc.get("rows")) and all("ours_cpu_1thread_per_s" in r for r in doc["rows"])
    for r in doc.get("rows", []):
        row = [
            _escape(r["region"]),
            f"{r['ours_max_err']:.1e}",
            f"{r['scipy_max_err_where_finite']:.1e}",
            f"{100 * r['scipy_nonfinite']:.1f} %",
            f"{r['ours_cpu_per_s'] / 1e6:.2f}",
            f"{r['scipy_cpu_per_s'] / 1e6:.2f}",
            f"{r['ours_cpu_per_s'] / r['scipy_cpu_per_s']:.2f}",
        ]
        if one_thread:
            row.append(f"{r['ours_cpu_1thread_per_s'] / r['scipy_cpu_per_s']:.2f}")
        if cuda:
            row.append(f"{r['ours_cuda_per_s'] / 1e6:.1f}" if "ours_cuda_per_s" in r else "–")
        rows.append(row)
    header = [
        "region",
        "ours max error",
        "scipy max error (finite)",
        "scipy non-finite",
        "ours CPU Melem/s",
        "scipy CPU Melem/s",
        "ours / scipy",
    ]
    header += ["ours (1 thread) / scipy"] if one_thread else []
    header += ["ours CUDA Melem/s"] if cuda else []
    return _list_table(header, rows)


class BenchSampler(_ResultsDirective):
    """Tables (and the chart) from ``bench_sampler.py --json`` files; ``:charts-only:`` for the gallery."""

    option_spec = {"pending": directives.unchanged, "charts-only": directives.flag}

    def run(self) -> list[nodes.Node]:
        pattern = self.arguments[0]
        _note_pattern(self.env, pattern)
        files = _matches(pattern)
        if not files:
            return self._parse(
                _pending(pattern, self.options.get("pending", "The tables and charts appear here once committed."))
            )
        lines: list[str] = []
        for path in files:
            self.env.note_dependency(str(path))
            doc = json.loads(path.read_text())
            chart = GENERATED / f"throughput_{path.stem}.png"
            figure = [
                f".. figure:: /_generated/{chart.name}",
                f"   :alt: throughput from {path.name}",
                "   :width: 100%",
                "",
            ]
            if "charts-only" in self.options:
                lines += figure if chart.exists() else []
                continue
            lines += [f".. rubric:: {_escape(path.name)}", ""] + _machine_line(doc, path)
            lines += figure if chart.exists() else []
            lines += sampler_tables(doc)
            skipped = doc.get("skipped_points") or []
            if skipped:
                lines += [
                    "Skipped points: "
                    + _escape("; ".join(f"n={s['n']:.0e} p={s['p']} κ={s['kappa']:g} ({s['reason']})" for s in skipped))
                    + ".",
                    "",
                ]
            targets = doc.get("targets") or []
            if targets:
                keys = list(dict.fromkeys(k for t in targets for k in t))
                lines += ["The benchmark's targets, as recorded in the file:", ""]
                lines += _list_table(
                    [_escape(k.replace("_", " ")) for k in keys],
                    [[_escape(_short(t.get(k, "–"))) for k in keys] for t in targets],
                )
            missing = doc.get("peers_not_measured") or {}
            if missing:
                lines += ["Not measured: " + _escape("; ".join(f"{k} ({v})" for k, v in missing.items())) + ".", ""]
        return self._parse(lines)


def _short(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


class BenchSpecial(_ResultsDirective):
    """Accuracy and throughput table from ``bench_special.py --json`` files."""

    def run(self) -> list[nodes.Node]:
        pattern = self.arguments[0]
        _note_pattern(self.env, pattern)
        files = _matches(pattern)
        if not files:
            return self._parse(_pending(pattern, self.options.get("pending", "The table appears here once committed.")))
        lines: list[str] = []
        for path in files:
            self.env.note_dependency(str(path))
            doc = json.loads(path.read_text())
            lines += [f".. rubric:: {_escape(path.name)}", ""] + _machine_line(doc, path) + special_tables(doc)
        return self._parse(lines)


# ----------------------------------------------------------------------------- if-importable


def _resolve(dotted: str) -> Any:
    """The object named ``a.b.c`` (a module, or an attribute of one), or raise ``ImportError``."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                raise ImportError(dotted) from None
        return obj
    raise ImportError(dotted)


class IfImportable(SphinxDirective):
    """``.. if-importable:: spherical_dists.Name``: the content only when the name exists, so that the
    reference of a module still on its way to the main branch appears as soon as it lands."""

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        try:
            _resolve(self.arguments[0])
        except ImportError:
            return []
        container = nodes.container()
        self.state.nested_parse(self.content, self.content_offset, container)
        return container.children


# ----------------------------------------------------------------------------- build hooks


def draw_throughput_charts(app: Sphinx) -> None:
    """Charts for every committed ``benchmarks/results/sampler*.json`` (cheap: no measurement)."""
    files = sorted((ROOT / "benchmarks" / "results").glob("sampler*.json"))
    if not files:
        return
    import sys

    sys.path.insert(0, str(DOCS))
    import make_figures

    GENERATED.mkdir(exist_ok=True)
    for path in files:
        out = GENERATED / f"throughput_{path.stem}.png"
        sources = (path, DOCS / "make_figures.py")  # redrawn when the data or the drawing code changes
        if out.exists() and out.stat().st_mtime >= max(src.stat().st_mtime for src in sources):
            continue
        try:
            make_figures.throughput_chart(path, out)
        except Exception as exc:  # a malformed file must be visible, not fatal to the rest
            logger.warning("could not draw the throughput chart of %s: %s", path.name, exc)


def public_names() -> list[str]:
    """``spherical_dists.NAME`` for the package's ``__all__`` and ``spherical_dists.MOD.NAME`` for the
    ``__all__`` of every public submodule it lists."""
    package = importlib.import_module("spherical_dists")
    names = []
    for name in package.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(package, name)
        names.append(f"spherical_dists.{name}")
        if isinstance(obj, types.ModuleType):
            names += [f"spherical_dists.{name}.{sub}" for sub in getattr(obj, "__all__", [])]
    return names


def check_api_complete(app: Sphinx, env: Any) -> None:
    """Warn for every public name whose object is documented under no name at all."""
    documented = set(env.get_domain("py").objects)
    documented_ids = set()
    for name in documented:
        try:
            documented_ids.add(id(_resolve(name)))
        except ImportError:
            pass
    for name in public_names():
        if name in documented:
            continue
        try:
            if id(_resolve(name)) in documented_ids:
                continue
        except ImportError:
            pass
        logger.warning(
            "public name %s is not documented: add it to a page of docs/api/ (autoclass, autofunction, "
            "automodule, or py:data)",
            name,
        )


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("results-file", ResultsFile)
    app.add_directive("bench-sampler", BenchSampler)
    app.add_directive("bench-special", BenchSpecial)
    app.add_directive("if-importable", IfImportable)
    app.connect("builder-inited", draw_throughput_charts)
    app.connect("env-check-consistency", check_api_complete)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
