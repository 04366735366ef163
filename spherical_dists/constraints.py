"""Constraints for distributions on the unit hypersphere.

``sphere`` is the support of every distribution in this package: vectors of unit Euclidean norm
along the last dimension. Its tolerance grows with the dtype's machine epsilon and with the square
root of the dimension, since a norm of ``p`` rounded terms is off by about ``eps * sqrt(p)``.
``transform_to(sphere)`` normalises (not a bijection: it has no Jacobian), which is what generic
code such as parameter initialisation needs.

``finite_nonnegative`` is the concentration's constraint: ``[0, inf)``, NaN and inf excluded.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.constraint_registry import biject_to, transform_to
from torch.distributions.transforms import ExpTransform, Transform

__all__ = ["sphere", "finite_nonnegative", "NormalizeTransform"]


def unit_norm_tolerance(dtype: torch.dtype, dim: int) -> float:
    """Largest accepted ``| ||x|| - 1 |`` for a vector of ``dim`` entries of ``dtype``."""
    return 16.0 * torch.finfo(dtype).eps * max(1.0, math.sqrt(dim))


class _Sphere(constraints.Constraint):
    """Unit vectors along the last dimension: ``| ||x||_2 - 1 | <= 16 eps sqrt(p)``."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:
        if not value.is_floating_point():
            value = value.to(torch.get_default_dtype())
        norm = torch.linalg.vector_norm(value, dim=-1)
        return (norm - 1.0).abs() <= unit_norm_tolerance(value.dtype, value.shape[-1])

    def __repr__(self) -> str:
        return "Sphere()"


class _FiniteNonnegative(constraints.Constraint):
    """Real numbers in ``[0, inf)``: NaN and infinity are rejected."""

    def check(self, value: Tensor) -> Tensor:
        return (value >= 0) & torch.isfinite(value)

    def __repr__(self) -> str:
        return "FiniteNonnegative()"


#: Unit vectors along the last dimension (``event_dim = 1``): accepts ``x`` when
#: ``| ||x||_2 - 1 | <= 16 eps sqrt(p)`` for the dtype's machine epsilon and the size ``p`` of the
#: last dimension. ``transform_to(sphere)`` is :class:`NormalizeTransform`.
sphere = _Sphere()
#: Real numbers in ``[0, inf)``, NaN and infinity rejected (the concentration's constraint).
#: ``transform_to`` and ``biject_to`` give :class:`torch.distributions.transforms.ExpTransform`.
finite_nonnegative = _FiniteNonnegative()


class NormalizeTransform(Transform):
    r"""Map :math:`x \in \mathbb{R}^p \setminus \{0\}` to :math:`x / \lVert x \rVert` on the sphere.

    Not bijective, so it has no log-determinant; its inverse is the identity on the sphere (a right
    inverse), as for :class:`torch.distributions.transforms.SoftmaxTransform`.
    """

    domain = constraints.real_vector
    codomain = sphere

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NormalizeTransform)

    def _call(self, x: Tensor) -> Tensor:
        return torch.nn.functional.normalize(x, dim=-1)

    def _inverse(self, y: Tensor) -> Tensor:
        return y

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        return shape

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        return shape


@transform_to.register(_Sphere)
def _transform_to_sphere(constraint: constraints.Constraint) -> Transform:
    return NormalizeTransform()


@biject_to.register(_FiniteNonnegative)
@transform_to.register(_FiniteNonnegative)
def _transform_to_finite_nonnegative(constraint: constraints.Constraint) -> Transform:
    return ExpTransform()
