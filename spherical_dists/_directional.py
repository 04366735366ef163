"""What the distributions with a mean direction and a concentration share: parameter checks and
broadcasting, ``expand``, ``sample`` and ``repr``."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from ._sampling import row_norms, row_sums
from .constraints import finite_nonnegative, sphere


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half precision is computed in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def reattach_tangent(v: Tensor, loc: Tensor) -> Tensor:
    """``v`` (unit, orthogonal to ``loc``, no gradient) re-projected onto the plane orthogonal to
    ``loc`` and normalised: the identity in value, with ``d v / d loc = -loc v^T``, a rotation of
    the tangent frame to first order. Every sampler's ``v`` gets the same gradient this way."""
    v = v - row_sums(v * loc) * loc
    return v / row_norms(v)


class DirectionalDistribution(Distribution):
    """Base of the distributions on :math:`S^{p-1}` with parameters ``loc`` (unit vectors, shape
    ``(..., p)``) and ``concentration`` (:math:`\\ge 0`, broadcastable with ``loc.shape[:-1]``)."""

    arg_constraints = {"loc": sphere, "concentration": finite_nonnegative}
    support = sphere
    has_rsample = True

    def __init__(self, loc: Tensor, concentration: Tensor | float, validate_args: bool | None = None) -> None:
        if not isinstance(loc, Tensor) or loc.dim() < 1 or not loc.is_floating_point():
            raise ValueError("loc must be a floating-point tensor of shape (..., p)")
        dim = loc.shape[-1]
        if dim < 2:
            raise ValueError(f"loc must have p >= 2 entries along its last dimension, got shape {tuple(loc.shape)}")
        if isinstance(concentration, Tensor):
            dtype = torch.promote_types(loc.dtype, concentration.dtype)
            if not dtype.is_floating_point:
                dtype = loc.dtype
            loc, concentration = loc.to(dtype), concentration.to(dtype)
        else:
            concentration = torch.as_tensor(concentration, dtype=loc.dtype, device=loc.device)
        try:
            batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
        except RuntimeError:
            raise ValueError(
                f"loc of batch shape {tuple(loc.shape[:-1])} and concentration of shape "
                f"{tuple(concentration.shape)} do not broadcast"
            ) from None
        self.loc = loc.expand(batch_shape + (dim,))
        self.concentration = concentration.expand(batch_shape)
        super().__init__(batch_shape, torch.Size((dim,)), validate_args=validate_args)

    @property
    def dim(self) -> int:
        """Ambient dimension :math:`p`."""
        return self.event_shape[0]

    def _expand_into(self, new: DirectionalDistribution, batch_shape: torch.Size | tuple[int, ...]):  # type: ignore[no-untyped-def]
        """The body of ``expand``: each subclass passes ``self._get_checked_instance(ItsClass, _instance)``."""
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(
        self, sample_shape: torch.Size | tuple[int, ...] = torch.Size(), generator: torch.Generator | None = None
    ) -> Tensor:
        """A sample without gradients, same arguments as ``rsample``."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(loc: {self.loc.size()}, concentration: {self.concentration.size()})"
