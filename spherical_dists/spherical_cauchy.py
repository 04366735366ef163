r"""The spherical Cauchy distribution on the unit hypersphere (Kato & McCullagh 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._directional import DirectionalDistribution, Shape, compute_dtype
from .hyperspherical_uniform import log_sphere_area

__all__ = ["SphericalCauchy"]


def _sample_marginal(kappa: Tensor, dim: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    r"""``(1 - t, 1 + t)`` in float64: the marginal :math:`s` of a uniform point, drawn as
    :math:`(1 + s)/2 \sim \mathrm{Beta}(\beta, \beta)` from two Gamma variables, mapped by the
    Möbius transformation of the sphere, :math:`t = ((1 + \rho^2)s + 2\rho) / (1 + \rho^2 + 2\rho s)`.
    With :math:`q = ((1 - \rho)/(1 + \rho))^2 = (1 + 2\kappa)^{-2}`,

    .. math::

        1 - t = \frac{2q(1 - s)}{(1 + s) + q(1 - s)}, \qquad 1 + t = \frac{2(1 + s)}{(1 + s) + q(1 - s)},

    each side to relative precision (no difference of nearly equal terms; ``q`` underflows to 0 only
    where the distribution is a point mass to float64 precision). The draws do not depend on kappa,
    so the gradient in kappa is the exact pathwise one, through ``q``."""
    k = kappa.to(torch.float64)
    beta = torch.full_like(k, 0.5 * (dim - 1))
    g_minus = torch._standard_gamma(beta, generator=generator)
    g_plus = torch._standard_gamma(beta, generator=generator)
    total = g_minus + g_plus
    oms, ops = 2.0 * g_minus / total, 2.0 * g_plus / total  # 1 - s, 1 + s of the uniform point
    q = (1.0 + 2.0 * k) ** -2
    denominator = ops + q * oms
    return 2.0 * q * oms / denominator, 2.0 * ops / denominator


class SphericalCauchy(DirectionalDistribution):
    r"""Spherical Cauchy distribution on :math:`S^{p-1} \subset \mathbb{R}^p` (Kato & McCullagh 2020).

    .. math::

        f(z; \mu, \rho) = \frac{1}{|S^{p-1}|} \left(\frac{1 - \rho^2}{1 + \rho^2 - 2\rho\, \mu^\top z}\right)^{p-1},
        \qquad \rho = \frac{\kappa}{1 + \kappa},

    with mean direction :math:`\mu` (``loc``) and :math:`\rho \in [0, 1)` given through the
    concentration :math:`\kappa = \rho / (1 - \rho) \ge 0`, so that the class has the signature,
    constraints and conventions of :class:`~spherical_dists.VonMisesFisher` and
    :class:`~spherical_dists.PowerSpherical` (a model switches with one word): :math:`\kappa = 0`
    is the uniform distribution and :math:`\kappa \to \infty` the point mass at :math:`\mu`; and
    :math:`1 - \rho = 1/(1 + \kappa)` stays representable near the point mass, where
    :math:`\rho = 1 - 10^{-9}` would round to 1 in float32. The density at the mode is
    :math:`(1 + 2\kappa)^{p-1}` times the uniform's, and in :math:`\kappa`

    .. math::

        \log f(z) = -\log|S^{p-1}| + (p - 1)\left[\log(1 + 2\kappa)
            - \log\left(1 + \kappa(1 + \kappa)\lVert z - \mu\rVert^2\right)\right].

    A sample is the image of a uniform point under a Möbius transformation of the sphere, so
    ``rsample`` needs no rejection and is reparameterised exactly in both parameters.

    Args:
        loc (Tensor): mean direction, shape ``(..., p)``, unit norm along the last dimension.
        concentration (Tensor or float): :math:`\kappa \ge 0`, shape broadcastable with
            ``loc.shape[:-1]``.
        validate_args (bool, optional): check parameters and samples (torch's default applies).

    References:
        S. Kato, P. McCullagh (2020). Some properties of a Cauchy family on the sphere derived from the
        Möbius transformations. *Bernoulli* 26(4), 3224-3248. https://doi.org/10.3150/20-BEJ1222

    Example::

        >>> import torch
        >>> from spherical_dists import SphericalCauchy
        >>> loc = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        >>> q = SphericalCauchy(loc, torch.tensor(1.0, dtype=torch.float64))  # rho = 1/2
        >>> q.rho
        tensor(0.5000, dtype=torch.float64)
        >>> q.log_prob(loc).exp() * 4 * torch.pi  # (1 + 2 kappa)^(p - 1) times the uniform density
        tensor(9.0000, dtype=torch.float64)
    """

    def expand(self, batch_shape: Shape, _instance: SphericalCauchy | None = None) -> SphericalCauchy:
        """A view of this distribution with a larger ``batch_shape`` (parameters are expanded, not copied)."""
        return self._expand_into(self._get_checked_instance(SphericalCauchy, _instance), batch_shape)

    @property
    def rho(self) -> Tensor:
        r""":math:`\rho = \kappa / (1 + \kappa)`, Kato & McCullagh's parameter."""
        return self.concentration / (1.0 + self.concentration)

    @property
    def mode(self) -> Tensor:
        return self.loc

    def log_prob(self, value: Tensor) -> Tensor:
        r""":math:`-\log|S^{p-1}| + (p - 1)[\mathrm{log1p}(2\kappa) - \mathrm{log1p}(\kappa(1 + \kappa)
        \lVert z - \mu\rVert^2)]`, the distance computed from the difference of the two points, which
        keeps full precision near the mode."""
        if self._validate_args:
            self._validate_sample(value)
        dtype = compute_dtype(self.loc.dtype)
        squared_distance = (value.to(dtype) - self.loc.to(dtype)).pow(2).sum(-1)
        kappa = self.concentration.to(dtype)
        out = (self.dim - 1) * (torch.log1p(2.0 * kappa) - torch.log1p(kappa * (1.0 + kappa) * squared_distance))
        return (out - log_sphere_area(self.dim)).to(self.loc.dtype)

    def _draw_marginal(self, kappa: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The Möbius image of a uniform point's marginal (``_sample_marginal``), without rejection."""
        return _sample_marginal(kappa, self.dim, generator)
