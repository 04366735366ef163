"""Argument checks whose errors say what was wrong, by how much, and what to pass instead."""

from __future__ import annotations

import operator
from typing import SupportsIndex

import torch
from torch import Tensor
from torch.distributions import Distribution

from .constraints import sphere, unit_norm_tolerance

__all__ = ["check_count", "check_unit", "validating"]


def check_count(value: object, name: str, low: int, high: int | None = None) -> int:
    """``value`` as a Python int in ``[low, high]`` (NumPy and 0-d integer tensors accepted, bool rejected)."""
    try:
        if isinstance(value, bool) or not isinstance(value, SupportsIndex):
            raise TypeError
        count = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if count < low or (high is not None and count > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {count}")
    return count


def check_unit(value: Tensor, name: str) -> None:
    """Raise a ``ValueError`` that says how far from unit norm the worst row of ``value`` is, and
    which tolerance applies (that of ``value``'s own dtype and size; see ``constraints.sphere``). The test
    is the constraint's own (one pass, one host synchronisation); the float64 measure is only for the message."""
    if bool(sphere.check(value).all()):
        return
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} must be finite, got non-finite entries")
    norm = torch.linalg.vector_norm(value.detach().to(torch.float64), dim=-1)
    error = float((norm - 1.0).abs().max())
    tolerance = unit_norm_tolerance(value.dtype, value.shape[-1])
    raise ValueError(
        f"{name} must have unit norm along its last dimension: the largest | ||{name}|| - 1 | is {error:.3g}, "
        f"above the {value.dtype} tolerance {tolerance:.3g} (16 eps sqrt(p), p = {value.shape[-1]}); "
        f"normalise it in the dtype you pass, e.g. torch.nn.functional.normalize({name}, dim=-1)"
    )


def validating(validate_args: bool | None) -> bool:
    """Whether to validate: ``validate_args``, or torch's distribution default where it is None."""
    return Distribution._validate_args if validate_args is None else validate_args
