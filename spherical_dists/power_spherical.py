r"""The power spherical distribution on the unit hypersphere (De Cao & Aziz 2020)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._directional import DirectionalDistribution, Shape, compute_dtype
from ._gamma import TAYLOR_RATIO, digamma_difference, lgamma_bregman, lgamma_difference
from .hyperspherical_uniform import log_sphere_area

__all__ = ["PowerSpherical"]


def _half_dim(dim: int, like: Tensor) -> Tensor:
    """:math:`\\beta = (p - 1) / 2` as a float64 tensor."""
    return torch.full_like(like, 0.5 * (dim - 1))


def _log_normalizer_plus(dim: int, kappa: Tensor) -> Tensor:
    r""":math:`\log C_p(\kappa) + \kappa \log 2 = -\beta \log(4\pi) + \log\Gamma(\alpha + \beta) - \log\Gamma(\alpha)`,
    float64, with :math:`\alpha = \beta + \kappa`, :math:`\beta = (p-1)/2`. It stays of order
    :math:`\beta \log \kappa` where :math:`\log C_p` alone is about :math:`-\kappa \log 2`."""
    beta = _half_dim(dim, kappa)
    return -beta * math.log(4.0 * math.pi) + lgamma_difference(beta + kappa, beta)


def _kl_power_uniform(dim: int, kappa: Tensor) -> Tensor:
    r"""KL(PowerSpherical(mu, kappa) || uniform), float64.

    With :math:`\beta = (p-1)/2`, :math:`\alpha = \beta + \kappa` and
    :math:`E[\log(1 + \mu^\top z)] = \log 2 + \psi(\alpha) - \psi(\alpha + \beta)`,

    .. math::

        \mathrm{KL} = \log C_p(\kappa) + \log|S^{p-1}| + \kappa\, E[\log(1 + \mu^\top z)]
        = B(\beta; \alpha) - B(2\beta; \alpha + \beta)
        = \Delta(\alpha, \beta) - \Delta(\beta, \beta) - \kappa\, \delta(\alpha, \beta),

    with :math:`B(x; y) = \log\Gamma(x) - \log\Gamma(y) - (x - y)\psi(y)` (the Bregman divergence of
    :math:`\log\Gamma`, exact to relative precision by its Taylor series when
    :math:`\kappa \le \beta / 8`, where the KL is about :math:`\kappa^2 (\psi'(\beta) - \psi'(2\beta))/2`),
    :math:`\Delta(y, h) = \log\Gamma(y + h) - \log\Gamma(y)` and :math:`\delta(y, h) = \psi(y + h) - \psi(y)`
    (used above, where no term is of order :math:`\kappa`)."""
    beta = _half_dim(dim, kappa)
    small = kappa <= TAYLOR_RATIO * beta
    ks = torch.where(small, kappa, 0.0)
    series = lgamma_bregman(beta + ks, -ks) - lgamma_bregman(2.0 * beta + ks, -ks)
    alpha = beta + kappa
    large = lgamma_difference(alpha, beta) - lgamma_difference(beta, beta) - kappa * digamma_difference(alpha, beta)
    return torch.where(small, series, large)


def _kl_uniform_power(dim: int, kappa: Tensor) -> Tensor:
    r"""KL(uniform || PowerSpherical(mu, kappa)), float64:
    :math:`-\log|S^{p-1}| - \log C_p(\kappa) - \kappa (\log 2 + \psi(\beta) - \psi(2\beta))
    = \tilde B(\beta; \kappa) - \tilde B(2\beta; \kappa)` with
    :math:`\tilde B(x; \kappa) = \log\Gamma(x + \kappa) - \log\Gamma(x) - \kappa\psi(x)`
    (uniform: :math:`(1 + \mu^\top z)/2 \sim \mathrm{Beta}(\beta, \beta)`)."""
    beta = _half_dim(dim, kappa)
    small = kappa <= TAYLOR_RATIO * beta
    ks = torch.where(small, kappa, 0.0)
    series = lgamma_bregman(beta, ks) - lgamma_bregman(2.0 * beta, ks)
    large = (
        lgamma_difference(beta, beta) - lgamma_difference(beta + kappa, beta) + kappa * digamma_difference(beta, beta)
    )
    return torch.where(small, series, large)


def _sample_marginal(kappa: Tensor, dim: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``(1 - t, 1 + t)`` in float64 with ``(1 + t) / 2 ~ Beta(alpha, beta)``, from two Gamma
    variables, ``1 - t = 2 G_beta / (G_alpha + G_beta)``: each side keeps its relative precision
    (``1 - t`` is about ``1e-8`` at kappa = 1e8). Differentiable in ``kappa`` through torch's
    implicit reparameterisation of the Gamma sampler (``G_beta`` does not depend on kappa)."""
    k = kappa.to(torch.float64)
    beta = _half_dim(dim, k)
    g_alpha = torch._standard_gamma(beta + k, generator=generator)
    g_beta = torch._standard_gamma(beta, generator=generator)
    total = g_alpha + g_beta
    return 2.0 * g_beta / total, 2.0 * g_alpha / total


class PowerSpherical(DirectionalDistribution):
    r"""Power spherical distribution on the unit sphere :math:`S^{p-1} \subset \mathbb{R}^p`
    (De Cao & Aziz 2020).

    .. math::

        f(z; \mu, \kappa) = C_p(\kappa)\, (1 + \mu^\top z)^\kappa, \qquad
        \log C_p(\kappa) = -\left[(\alpha + \beta) \log 2 + \beta \log \pi
            + \log\Gamma(\alpha) - \log\Gamma(\alpha + \beta)\right],

    with :math:`\beta = (p - 1)/2` and :math:`\alpha = \beta + \kappa`, mean direction :math:`\mu`
    (``loc``, unit norm) and concentration :math:`\kappa \ge 0`. The marginal
    :math:`t = \mu^\top z` has :math:`(1 + t)/2 \sim \mathrm{Beta}(\alpha, \beta)`, so that
    :math:`E[z] = \frac{\kappa}{p - 1 + \kappa}\mu` and sampling needs no rejection. Like
    :class:`~spherical_dists.VonMisesFisher` (same parameters, constraints and conventions, so the
    two swap by name), :math:`\kappa = 0` is the uniform distribution; at equal mean resultant
    length the power spherical has heavier tails.

    ``rsample`` is reparameterised: loc's gradient flows as in ``VonMisesFisher``, the
    concentration's through torch's implicit reparameterisation of the Gamma variables that make
    the Beta marginal.

    Args:
        loc (Tensor): mean direction, shape ``(..., p)``, unit norm along the last dimension.
        concentration (Tensor or float): :math:`\kappa \ge 0`, shape broadcastable with
            ``loc.shape[:-1]``.
        validate_args (bool, optional): check parameters and samples (torch's default applies).

    Example::

        >>> import torch
        >>> from torch.distributions import kl_divergence
        >>> from spherical_dists import HypersphericalUniform, PowerSpherical
        >>> loc = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        >>> q = PowerSpherical(loc, torch.tensor(2.0, dtype=torch.float64))
        >>> q.mean  # kappa / (p - 1 + kappa) mu
        tensor([0.0000, 0.0000, 0.5000], dtype=torch.float64)
        >>> q.log_prob(loc)  # p = 3: density (kappa + 1) (1 + t)^kappa / (2^(kappa + 2) pi), 3 / (4 pi) at the mode
        tensor(-1.4324, dtype=torch.float64)
        >>> kl_divergence(q, HypersphericalUniform(3, dtype=torch.float64))  # log 3 - 2/3
        tensor(0.4319, dtype=torch.float64)
    """

    def expand(self, batch_shape: Shape, _instance: PowerSpherical | None = None) -> PowerSpherical:
        """A view of this distribution with a larger ``batch_shape`` (parameters are expanded, not copied)."""
        return self._expand_into(self._get_checked_instance(PowerSpherical, _instance), batch_shape)

    def _kappa64(self) -> Tensor:
        return self.concentration.to(torch.float64)

    # ------------------------------------------------------------------ moments

    def _mean_length(self) -> Tensor:
        r""":math:`E[\mu^\top z] = (\alpha - \beta)/(\alpha + \beta) = \kappa / (p - 1 + \kappa)`."""
        return self.concentration / (self.dim - 1 + self.concentration)

    @property
    def mean(self) -> Tensor:
        return self._mean_length().unsqueeze(-1) * self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    def _covariance_factors(self) -> tuple[Tensor, Tensor]:
        r"""``(a, c)`` with :math:`\mathrm{Cov}[z] = a I + c \mu\mu^\top`: from the Beta moments of the
        marginal, :math:`a = (1 - E[t^2])/(p - 1) = 2\alpha / ((\alpha + \beta)(\alpha + \beta + 1))`
        and :math:`c = \mathrm{Var}[t] - a = -2\alpha\kappa / ((\alpha + \beta)^2 (\alpha + \beta + 1))`,
        written without differences so that both keep their precision at large kappa."""
        beta = 0.5 * (self.dim - 1)
        alpha = beta + self.concentration
        total = alpha + beta
        a = 2.0 * alpha / (total * (total + 1.0))
        c = -a * self.concentration / total
        return a, c

    @property
    def variance(self) -> Tensor:
        a, c = self._covariance_factors()
        return a.unsqueeze(-1) + c.unsqueeze(-1) * self.loc**2

    @property
    def covariance_matrix(self) -> Tensor:
        a, c = self._covariance_factors()
        eye = torch.eye(self.dim, dtype=self.loc.dtype, device=self.loc.device)
        outer = self.loc.unsqueeze(-1) * self.loc.unsqueeze(-2)
        return a[..., None, None] * eye + c[..., None, None] * outer

    # ------------------------------------------------------------------ densities

    def log_prob(self, value: Tensor) -> Tensor:
        r""":math:`\log C_p(\kappa) + \kappa \log(1 + \mu^\top z)`, evaluated as
        :math:`(\log C_p(\kappa) + \kappa \log 2) + \kappa\, \mathrm{log1p}(-\lVert z - \mu\rVert^2 / 4)`
        (equal on the sphere), which keeps full precision at large :math:`\kappa`; at the
        antipode it is ``-inf`` for :math:`\kappa > 0` and the uniform density for :math:`\kappa = 0`."""
        if self._validate_args:
            self._validate_sample(value)
        dtype = compute_dtype(self.loc.dtype)
        squared_distance = (value.to(dtype) - self.loc.to(dtype)).pow(2).sum(-1)
        kappa = self.concentration.to(dtype)
        head = _log_normalizer_plus(self.dim, self._kappa64()).to(dtype)
        # xlog1py is 0 where kappa = 0, also at the antipode where log1p(-1) = -inf.
        out = head + torch.special.xlog1py(kappa, torch.clamp(-0.25 * squared_distance, min=-1.0))
        return out.to(self.loc.dtype)

    def log_normalizer(self) -> Tensor:
        r""":math:`\log C_p(\kappa)`."""
        kappa = self._kappa64()
        out = _log_normalizer_plus(self.dim, kappa) - kappa * math.log(2.0)
        return out.to(self.loc.dtype)

    def _kl_to_uniform(self) -> Tensor:
        """KL(self || uniform) in float64 (the KL divergences of ``kl`` combine it with other terms)."""
        return _kl_power_uniform(self.dim, self._kappa64())

    def _kl_from_uniform(self) -> Tensor:
        """KL(uniform || self) in float64."""
        return _kl_uniform_power(self.dim, self._kappa64())

    def entropy(self) -> Tensor:
        r""":math:`H = -\log C_p(\kappa) - \kappa (\log 2 + \psi(\alpha) - \psi(\alpha + \beta))
        = \log|S^{p-1}| - \mathrm{KL}(q \,\|\, U)`."""
        out = log_sphere_area(self.dim) - _kl_power_uniform(self.dim, self._kappa64())
        return out.to(self.loc.dtype)

    # ------------------------------------------------------------------ sampling

    def _draw_marginal(self, kappa: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Without rejection, as a ratio of Gamma variables (``_sample_marginal``), differentiable in
        the concentration through torch's implicit reparameterisation of the Gamma sampler."""
        return _sample_marginal(kappa, self.dim, generator)
