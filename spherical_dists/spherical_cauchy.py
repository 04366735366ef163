r"""The spherical Cauchy distribution on the unit hypersphere (Kato & McCullagh 2020)."""

from __future__ import annotations

import functools
import math

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


# Regimes of the moments (mean length, KL to the uniform), each to about float64 precision (checked against
# mpmath over p = 2..65,536, kappa = 1e-8..1e9 in tests/test_spherical_cauchy.py):
# * rho^2 <= 1/2 (kappa <= 1 + sqrt 2): power series in rho^2, _SERIES_TERMS terms (truncation < 2^-64);
#   no cancellation at small kappa, where both quantities vanish;
# * larger kappa: expectations over w = (1 + s)/2 ~ Beta(beta, beta) of smooth functions of
#   w + q (1 - w), q = (1 + 2 kappa)^-2; for p < _JACOBI_MIN_DIM in the variable w = sin^2(theta), whose
#   weight (sin theta cos theta)^(p-2) is smooth, on a mesh that doubles from sqrt(q) (the scale of the
#   near-singularity at w = -q) to pi/4, as deep as the smallest q of the batch needs (one host
#   synchronisation per call); from _JACOBI_MIN_DIM on, where the weight w^(beta-1) keeps the mass away
#   from w = -q, by Gauss-Jacobi quadrature.
_SERIES_TERMS = 64
_JACOBI_MIN_DIM = 30
_JACOBI_NODES = 48
_MESH_NODES = 24


@functools.cache
def _gauss_legendre(n: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights of n-point Gauss-Legendre on [-1, 1] (Golub-Welsch), float64."""
    k = torch.arange(1, n, dtype=torch.float64)
    off = k / torch.sqrt(4.0 * k * k - 1.0)
    nodes, vectors = torch.linalg.eigh(torch.diag(off, 1) + torch.diag(off, -1))
    return nodes, 2.0 * vectors[0] ** 2


@functools.cache
def _gauss_beta(beta: float, n: int) -> tuple[Tensor, Tensor]:
    """Nodes in [0, 1] and weights summing to 1 of n-point Gauss quadrature for Beta(beta, beta), from the
    Gegenbauer recurrence (lambda = beta - 1/2) by Golub-Welsch, float64."""
    lam = beta - 0.5
    k = torch.arange(1, n, dtype=torch.float64)
    off = torch.sqrt(k * (k + 2.0 * lam - 1.0) / (4.0 * (k + lam) * (k + lam - 1.0)))
    nodes, vectors = torch.linalg.eigh(torch.diag(off, 1) + torch.diag(off, -1))
    return 0.5 * (1.0 + nodes), vectors[0] ** 2


def _series(dim: int, x: Tensor) -> tuple[Tensor, Tensor]:
    r"""For :math:`x = \rho^2 \le 1/2`: ``(KL / (p - 1), mean length / rho)`` from
    :math:`\mathrm{KL}/(p-1) = \sum_n [1 - (1 - p/2)_n / (p/2)_n]\, x^n / n` and
    :math:`m/\rho = \frac12[(3 - d_1) - \sum_{n \ge 2} (d_n - 2d_{n-1} + d_{n-2})\, x^{n-1}]`,
    :math:`d_n = (2 - p/2)_n / (p/2)_n` (the series of :math:`(1 + \rho^2)/(2\rho) - (1 - \rho^2)^2
    {}_2F_1(1, 2 - p/2; p/2; \rho^2)/(2\rho)`)."""
    half = 0.5 * dim
    kl = torch.zeros_like(x)
    mean = torch.zeros_like(x)
    c, d_prev2, d_prev, power = 1.0, 1.0, 1.0, torch.ones_like(x)
    for n in range(1, _SERIES_TERMS + 1):
        c *= (n - half) / (n - 1 + half)
        d = d_prev * (n + 1 - half) / (n - 1 + half)
        if n == 1:
            mean = mean + (3.0 - d)
        else:
            mean = mean - (d - 2.0 * d_prev + d_prev2) * power  # power = x^(n-1) here
        power = power * x
        kl = kl + (1.0 - c) * power / n
        d_prev2, d_prev = d_prev, d
    return kl, 0.5 * mean


def _beta_rule(dim: int, q: Tensor) -> tuple[Tensor, Tensor]:
    """Nodes ``w`` and weights (summing to 1), each ``q.shape + (M,)``, of a quadrature for w ~ Beta(beta,
    beta) that resolves the scale ``q`` near w = 0 (see the regimes above), float64, q in (0, 1]."""
    if dim >= _JACOBI_MIN_DIM:
        w, weights = _gauss_beta(0.5 * (dim - 1), _JACOBI_NODES)
        shape = q.shape + w.shape
        return w.to(q.device).expand(shape), weights.to(q.device).expand(shape)
    x, gl = _gauss_legendre(_MESH_NODES)
    x, gl = x.to(q.device), gl.to(q.device)
    # sqrt(q) 2^(doublings - 1) >= pi/4 for every q of the batch: the intervals beyond would be empty.
    doublings = (
        max(1, math.ceil(math.log2(math.pi / 2 / math.sqrt(max(float(q.detach().min()), 1e-300)))) + 1)
        if q.numel()
        else 1
    )
    # q underflows to 0 above kappa = 1e154; the mesh still needs intervals of positive width there.
    root = torch.sqrt(q.clamp_min(1e-300)).unsqueeze(-1)
    start = root * 2.0 ** torch.arange(-1, doublings, dtype=torch.float64, device=q.device)
    quarter = torch.full_like(q, torch.pi / 4).unsqueeze(-1)
    lower = torch.cat([torch.zeros_like(quarter), torch.minimum(start, quarter), quarter], -1)
    upper = torch.cat([torch.minimum(start, quarter), quarter, torch.full_like(quarter, torch.pi / 2)], -1)
    theta = 0.5 * (lower + upper).unsqueeze(-1) + 0.5 * (upper - lower).unsqueeze(-1) * x  # (..., intervals, nodes)
    weight = 0.5 * (upper - lower).unsqueeze(-1) * gl * (torch.sin(theta) * torch.cos(theta)) ** (dim - 2)
    weight = (weight / weight.sum((-1, -2), keepdim=True)).flatten(-2)
    return (torch.sin(theta) ** 2).flatten(-2), weight


def _moments(dim: int, kappa: Tensor) -> tuple[Tensor, Tensor]:
    """``(KL(SC || U), mean length)`` in float64 for concentrations ``kappa``."""
    k = kappa.to(torch.float64)
    rho = k / (1.0 + k)
    small = rho * rho <= 0.5
    xs = torch.where(small, rho * rho, 0.25)
    kl_series, mean_series = _series(dim, xs)
    q = torch.where(small, 0.25, (1.0 + 2.0 * k) ** -2)
    w, weights = _beta_rule(dim, q)
    u = w + q.unsqueeze(-1) * (1.0 - w)
    log_term = (weights * torch.log(u)).sum(-1)
    ratio = (weights * (1.0 - w) / u).sum(-1)
    kl = torch.where(small, kl_series, log_term - 0.5 * torch.log(q))
    mean = torch.where(small, rho * mean_series, 1.0 - 2.0 * q * ratio)
    return (dim - 1) * kl, mean


def _covariance_factors(dim: int, kappa: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(a, v)`` with :math:`\mathrm{Cov}[z] = a (I - \mu\mu^\top) + v \mu\mu^\top`, float64 (``v`` is
    the variance along :math:`\mu`, orders of magnitude below ``a`` at large kappa, so it is not formed as
    ``a + (v - a)``): with :math:`t = \mu^\top z`,
    :math:`1 - t = 2q(1 - w)/u`, :math:`1 + t = 2w/u`, :math:`u = w + q(1 - w)` (the Möbius image of the
    uniform's :math:`w`), :math:`a = (1 - E[t^2])/(p - 1) = 4q\, E[w(1 - w)/u^2]/(p - 1)` and
    :math:`\mathrm{Var}[t] = 4q^2\, E[(B - (1 - w)/u)^2]`, :math:`B = E[(1 - w)/u]`: no difference of
    nearly equal terms at any kappa, so one quadrature serves every regime."""
    q = (1.0 + 2.0 * kappa.to(torch.float64)) ** -2
    w, weights = _beta_rule(dim, q)
    qq = q.unsqueeze(-1)
    u = w + qq * (1.0 - w)
    a = 4.0 * q * (weights * w * (1.0 - w) / u**2).sum(-1) / (dim - 1)
    b = (weights * (1.0 - w) / u).sum(-1, keepdim=True)
    var_t = 4.0 * q**2 * (weights * (b - (1.0 - w) / u) ** 2).sum(-1)
    return a, var_t


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

    @property
    def mean(self) -> Tensor:
        r""":math:`E[z] = m\,\mu` with :math:`m = \frac{1 + \rho^2}{2\rho} - \frac{(1 - \rho^2)^2}{2\rho}\,
        {}_2F_1(1, 2 - p/2; p/2; \rho^2)`; :math:`m = \rho` only for :math:`p = 2`."""
        _, length = _moments(self.dim, self.concentration)
        return length.to(self.loc.dtype).unsqueeze(-1) * self.loc

    @property
    def variance(self) -> Tensor:
        a, v = _covariance_factors(self.dim, self.concentration)
        squared = self.loc.to(torch.float64) ** 2
        return (a.unsqueeze(-1) * (1.0 - squared) + v.unsqueeze(-1) * squared).to(self.loc.dtype)

    @property
    def covariance_matrix(self) -> Tensor:
        a, v = _covariance_factors(self.dim, self.concentration)
        loc = self.loc.to(torch.float64)
        outer = loc.unsqueeze(-1) * loc.unsqueeze(-2)
        eye = torch.eye(self.dim, dtype=torch.float64, device=loc.device)
        return (a[..., None, None] * (eye - outer) + v[..., None, None] * outer).to(self.loc.dtype)

    def _kl_to_uniform(self) -> Tensor:
        r"""KL(self || uniform) in float64, which equals KL(uniform || self):
        :math:`(p - 1) \sum_{n \ge 1} [1 - (1 - p/2)_n / (p/2)_n]\, \rho^{2n} / n`."""
        kl, _ = _moments(self.dim, self.concentration)
        return kl

    def entropy(self) -> Tensor:
        r""":math:`H = \log|S^{p-1}| - \mathrm{KL}(q \,\|\, U)`."""
        return (log_sphere_area(self.dim) - self._kl_to_uniform()).to(self.loc.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        r""":math:`-\log|S^{p-1}| + (p - 1)[\mathrm{log1p}(2\kappa) - \mathrm{log1p}(\kappa(1 + \kappa)
        \lVert z - \mu\rVert^2)]`, the distance computed from the difference of the two points, which
        keeps full precision near the mode."""
        if self._validate_args:
            self._validate_sample(value)
        dtype = compute_dtype(self.loc.dtype)
        squared_distance = (value.to(dtype) - self.loc.to(dtype)).pow(2).sum(-1)
        kappa = self.concentration.to(dtype)
        # kappa (1 + kappa) alone overflows in float32 above kappa = 1.8e19; times 0 at the mode it would be NaN.
        spread = kappa * ((1.0 + kappa) * squared_distance)
        out = (self.dim - 1) * (torch.log1p(2.0 * kappa) - torch.log1p(spread))
        return (out - log_sphere_area(self.dim)).to(self.loc.dtype)

    def _draw_marginal(self, kappa: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The Möbius image of a uniform point's marginal (``_sample_marginal``), without rejection."""
        return _sample_marginal(kappa, self.dim, generator)
