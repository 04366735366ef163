"""What the distributions with a mean direction and a concentration share: parameter checks and
broadcasting, ``expand``, ``rsample`` (assembled from each distribution's marginal), ``sample``
and ``repr``."""

from __future__ import annotations

from typing import TypeAlias, TypeVar

import torch
from torch import Tensor
from torch.distributions import Distribution

from ._checks import check_unit, validating
from ._sampling import row_norms, row_sums, tangent_directions, w_and_s
from .constraints import finite_nonnegative, sphere

#: What torch's distributions accept as a shape.
Shape: TypeAlias = torch.Size | list[int] | tuple[int, ...]
_D = TypeVar("_D", bound="DirectionalDistribution")


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

    def __init__(
        self,
        loc: Tensor,
        concentration: Tensor | float | None = None,
        validate_args: bool | None = None,
        **unexpected: object,
    ) -> None:
        name = type(self).__name__
        if unexpected:
            if "scale" in unexpected:
                raise TypeError(
                    f"{name} has no argument 'scale': the concentration is called `concentration` here "
                    f"(s-vae-pytorch and power_spherical call it scale): {name}(loc, concentration=...)"
                )
            raise TypeError(f"{name}() got unexpected keyword arguments {sorted(unexpected)}")
        if concentration is None:
            raise TypeError(f"{name}() missing the argument 'concentration'")
        if not isinstance(loc, Tensor) or loc.dim() < 1 or not loc.is_floating_point():
            raise ValueError("loc must be a floating-point tensor of shape (..., p)")
        dim = loc.shape[-1]
        if dim < 2:
            raise ValueError(f"loc must have p >= 2 entries along its last dimension, got shape {tuple(loc.shape)}")
        validate = validating(validate_args)
        if validate:  # in the dtype the user gave, before any promotion
            check_unit(loc, "loc")
        given = loc.dtype
        if isinstance(concentration, Tensor):
            dtype = torch.promote_types(loc.dtype, concentration.dtype)
            if not dtype.is_floating_point:
                dtype = loc.dtype
            loc, concentration = loc.to(dtype), concentration.to(dtype)
        else:
            # A Python number does not promote loc (as in torch); it is held in float32 at least,
            # so that a half-precision loc with a concentration such as 1e5 does not overflow.
            concentration = torch.as_tensor(concentration, dtype=compute_dtype(loc.dtype), device=loc.device)
        if loc.dtype != given and torch.finfo(loc.dtype).eps < torch.finfo(given).eps:
            # Unit to the given dtype's rounding is not unit to the new one's: renormalise, so that
            # samples and densities are exact in the promoted dtype. Its gradient is loc's projected
            # onto the tangent plane, the only part that moves a point of the sphere.
            loc = torch.nn.functional.normalize(loc, dim=-1)
        if concentration.shape == loc.shape[:-1] + (1,) and loc.dim() >= 2 and loc.shape[-2] != 1:
            raise ValueError(
                f"concentration of shape {tuple(concentration.shape)} next to loc of shape {tuple(loc.shape)} "
                f"would broadcast to a batch of shape {tuple(loc.shape[:-1] + loc.shape[-2:-1])}, one distribution "
                "per pair of rows: the concentration has one entry per row of loc, without the trailing dimension "
                "of size 1 that s-vae-pytorch's heads output. Pass concentration.squeeze(-1); "
                "to broadcast on purpose, expand loc to the batch shape first."
            )
        try:
            batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
        except RuntimeError:
            raise ValueError(
                f"loc of batch shape {tuple(loc.shape[:-1])} and concentration of shape "
                f"{tuple(concentration.shape)} do not broadcast"
            ) from None
        self.loc = loc.expand(batch_shape + (dim,))
        self.concentration = concentration.expand(batch_shape)
        # loc was checked above, in its own dtype; torch's check would judge it by the promoted one.
        super().__init__(batch_shape, torch.Size((dim,)), validate_args=False)
        self._validate_args = validate
        if validate:
            valid = self.arg_constraints["concentration"].check(concentration)
            if not bool(valid.all()):
                raise ValueError(
                    f"concentration must be finite and >= 0, got {concentration[~valid].flatten()[:5].tolist()}"
                )

    @property
    def dim(self) -> int:
        """Ambient dimension :math:`p`."""
        return self.event_shape[0]

    def _expand_into(self, new: _D, batch_shape: Shape) -> _D:
        """The body of ``expand``: each subclass passes ``self._get_checked_instance(ItsClass, _instance)``."""
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ------------------------------------------------------------------ sampling

    def _draw_marginal(self, kappa: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``(1 - w, 1 + w)`` of the marginal ``w = mu^T z``, in float64, one for each entry of the
        1-D ``kappa``, carrying its gradient in ``kappa``: what each distribution supplies."""
        raise NotImplementedError

    def _components(
        self, loc: Tensor, kappa: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(1 - w, 1 + w, v)`` for the rows of ``loc`` (n, p; no gradient) and ``kappa`` (n,): the
        marginal, then the unit tangent directions ``v`` (no gradient). A subclass may draw them
        another way; the order of the draws is part of the random stream that a seed gives."""
        omw, opw = self._draw_marginal(kappa, generator)
        return omw, opw, tangent_directions(loc, generator)

    def _fused_sample(self, loc: Tensor, kappa: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """``z`` without gradients for the rows of ``loc`` (n, p) and ``kappa`` (n,) by a faster path
        than the assembly of ``rsample``, or None where there is none (the default)."""
        return None

    def rsample(self, sample_shape: Shape = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised sample of shape ``sample_shape + batch_shape + (p,)``.

        ``generator`` (optional) is a :class:`torch.Generator` to draw from instead of the global
        one; the same seed and shape give the same samples, whatever the number of threads.

        Gradients: with ``z = w mu + sqrt(1 - w^2) v``, the concentration's reaches ``w`` through
        the distribution's marginal; loc's flows through ``w mu`` and through ``v``, re-projected
        onto the plane orthogonal to ``mu`` (``d v / d mu = -mu v^T``, a rotation of the tangent
        frame to first order). Neither depends on how the sample was drawn, so every backend
        gives gradients with the same law. Without any gradient to track, a fused path may draw
        ``z`` directly.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        dtype = compute_dtype(self.loc.dtype)
        loc = self.loc.to(dtype).expand(shape).reshape(-1, self.dim)
        kappa = self.concentration.expand(shape[:-1]).reshape(-1)
        tracked = torch.is_grad_enabled() and (loc.requires_grad or kappa.requires_grad)
        z = None if tracked else self._fused_sample(loc.detach(), kappa.detach(), generator)
        if z is None:
            omw, opw, v = self._components(loc.detach(), kappa, generator)
            w, s = w_and_s(omw, opw, dtype)
            z = w.unsqueeze(-1) * loc + s.unsqueeze(-1) * (reattach_tangent(v, loc) if tracked else v)
        return z.reshape(shape).to(self.loc.dtype)

    def sample(self, sample_shape: Shape = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        """A sample without gradients, same arguments as ``rsample``."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(loc: {self.loc.size()}, concentration: {self.concentration.size()})"
