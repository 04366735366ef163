"""Directional distributions on the unit hypersphere for PyTorch."""

from . import special

__version__ = "0.1.0"

__all__ = ["special", "__version__"]
