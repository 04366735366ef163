"""The spherical Cauchy distribution: density against Kato & McCullagh's formula at 40 digits and its
normalisation by quadrature, the sampler's marginal law against the quadrature CDF of that density,
the pathwise gradient in kappa against finite differences, the KL to the uniform, the entropy and the
mean against mpmath (series, hypergeometric function, quadrature) and Monte Carlo. Seeded; tolerances
of 5 standard errors."""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import torch
from torch.distributions import kl_divergence

from spherical_dists import HypersphericalUniform
from spherical_dists import testing as ref
from spherical_dists.spherical_cauchy import SphericalCauchy, _sample_marginal

F64 = torch.float64
Z_BOUND = 5.0


def _mp_log_density(p: int, rho: mp.mpf, t: mp.mpf) -> mp.mpf:
    """Kato & McCullagh (2020), eq. (1): ((1 - rho^2) / (1 + rho^2 - 2 rho t))^(p - 1) / |S^(p-1)|."""
    return (p - 1) * (mp.log(1 - rho**2) - mp.log(1 + rho**2 - 2 * rho * t)) - ref.log_sphere_area(p)


def _mp_marginal_cdf(p: int, rho: mp.mpf, upper: mp.mpf) -> mp.mpf:
    """P(mu^T z <= upper) = |S^(p-2)| int f(cos a) sin(a)^(p-2) da over a in [acos(upper), pi], by tanh-sinh
    quadrature split where the density changes on the scale 1 - rho near the mode."""
    area = mp.mpf(2) if p == 2 else mp.exp(ref.log_sphere_area(p - 1))

    def integrand(a: mp.mpf) -> mp.mpf:
        return mp.exp(_mp_log_density(p, rho, mp.cos(a))) * mp.sin(a) ** (p - 2)

    start = mp.acos(upper)
    points = sorted({start, *(x for x in (1 - rho, 10 * (1 - rho), mp.mpf(1)) if start < x < mp.pi), mp.pi})
    return area * mp.quad(integrand, points)


@pytest.mark.parametrize("p", [2, 3, 10, 200])
@pytest.mark.parametrize("kappa", [0.0, 1e-6, 0.5, 3.0, 1e3, 1e7])
def test_log_prob_matches_the_published_density(p: int, kappa: float) -> None:
    gen = torch.Generator().manual_seed(p)
    loc = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1)
    near = torch.nn.functional.normalize(loc + 1e-4 * torch.randn(5, p, dtype=F64, generator=gen), dim=-1)
    points = torch.cat([loc[None], -loc[None], near, torch.nn.functional.normalize(torch.randn(5, p, dtype=F64))])
    got = SphericalCauchy(loc, torch.tensor(kappa, dtype=F64)).log_prob(points)
    with mp.workdps(40):
        rho = mp.mpf(kappa) / (1 + mp.mpf(kappa))
        # mu^T z from the squared distance, as exact as the points themselves
        cos = [1 - mp.mpf(float((z - loc).pow(2).sum())) / 2 for z in points]
        expected = [float(_mp_log_density(p, rho, c)) for c in cos]
    assert torch.allclose(got, torch.tensor(expected, dtype=F64), rtol=1e-12, atol=1e-12 * (p - 1))


@pytest.mark.parametrize("p", [2, 3, 10])
def test_density_integrates_to_one(p: int) -> None:
    """The normaliser is the uniform's: the density integrates to 1 over the sphere."""
    with mp.workdps(30):
        for rho in (mp.mpf("0.3"), mp.mpf("0.9"), mp.mpf("0.999")):
            assert abs(_mp_marginal_cdf(p, rho, mp.mpf(1)) - 1) < 1e-14  # |S^(p-1)| enters in float64


@pytest.mark.parametrize("p", [2, 3, 10, 1000])
@pytest.mark.parametrize("kappa", [0.0, 0.5, 3.0, 100.0])
def test_samples_have_the_marginal_law_of_the_density(p: int, kappa: float) -> None:
    """The empirical CDF of mu^T z at 9 points against the quadrature CDF of the density, within 5
    binomial standard errors: a check of the Möbius sampler that does not use the Möbius map."""
    n = 20_000
    loc = torch.zeros(p, dtype=F64)
    loc[-1] = 1.0
    z = SphericalCauchy(loc, torch.tensor(kappa, dtype=F64)).sample((n,), generator=torch.Generator().manual_seed(7))
    assert torch.allclose(z.norm(dim=-1), torch.ones(n, dtype=F64), atol=1e-14)
    t = z[:, -1]
    with mp.workdps(20):
        rho = mp.mpf(kappa) / (1 + mp.mpf(kappa))
        for quantile in torch.linspace(0.05, 0.95, 9, dtype=F64):
            upper = float(t.quantile(quantile))
            cdf = float(_mp_marginal_cdf(p, rho, mp.mpf(upper)))
            empirical = float((t <= upper).double().mean())
            assert abs(empirical - cdf) <= Z_BOUND * math.sqrt(cdf * (1 - cdf) / n) + 1e-12


@pytest.mark.parametrize("p", [2, 3, 50])
@pytest.mark.parametrize("kappa", [0.2, 5.0, 1e4, 1e8])
def test_kappa_gradient_of_the_marginal_is_its_pathwise_derivative(p: int, kappa: float) -> None:
    """The same uniform draws at kappa +- h (one generator seed): d(1 - t)/d kappa by central differences,
    to relative precision also where 1 - t is about 1e-17 (kappa = 1e8)."""

    def one_minus_t(k: torch.Tensor) -> torch.Tensor:
        return _sample_marginal(k.expand(64), p, torch.Generator().manual_seed(3))[0]

    k = torch.tensor(kappa, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(one_minus_t(k).sum(), k)
    h = 1e-5 * kappa
    with torch.no_grad():
        numeric = (one_minus_t(k + h).sum() - one_minus_t(k - h).sum()) / (2 * h)
    assert torch.isclose(grad, numeric, rtol=1e-8)
    assert float(grad) < 0  # a larger concentration moves every sample towards the mode


@pytest.mark.parametrize("p", [2, 3, 50])
def test_rsample_carries_the_gradients_of_both_parameters(p: int) -> None:
    gen = torch.Generator().manual_seed(p)
    loc = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1).requires_grad_()
    kappa = torch.tensor(2.0, dtype=F64, requires_grad=True)

    def mean_cos(k: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        z = SphericalCauchy(mu, k).rsample((256,), generator=torch.Generator().manual_seed(5))
        return (z @ mu.detach()).mean()

    g_kappa, g_loc = torch.autograd.grad(mean_cos(kappa, loc), (kappa, loc))
    h = 1e-6
    with torch.no_grad():
        numeric = (mean_cos(kappa + h, loc) - mean_cos(kappa - h, loc)) / (2 * h)
    assert torch.isclose(g_kappa, numeric, rtol=1e-6)
    assert bool(torch.isfinite(g_loc).all())


def test_zero_concentration_is_the_uniform_and_float32_works() -> None:
    loc = torch.tensor([0.6, 0.8], dtype=torch.float32)
    d = SphericalCauchy(loc, 0.0)
    x = torch.nn.functional.normalize(torch.randn(7, 2), dim=-1)
    assert torch.allclose(d.log_prob(x), torch.full((7,), -math.log(2 * math.pi)))
    z = SphericalCauchy(loc, torch.tensor([1e3, 2.0])).rsample((5,))
    assert z.shape == (5, 2, 2) and z.dtype == torch.float32
    assert torch.allclose(z.norm(dim=-1), torch.ones(5, 2), atol=1e-6)


def _mp_kl_series(p: int, kappa: float) -> mp.mpf:
    """(p - 1) sum_n [1 - (1 - p/2)_n / (p/2)_n] rho^(2n) / n (accelerated by mpmath's nsum)."""
    k = mp.mpf(kappa)
    x, h = (k / (1 + k)) ** 2, mp.mpf(p) / 2
    return (p - 1) * mp.nsum(lambda n: (1 - mp.rf(1 - h, n) / mp.rf(h, n)) * x**n / n, [1, mp.inf])


def _mp_kl_quadrature(p: int, kappa: float) -> mp.mpf:
    """E_SC[log f / u] by quadrature over t = mu^T z of the marginal density, split at its peak and on the
    scale of the distance from the peak to t = 1."""
    rho = mp.mpf(kappa) / (1 + mp.mpf(kappa))
    area = mp.mpf(2) if p == 2 else mp.exp(ref.log_sphere_area(p - 1))
    h = mp.mpf(p - 3) / 2

    def integrand(t: mp.mpf) -> mp.mpf:
        log_ratio = _mp_log_density(p, rho, t) + ref.log_sphere_area(p)
        return mp.exp(_mp_log_density(p, rho, t)) * (1 - t) ** h * (1 + t) ** h * log_ratio

    peak = 2 * rho / (1 + rho**2)
    points = sorted({mp.mpf(-1), 1 - (1 - peak) * 10, peak, 1 - (1 - peak) / 10, mp.mpf(1)})
    return area * mp.quad(integrand, [x for x in points if -1 <= x <= 1])


def _mp_mean_length(p: int, kappa: float) -> mp.mpf:
    """(1 + rho^2) / (2 rho) - (1 - rho^2)^2 2F1(1, 2 - p/2; p/2; rho^2) / (2 rho)."""
    rho = mp.mpf(kappa) / (1 + mp.mpf(kappa))
    f = mp.hyp2f1(1, 2 - mp.mpf(p) / 2, mp.mpf(p) / 2, rho**2)
    return (1 + rho**2) / (2 * rho) - (1 - rho**2) ** 2 * f / (2 * rho)


@pytest.mark.parametrize("p", [2, 3, 4, 5, 10, 29, 30, 100, 1000, 65536])
@pytest.mark.parametrize("kappa", [1e-8, 1e-3, 0.5, 2.4, 2.5, 10.0, 1e3, 1e6, 1e9])
def test_kl_entropy_and_mean_match_mpmath(p: int, kappa: float) -> None:
    """Both regimes (the series up to kappa = 1 + sqrt 2, quadrature beyond), both quadratures (p < 30 and
    p >= 30), against a series (kappa <= 10) or direct quadrature of the density (beyond) at 30 digits."""
    loc = torch.zeros(p, dtype=F64)
    loc[0] = 1.0
    d = SphericalCauchy(loc, torch.tensor(kappa, dtype=F64))
    uniform = HypersphericalUniform(p, dtype=F64)
    with mp.workdps(30):
        if p == 2:  # the circle: the wrapped Cauchy, KL = -log(1 - rho^2)
            kl = -mp.log(1 - (mp.mpf(kappa) / (1 + mp.mpf(kappa))) ** 2)
        else:
            kl = _mp_kl_series(p, kappa) if kappa <= 10 else _mp_kl_quadrature(p, kappa)
        mean = _mp_mean_length(p, kappa) if p < 1000 or kappa <= 10 else None
    got = kl_divergence(d, uniform)
    assert math.isclose(float(got), float(kl), rel_tol=1e-14)
    assert torch.equal(kl_divergence(uniform, d), got)  # the two directions are equal
    assert math.isclose(float(d.entropy()), ref.log_sphere_area(p) - float(kl), rel_tol=1e-14, abs_tol=1e-14 * p)
    if mean is not None:
        assert math.isclose(float(d.mean[0]), float(mean), rel_tol=4e-15)


@pytest.mark.parametrize(("p", "kappa"), [(2, 1.0), (3, 0.4), (10, 5.0), (200, 50.0)])
def test_kl_and_mean_against_monte_carlo(p: int, kappa: float) -> None:
    """E_SC[log f - log u] and E_SC[z] over 40,000 samples, within 5 standard errors."""
    loc = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=torch.Generator().manual_seed(p)), dim=-1)
    d = SphericalCauchy(loc, torch.tensor(kappa, dtype=F64))
    z = d.sample((40_000,), generator=torch.Generator().manual_seed(11))
    log_ratio = d.log_prob(z) + float(ref.log_sphere_area(p))
    se = float(log_ratio.std()) / math.sqrt(len(z))
    assert abs(float(log_ratio.mean()) - float(kl_divergence(d, HypersphericalUniform(p, dtype=F64)))) < Z_BOUND * se
    cos = z @ loc
    assert abs(float(cos.mean()) - float(d.mean @ loc)) < Z_BOUND * float(cos.std()) / math.sqrt(len(z))


def test_moments_at_zero_concentration_and_their_gradients() -> None:
    """kappa = 0 is the uniform: KL 0, mean 0, with finite gradients (no 0/0 in either regime's branch)."""
    kappa = torch.tensor([0.0, 2.0, 1e9], dtype=F64, requires_grad=True)
    d = SphericalCauchy(torch.tensor([0.0, 0.0, 1.0], dtype=F64), kappa)
    kl = kl_divergence(d, HypersphericalUniform(3, dtype=F64))
    assert float(kl[0].detach()) == 0.0 and float(d.mean[0, 2].detach()) == 0.0
    (g_kl,) = torch.autograd.grad(kl.sum(), kappa)
    (g_mean,) = torch.autograd.grad(d.mean[:, 2].sum(), kappa)
    assert bool(torch.isfinite(g_kl).all() and torch.isfinite(g_mean).all())
    assert math.isclose(float(g_mean[0]), 4.0 / 3.0, rel_tol=1e-12)  # d m / d kappa at 0 is (3 - d_1) / 2, p = 3


def _mp_variances(p: int, kappa: float) -> tuple[mp.mpf, mp.mpf]:
    """(transverse variance a, variance along mu) from the uniform's w ~ Beta(beta, beta) and its Möbius image:
    1 - t = 2q(1 - w)/u, 1 + t = 2w/u, u = w + q(1 - w), q = (1 + 2 kappa)^-2; for p = 2 the wrapped Cauchy's
    closed forms, a = Var t = (1 - rho^2)/2."""
    k = mp.mpf(kappa)
    if p == 2:
        rho = k / (1 + k)
        return (1 - rho**2) / 2, (1 - rho**2) / 2
    q, b = 1 / (1 + 2 * k) ** 2, mp.mpf(p - 1) / 2

    def density(w: mp.mpf) -> mp.mpf:
        return w ** (b - 1) * (1 - w) ** (b - 1) / mp.beta(b, b)

    def u(w: mp.mpf) -> mp.mpf:
        return w + q * (1 - w)

    points = sorted({mp.mpf(0), q, 10 * q, 100 * q, 10**4 * q, mp.mpf("0.5"), mp.mpf(1)})
    points = [x for x in points if 0 <= x <= 1]
    mean_ratio = mp.quad(lambda w: density(w) * (1 - w) / u(w), points)
    along = 4 * q**2 * mp.quad(lambda w: density(w) * (mean_ratio - (1 - w) / u(w)) ** 2, points)
    across = 4 * q * mp.quad(lambda w: density(w) * w * (1 - w) / u(w) ** 2, points) / (p - 1)
    return across, along


@pytest.mark.parametrize("p", [2, 3, 10, 29, 30, 100])
@pytest.mark.parametrize("kappa", [0.0, 1e-3, 0.5, 2.5, 1e3, 1e5, 1e8])
def test_variance_matches_mpmath(p: int, kappa: float) -> None:
    """Both quadratures, every regime; the variance along mu (about 1e-21 at kappa = 1e5, p = 10) is not
    formed as a difference with the transverse one (1e-11 there)."""
    loc = torch.zeros(p, dtype=F64)
    loc[0] = 1.0
    variance = SphericalCauchy(loc, torch.tensor(kappa, dtype=F64)).variance
    with mp.workdps(40):
        across, along = _mp_variances(p, kappa)
    assert math.isclose(float(variance[0]), float(along), rel_tol=1e-13)
    assert math.isclose(float(variance[1]), float(across), rel_tol=1e-13)


def test_covariance_against_monte_carlo() -> None:
    gen = torch.Generator().manual_seed(4)
    loc = torch.nn.functional.normalize(torch.randn(5, dtype=F64, generator=gen), dim=-1)
    d = SphericalCauchy(loc, torch.tensor(3.0, dtype=F64))
    z = d.sample((40_000,), generator=gen)
    centred = z - d.mean
    products = centred.unsqueeze(-1) * centred.unsqueeze(-2)  # (n, p, p)
    se = products.std(0) / math.sqrt(len(z))
    assert bool(((products.mean(0) - d.covariance_matrix).abs() <= Z_BOUND * se + 1e-12).all())
    assert torch.allclose(d.covariance_matrix.diagonal(), d.variance, rtol=1e-12, atol=1e-15)


def test_huge_concentrations_give_no_nan() -> None:
    """float32 at kappa = 1e20 (kappa (1 + kappa) overflows): the mode's density is finite, elsewhere 0; and
    a float64 kappa whose q = (1 + 2 kappa)^-2 underflows to 0 gives an infinite KL and a mean of 1."""
    loc = torch.tensor([0.0, 0.6, 0.8])
    d = SphericalCauchy(loc, torch.tensor(1e20))
    at_mode, away = d.log_prob(torch.stack([loc, torch.tensor([1.0, 0.0, 0.0])]))
    assert torch.isfinite(at_mode) and float(at_mode) > 80 and float(away) == -math.inf
    loc64 = torch.tensor([0.0, 0.6, 0.8], dtype=F64)
    huge = SphericalCauchy(loc64, torch.tensor(1e200, dtype=F64))
    assert float(kl_divergence(huge, HypersphericalUniform(3, dtype=F64))) == math.inf
    assert torch.equal(huge.mean, loc64)
