"""One quantity, two exact forms: evaluate the form with less cancellation, element by element.

Several quantities of the package (``log I_v``, ``log C_p + kappa``, the KL divergences) have two
algebraically equal forms, one free of cancellation at small arguments and one at large. The
rounding error of a floating-point sum is at most about ``eps`` times the sum of its terms'
magnitudes, so the form whose terms are smaller in magnitude is the more accurate one. The
choice is a mask without gradient: each element is differentiated through the form it uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["sum_with_smaller_terms"]


def _total(terms: Sequence[Tensor]) -> Tensor:
    return sum(terms[1:], terms[0])


def sum_with_smaller_terms(first: Sequence[Tensor], second: Sequence[Tensor]) -> Tensor:
    r"""``sum(first)`` or ``sum(second)`` (equal in exact arithmetic), element by element, from the
    sequence whose :math:`\sum_i |t_i|` is smaller; ties go to ``first``."""
    size_first = _total([t.abs() for t in first])
    size_second = _total([t.abs() for t in second])
    return torch.where((size_first <= size_second).detach(), _total(first), _total(second))
