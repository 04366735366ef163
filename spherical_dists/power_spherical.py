r"""The power spherical distribution on the unit hypersphere (De Cao & Aziz 2020)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution

from . import _sampling
from .constraints import finite_nonnegative, sphere
from .hyperspherical_uniform import log_sphere_area

__all__ = ["PowerSpherical"]

# Stirling series coefficients: log Gamma(z) = (z - 1/2) log z - z + log(2 pi) / 2 + sum_m c_m z^(1 - 2m)
# and psi(z) = log z - 1/(2z) - sum_m d_m z^(-2m), with c_m = B_2m / (2m (2m - 1)), d_m = B_2m / (2m).
# Eight terms are exact to 1e-17 (relative to the first) for z >= 10.
_STIRLING_LGAMMA = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400)
_STIRLING_DIGAMMA = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12, -3617 / 8160)
_STIRLING_FROM = 10.0
# The Taylor series of log Gamma (below) is used for |step| <= base / 8: 22 terms reach 1e-19.
_TAYLOR_RATIO = 0.125
_TAYLOR_TERMS = 22


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half precision is computed in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _stirling_sum(z: Tensor, coefficients: tuple[float, ...], first_power: int) -> Tensor:
    """``sum_m coefficients[m] z^-(first_power + 2m)`` by Horner's rule in ``1/z^2``."""
    inv_sq = 1.0 / (z * z)
    acc = torch.full_like(z, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        acc = acc * inv_sq + c
    return acc / z**first_power


def _lgamma_difference(y: Tensor, h: Tensor) -> Tensor:
    r""":math:`\log\Gamma(y + h) - \log\Gamma(y)` for :math:`y > 0, h \ge 0`, float64.

    For :math:`y \ge 10` by the difference of Stirling series,
    :math:`h \log(y + h) + (y - \tfrac12)\,\mathrm{log1p}(h / y) - h + S(y + h) - S(y)`, which keeps
    absolute precision ``eps * h log y`` where the two log-gammas are each of order ``y log y``
    (at ``y = 1e8`` the direct difference loses eight digits)."""
    large = y >= _STIRLING_FROM
    ys = torch.where(large, y, _STIRLING_FROM)  # safe inputs keep the unused branch finite
    yh = ys + h
    stirling = (
        h * torch.log(yh)
        + (ys - 0.5) * torch.log1p(h / ys)
        - h
        + _stirling_sum(yh, _STIRLING_LGAMMA, 1)
        - _stirling_sum(ys, _STIRLING_LGAMMA, 1)
    )
    yd = torch.where(large, 1.0, y)
    direct = torch.lgamma(yd + h) - torch.lgamma(yd)
    return torch.where(large, stirling, direct)


def _digamma_difference(y: Tensor, h: Tensor) -> Tensor:
    r""":math:`\psi(y + h) - \psi(y)` for :math:`y > 0, h \ge 0`, float64, to relative precision:
    for :math:`y \ge 10`, :math:`\mathrm{log1p}(h/y) + h / (2 y (y + h)) - (T(y + h) - T(y))`."""
    large = y >= _STIRLING_FROM
    ys = torch.where(large, y, _STIRLING_FROM)
    yh = ys + h
    stirling = (
        torch.log1p(h / ys)
        + h / (2.0 * ys * yh)
        - (_stirling_sum(yh, _STIRLING_DIGAMMA, 2) - _stirling_sum(ys, _STIRLING_DIGAMMA, 2))
    )
    yd = torch.where(large, 1.0, y)
    direct = torch.digamma(yd + h) - torch.digamma(yd)
    return torch.where(large, stirling, direct)


def _lgamma_taylor_remainder(c: Tensor, s: Tensor) -> Tensor:
    r""":math:`\log\Gamma(c + s) - \log\Gamma(c) - s\,\psi(c) = \sum_{n \ge 2} s^n \psi^{(n-1)}(c) / n!`
    for :math:`|s| \le c / 8`: a Bregman divergence of :math:`\log\Gamma`, of order :math:`s^2`,
    to full relative precision (the three-term difference cancels to nothing there)."""
    # torch.polygamma(1, .) (trigamma) is only accurate to about 5e-10 on CPU (torch 2.13); the
    # Hurwitz zeta gives psi'(c) = zeta(2, c) to 1e-16. Higher orders are accurate as they are.
    total = s * s / 2.0 * torch.special.zeta(torch.full_like(c, 2.0), c)
    power = s * s * s / 6.0
    for n in range(3, _TAYLOR_TERMS + 2):
        total = total + power * torch.polygamma(n - 1, c)
        power = power * s / (n + 1)
    return total


def _half_dim(dim: int, like: Tensor) -> Tensor:
    """:math:`\\beta = (p - 1) / 2` as a float64 tensor."""
    return torch.full_like(like, 0.5 * (dim - 1))


def _log_normalizer_plus(dim: int, kappa: Tensor) -> Tensor:
    r""":math:`\log C_p(\kappa) + \kappa \log 2 = -\beta \log(4\pi) + \log\Gamma(\alpha + \beta) - \log\Gamma(\alpha)`,
    float64, with :math:`\alpha = \beta + \kappa`, :math:`\beta = (p-1)/2`. It stays of order
    :math:`\beta \log \kappa` where :math:`\log C_p` alone is about :math:`-\kappa \log 2`."""
    beta = _half_dim(dim, kappa)
    return -beta * math.log(4.0 * math.pi) + _lgamma_difference(beta + kappa, beta)


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
    small = kappa <= _TAYLOR_RATIO * beta
    ks = torch.where(small, kappa, 0.0)
    series = _lgamma_taylor_remainder(beta + ks, -ks) - _lgamma_taylor_remainder(2.0 * beta + ks, -ks)
    alpha = beta + kappa
    large = _lgamma_difference(alpha, beta) - _lgamma_difference(beta, beta) - kappa * _digamma_difference(alpha, beta)
    return torch.where(small, series, large)


def _kl_uniform_power(dim: int, kappa: Tensor) -> Tensor:
    r"""KL(uniform || PowerSpherical(mu, kappa)), float64:
    :math:`-\log|S^{p-1}| - \log C_p(\kappa) - \kappa (\log 2 + \psi(\beta) - \psi(2\beta))
    = \tilde B(\beta; \kappa) - \tilde B(2\beta; \kappa)` with
    :math:`\tilde B(x; \kappa) = \log\Gamma(x + \kappa) - \log\Gamma(x) - \kappa\psi(x)`
    (uniform: :math:`(1 + \mu^\top z)/2 \sim \mathrm{Beta}(\beta, \beta)`)."""
    beta = _half_dim(dim, kappa)
    small = kappa <= _TAYLOR_RATIO * beta
    ks = torch.where(small, kappa, 0.0)
    series = _lgamma_taylor_remainder(beta, ks) - _lgamma_taylor_remainder(2.0 * beta, ks)
    large = (
        _lgamma_difference(beta, beta)
        - _lgamma_difference(beta + kappa, beta)
        + kappa * _digamma_difference(beta, beta)
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


class PowerSpherical(Distribution):
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

    def expand(self, batch_shape: torch.Size | tuple[int, ...], _instance: PowerSpherical | None = None):  # type: ignore[no-untyped-def]
        new = self._get_checked_instance(PowerSpherical, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        super(PowerSpherical, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

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
        dtype = _compute_dtype(self.loc.dtype)
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
        return _kl_power_uniform(self.dim, self._kappa64()).to(self.loc.dtype)

    def entropy(self) -> Tensor:
        r""":math:`H = -\log C_p(\kappa) - \kappa (\log 2 + \psi(\alpha) - \psi(\alpha + \beta))
        = \log|S^{p-1}| - \mathrm{KL}(q \,\|\, U)`."""
        out = log_sphere_area(self.dim) - _kl_power_uniform(self.dim, self._kappa64())
        return out.to(self.loc.dtype)

    # ------------------------------------------------------------------ sampling

    def rsample(
        self, sample_shape: torch.Size | tuple[int, ...] = torch.Size(), generator: torch.Generator | None = None
    ) -> Tensor:
        """Reparameterised sample of shape ``sample_shape + batch_shape + (p,)``, without rejection.

        ``generator`` (optional) is a :class:`torch.Generator` to draw from instead of the global
        one; the same seed gives the same samples.

        With ``z = t mu + sqrt(1 - t^2) v``, ``(1 + t)/2 ~ Beta(alpha, beta)`` is drawn as a ratio of
        Gamma variables (implicit reparameterisation for the concentration); ``v`` is uniform on
        the great sphere orthogonal to ``mu`` and, as in ``VonMisesFisher``, re-projected
        differentiably so that loc's gradient carries ``d v / d mu = -mu v^T``.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        dtype = _compute_dtype(self.loc.dtype)
        p = self.dim
        loc = self.loc.to(dtype).expand(shape).reshape(-1, p)
        kappa = self.concentration.expand(shape[:-1]).reshape(-1)
        omt, opt = _sample_marginal(kappa, p, generator)
        t = torch.where(omt <= 1.0, 1.0 - omt, opt - 1.0).to(dtype).unsqueeze(-1)
        s = torch.sqrt(omt * opt).to(dtype).unsqueeze(-1)
        v = _sampling.tangent_directions(loc.detach(), generator)
        if torch.is_grad_enabled() and loc.requires_grad:
            v = v - (v * loc).sum(-1, keepdim=True) * loc  # identity in value; carries d v / d loc
            v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        return (t * loc + s * v).reshape(shape).to(self.loc.dtype)

    def sample(
        self, sample_shape: torch.Size | tuple[int, ...] = torch.Size(), generator: torch.Generator | None = None
    ) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)

    # ------------------------------------------------------------------ misc

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(loc: {self.loc.size()}, concentration: {self.concentration.size()})"
