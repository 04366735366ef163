"""The uniform distribution on the unit hypersphere."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution

from ._checks import check_count
from ._directional import Shape
from .constraints import sphere

__all__ = ["HypersphericalUniform", "log_sphere_area"]


def log_sphere_area(dim: int) -> float:
    r"""Log surface area of :math:`S^{p-1} \subset \mathbb{R}^p`: :math:`\log(2 \pi^{p/2} / \Gamma(p/2))`."""
    return math.log(2.0) + 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim)


class HypersphericalUniform(Distribution):
    r"""Uniform distribution on the unit sphere :math:`S^{p-1} = \{z \in \mathbb{R}^p : \lVert z \rVert = 1\}`.

    .. math::

        \log f(z) = -\log |S^{p-1}|, \qquad |S^{p-1}| = \frac{2 \pi^{p/2}}{\Gamma(p/2)}.

    ``dim`` is the ambient dimension :math:`p`, the size of the event (``event_shape == (p,)``),
    the same convention as :class:`VonMisesFisher`. s-vae-pytorch's ``HypersphericalUniform(dim)``
    counts differently: its ``dim`` is that of the manifold, :math:`S^{dim} \subset \mathbb{R}^{dim+1}`,
    so its ``HypersphericalUniform(2)`` is this package's ``HypersphericalUniform(3)``.

    Args:
        dim (int): ambient dimension :math:`p \ge 2`.
        batch_shape (torch.Size): batch shape (the distribution has no parameters to broadcast).
        dtype (torch.dtype, optional): dtype of samples and densities (default: torch's default).
        device (torch.device, optional): device of samples and densities (default: CPU).
        validate_args (bool, optional): check samples passed to :meth:`log_prob` (torch's default applies).

    Example::

        >>> import torch
        >>> from spherical_dists import HypersphericalUniform
        >>> prior = HypersphericalUniform(3)
        >>> z = prior.sample((2,))
        >>> z.shape, torch.allclose(z.norm(dim=-1), torch.ones(2))
        (torch.Size([2, 3]), True)
        >>> prior.log_prob(z)  # -log(4 pi)
        tensor([-2.5310, -2.5310])
    """

    arg_constraints: dict = {}
    support = sphere
    has_rsample = True

    def __init__(
        self,
        dim: int,
        batch_shape: Shape = torch.Size(),
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self.dim = check_count(dim, "dim (the ambient dimension p of S^(p-1))", 2)
        self._dtype = dtype if dtype is not None else torch.get_default_dtype()
        if not self._dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype (samples are unit vectors), got {self._dtype}")
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        super().__init__(torch.Size(batch_shape), torch.Size((self.dim,)), validate_args=validate_args)

    def expand(self, batch_shape: Shape, _instance: HypersphericalUniform | None = None) -> HypersphericalUniform:
        """The same distribution with a larger ``batch_shape``."""
        new = self._get_checked_instance(HypersphericalUniform, _instance)
        try:  # the rule of Tensor.expand, and its RuntimeError, as for the parameters of torch's distributions
            torch.empty(()).expand(self.batch_shape).expand(batch_shape)
        except RuntimeError:
            raise RuntimeError(f"cannot expand batch shape {tuple(self.batch_shape)} to {tuple(batch_shape)}") from None
        new.dim = self.dim
        new._dtype = self._dtype
        new._device = self._device
        super(HypersphericalUniform, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _full(self, shape: torch.Size, value: float) -> Tensor:
        return torch.full(shape, value, dtype=self._dtype, device=self._device)

    @property
    def mean(self) -> Tensor:
        """Zero: the sphere's centre."""
        return self._full(self.batch_shape + self.event_shape, 0.0)

    @property
    def mode(self) -> Tensor:
        """Every point is a mode; as torch does for flat densities, this is NaN."""
        return self._full(self.batch_shape + self.event_shape, math.nan)

    @property
    def variance(self) -> Tensor:
        """:math:`1/p` per coordinate (the coordinates' squares sum to 1)."""
        return self._full(self.batch_shape + self.event_shape, 1.0 / self.dim)

    @property
    def covariance_matrix(self) -> Tensor:
        """:math:`I / p`, shape ``batch_shape + (p, p)``."""
        eye = torch.eye(self.dim, dtype=self._dtype, device=self._device) / self.dim
        return eye.expand(self.batch_shape + (self.dim, self.dim))

    def rsample(self, sample_shape: Shape = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        """Normalised standard Gaussians, shape ``sample_shape + batch_shape + (p,)`` (no parameters
        to differentiate); ``generator`` as in :meth:`VonMisesFisher.rsample`."""
        shape = self._extended_shape(torch.Size(sample_shape))
        gaussian = torch.empty(shape, dtype=self._dtype, device=self._device).normal_(generator=generator)
        return torch.nn.functional.normalize(gaussian, dim=-1)

    def sample(self, sample_shape: Shape = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        """Same as :meth:`rsample`, without gradient tracking."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)

    def log_prob(self, value: Tensor) -> Tensor:
        r""":math:`-\log |S^{p-1}|` for every ``value`` on the sphere."""
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        dtype = value.dtype if value.is_floating_point() else self._dtype
        return torch.full(shape, -log_sphere_area(self.dim), dtype=dtype, device=value.device)

    def entropy(self) -> Tensor:
        r""":math:`\log |S^{p-1}|`, the largest entropy of any distribution on the sphere."""
        return self._full(self.batch_shape, log_sphere_area(self.dim))

    def __repr__(self) -> str:
        batch = f", batch_shape: {tuple(self.batch_shape)}" if self.batch_shape else ""
        return f"{self.__class__.__name__}(dim: {self.dim}{batch})"
