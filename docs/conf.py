"""Sphinx configuration of the spherical-dists documentation.

Build (from the repository root; offline, warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

The package is imported from this checkout (the repository root is put first on ``sys.path``),
not from whatever copy is installed. Nothing is fetched from the network: the intersphinx
inventories are in ``_intersphinx/`` and MathJax is in ``_static/mathjax/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import spherical_dists  # noqa: E402

project = "spherical-dists"
author = "spherical-dists developers"
copyright = "spherical-dists developers"  # noqa: A001 (Sphinx's name)
release = spherical_dists.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.doctest",
    "sdocs",
]

exclude_patterns = ["_build", "_generated", "_intersphinx", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
default_role = "code"  # `x` in these pages means code, as in Markdown
smartquotes = False  # "--resume" stays two hyphens, quotes stay straight

# -- autodoc and napoleon --------------------------------------------------------------------------
# The docstrings are numpy style (spherical_dists.special) or Google style with "Args:"
# (the distribution classes); napoleon reads both.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = False  # torch's docstrings are torch's: document only what is ours
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_preprocess_types = True
napoleon_type_aliases = {"Tensor": "torch.Tensor"}
napoleon_use_ivar = True

# -- cross-references --------------------------------------------------------------------------------
# The inventories ship with the docs (see _intersphinx/make_inventories.py): no network at build time.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", (str(DOCS / "_intersphinx" / "python.inv"),)),
    "torch": ("https://docs.pytorch.org/docs/stable/", (str(DOCS / "_intersphinx" / "torch.inv"),)),
}

# -- doctest -------------------------------------------------------------------------------------------
# The code on these pages runs under `sphinx -b doctest` (the docstrings' examples also run under
# pytest --doctest-modules). Seeded so that printed samples are reproducible.
doctest_global_setup = f"""
from pathlib import Path
ROOT = Path({str(ROOT)!r})
import torch
torch.manual_seed(0)
try:
    import pyro
except ImportError:  # optional: the Pyro page's examples are skipped without it
    pyro = None
"""
doctest_default_flags = (
    __import__("doctest").ELLIPSIS
    | __import__("doctest").NORMALIZE_WHITESPACE
    | __import__("doctest").DONT_ACCEPT_TRUE_FOR_1
)

# -- HTML ----------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"spherical-dists {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {
    "source_repository": "https://github.com/spherical-dists/spherical-dists",
    "source_branch": "main",
    "source_directory": "docs/",
}
# MathJax 3.2.2 (tex-chtml component and its fonts), shipped in _static/mathjax: no CDN needed.
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {"tex": {"macros": {"R": "\\mathbb{R}"}}}
