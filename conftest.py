"""Doctest collection over the package: skip the optional Pyro module when Pyro is not installed
(importing it then raises ImportError by design)."""

from __future__ import annotations

import importlib.util

collect_ignore = [] if importlib.util.find_spec("pyro") else ["spherical_dists/pyro.py"]
