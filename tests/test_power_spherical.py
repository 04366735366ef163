"""The power spherical distribution: normaliser, entropy and KL against mpmath (quadrature and closed
forms at 60 digits) and Monte Carlo; sampler moments and the exact Beta law of the marginal;
gradients of rsample against closed-form derivatives and score-function estimates.
Seeded; tolerances of 5 standard errors."""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import scipy.stats
import torch
from torch.distributions import kl_divergence

from spherical_dists import HypersphericalUniform, PowerSpherical, VonMisesFisher
from spherical_dists import testing as ref

from .conftest import DEVICES

F64 = torch.float64
Z_BOUND = 5.0
P_VALUE_FLOOR = 1e-4
DIMS = [2, 3, 10, 1000, 65536]
KAPPAS = [0.0, 1e-8, 1e-4, 0.1, 1.0, 80.0, 1e4, 1e7]


def _unit(p: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(p, dtype=F64, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


def _mp_terms(p: int, kappa: float) -> tuple[mp.mpf, mp.mpf, mp.mpf]:
    """(log C, E_PS[log(1 + t)], E_U[log(1 + t)]) from the paper's closed forms, at 60 digits."""
    with mp.workdps(60):
        beta = mp.mpf(p - 1) / 2
        k = mp.mpf(kappa)
        alpha = beta + k
        log_c = -((alpha + beta) * mp.log(2) + beta * mp.log(mp.pi) + mp.loggamma(alpha) - mp.loggamma(alpha + beta))
        e_ps = mp.log(2) + mp.digamma(alpha) - mp.digamma(alpha + beta)
        e_u = mp.log(2) + mp.digamma(beta) - mp.digamma(2 * beta)
        return log_c, e_ps, e_u


def _mp_marginal_integral(p: int, kappa: float, g: object = None) -> mp.mpf:
    """|S^{p-2}| int_{-1}^{1} g(t) (1 + t)^kappa (1 - t^2)^((p-3)/2) dt by tanh-sinh quadrature
    (|S^0| = 2 counts the two points of the "sphere" of dimension 0 for p = 2)."""
    with mp.workdps(40):
        k, h = mp.mpf(kappa), mp.mpf(p - 3) / 2
        area = mp.mpf(2) if p == 2 else mp.exp(ref.log_sphere_area(p - 1))
        weight = (lambda t: 1) if g is None else g
        integrand = lambda t: weight(t) * (1 + t) ** k * (1 - t) ** h * (1 + t) ** h  # noqa: E731
        return area * mp.quad(integrand, [-1, 0, 1])


@pytest.mark.parametrize("p", [2, 3, 5, 40])
def test_normalizer_and_entropy_match_quadrature(p: int) -> None:
    """The closed forms (De Cao & Aziz 2020, eqs. for C and H) against direct integration."""
    kappa = torch.tensor([0.0, 0.5, 3.0, 50.0], dtype=F64)
    q = PowerSpherical(_unit(p, p).expand(4, p), kappa)
    expected_log_c, expected_entropy = [], []
    for k in kappa.tolist():
        with mp.workdps(40):
            mass = _mp_marginal_integral(p, k)
            log_c = -mp.log(mass)
            # H = -E[log f] = -log C - kappa E[log(1 + t)]
            mean_log = _mp_marginal_integral(p, k, mp.log1p) / mass
            expected_log_c.append(float(log_c))
            expected_entropy.append(float(-log_c - k * mean_log))
    torch.testing.assert_close(q.log_normalizer(), torch.tensor(expected_log_c, dtype=F64), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(q.entropy(), torch.tensor(expected_entropy, dtype=F64), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("p", DIMS)
def test_kl_and_entropy_match_mpmath(p: int) -> None:
    """KL to and from the uniform, entropy and log-normaliser over kappa in [0, 1e7]: relative 1e-12
    even where the KL is ~ kappa^2 (near 0) or the normaliser ~ -kappa log 2 (large kappa)."""
    kappa = torch.tensor(KAPPAS, dtype=F64)
    q = PowerSpherical(_unit(p, p).expand(len(KAPPAS), p), kappa)
    uniform = HypersphericalUniform(p, dtype=F64)
    kl_to, kl_from, entropy, log_c = [], [], [], []
    for k in KAPPAS:
        c, e_ps, e_u = _mp_terms(p, k)
        with mp.workdps(60):
            area = ref.log_sphere_area(p)
            kl_to.append(float(c + area + k * e_ps))
            kl_from.append(float(-area - c - k * e_u))
            entropy.append(float(-c - k * e_ps))
            log_c.append(float(c))
    # atol: mpmath's value at kappa = 0 is a rounding error of 1e-60 instead of 0.
    torch.testing.assert_close(kl_divergence(q, uniform), torch.tensor(kl_to, dtype=F64), rtol=1e-12, atol=1e-50)
    torch.testing.assert_close(kl_divergence(uniform, q), torch.tensor(kl_from, dtype=F64), rtol=1e-12, atol=1e-50)
    torch.testing.assert_close(q.entropy(), torch.tensor(entropy, dtype=F64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(q.log_normalizer(), torch.tensor(log_c, dtype=F64), rtol=1e-13, atol=1e-13)
    assert kl_divergence(q, uniform)[0].item() == 0.0 and kl_divergence(uniform, q)[0].item() == 0.0


@pytest.mark.parametrize("p", [2, 3, 17, 1000])
def test_kl_power_vmf_matches_mpmath(p: int) -> None:
    """KL(PS || vMF) = -H(PS) - log C_vMF(k2) - k2 m1 mu2^T mu1, m1 = k1 / (p - 1 + k1)."""
    mu1, mu2 = _unit(p, 5), _unit(p, 6)
    for m2, k1, k2 in [(mu2, 3.0, 30.0), (mu2, 1e-6, 2e-6), (mu1, 500.0, 400.0), (mu2, 80.0, 0.0), (mu1, 0.0, 5.0)]:
        c, e_ps, _ = _mp_terms(p, k1)
        with mp.workdps(60):
            cos = mp.mpf(float(mu1 @ m2))
            expected = c + k1 * e_ps - ref.vmf_log_normalizer(p, k2) - k2 * k1 / (p - 1 + mp.mpf(k1)) * cos
        kl = kl_divergence(
            PowerSpherical(mu1, torch.tensor(k1, dtype=F64)), VonMisesFisher(m2, torch.tensor(k2, dtype=F64))
        )
        torch.testing.assert_close(kl, torch.tensor(float(expected), dtype=F64), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("p, k1, k2", [(3, 4.0, 20.0), (10, 50.0, 5.0), (100, 150.0, 300.0)])
def test_kl_and_entropy_against_monte_carlo(p: int, k1: float, k2: float) -> None:
    n = 50_000
    gen = torch.Generator().manual_seed(p)
    q = PowerSpherical(_unit(p, 11), torch.tensor(k1, dtype=F64))
    vmf = VonMisesFisher(_unit(p, 12), torch.tensor(k2, dtype=F64))
    uniform = HypersphericalUniform(p, dtype=F64)
    z = q.sample((n,), generator=gen)
    u = uniform.sample((n,), generator=gen)
    estimates = [
        (q.log_prob(z) - vmf.log_prob(z), kl_divergence(q, vmf)),
        (q.log_prob(z) - uniform.log_prob(z), kl_divergence(q, uniform)),
        (uniform.log_prob(u) - q.log_prob(u), kl_divergence(uniform, q)),
        (-q.log_prob(z), q.entropy()),
    ]
    for values, exact in estimates:
        se = values.std().item() / math.sqrt(n)
        assert abs(values.mean().item() - exact.item()) <= Z_BOUND * se + 1e-12, (values.mean().item(), exact.item())


def test_log_prob_at_large_kappa_and_antipode() -> None:
    """(log C + kappa log 2) + kappa log1p(-|z - mu|^2 / 4): float32 accurate at kappa = 1e8; the
    antipode has density 0 for kappa > 0 and the uniform density at kappa = 0 (no NaN)."""
    p = 5
    mu = _unit(p, 3)
    for dtype, rtol in ((F64, 1e-12), (torch.float32, 1e-5)):
        for kappa in (1e-3, 10.0, 1e8):
            q = PowerSpherical(mu.to(dtype), torch.tensor(kappa, dtype=dtype))
            z = q.sample((4,))
            k = float(torch.tensor(kappa, dtype=dtype))
            c, _, _ = _mp_terms(p, k)
            with mp.workdps(60):
                expected = [
                    c + k * mp.log(2 - mp.mpf(float(((zi.double() - mu.to(dtype).double()) ** 2).sum())) / 2)
                    for zi in z
                ]
            torch.testing.assert_close(
                q.log_prob(z).double(), torch.tensor([float(e) for e in expected], dtype=F64), rtol=rtol, atol=0
            )
    kappa = torch.tensor([0.0, 2.0], dtype=F64, requires_grad=True)
    log_p = PowerSpherical(mu, kappa).log_prob(-mu)
    assert log_p[0].item() == pytest.approx(-ref.log_sphere_area(p), rel=1e-14) and log_p[1].item() == -math.inf
    (grad,) = torch.autograd.grad(log_p[0], kappa)
    assert not grad.isnan().any()


# ------------------------------------------------------------------ sampler


def _chord_parts(z: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - t)/2 = |z - mu|^2 / 4 (full precision at large kappa) and the tangent part of z."""
    half_one_minus_t = (z.double() - mu).pow(2).sum(-1) / 4.0
    tangent = z.double() - (z.double() @ mu)[:, None] * mu
    return half_one_minus_t, tangent


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("p", [2, 3, 4, 10, 100, 1000])
def test_marginal_law_moments_and_symmetry(p: int, dtype: torch.dtype, device: str) -> None:
    """(1 - t)/2 ~ Beta(beta, alpha) exactly (Kolmogorov-Smirnov against scipy's Beta CDF, in the
    precise tail), E[t], E[t^2] and the tangent second moment against the closed forms."""
    draws = {2: 40_000, 3: 40_000, 4: 40_000, 10: 40_000, 100: 10_000, 1000: 2_000}[p]
    for i, kappa in enumerate([0.0, 1e-3, 1.0, 80.0, 1e6]):
        gen = torch.Generator(device=device).manual_seed(100 * p + i)
        mu = _unit(p, i)
        q = PowerSpherical(mu.to(device, dtype), torch.tensor(kappa, dtype=dtype, device=device))
        z = q.sample((draws,), generator=gen).cpu()
        assert ((z.double().norm(dim=-1) - 1).abs() <= 4 * torch.finfo(dtype).eps).all()
        x, tangent = _chord_parts(z, mu)
        beta = 0.5 * (p - 1)
        alpha = beta + float(torch.tensor(kappa, dtype=dtype))
        law = scipy.stats.beta(beta, alpha)
        assert scipy.stats.kstest(x.numpy(), law.cdf).pvalue > P_VALUE_FLOOR, (p, kappa)
        t = 1.0 - 2.0 * x
        mean_t = (alpha - beta) / (alpha + beta)
        second_t = 1.0 - 4.0 * alpha * beta / ((alpha + beta) * (alpha + beta + 1))
        for values, expected in ((t, mean_t), (t**2, second_t)):
            se = values.std().item() / math.sqrt(draws)
            assert abs(values.mean().item() - expected) <= Z_BOUND * se + 1e-6 * abs(expected), (p, kappa)
        # Tangent: E[tangent tangent^T] = a (I - mu mu^T) with a = (1 - E[t^2]) / (p - 1); zero mean.
        a = (1.0 - second_t) / (p - 1)
        b = torch.linalg.qr(
            torch.cat([mu[:, None], torch.randn(p, 1, dtype=F64, generator=torch.Generator().manual_seed(i))], 1)
        )[0][:, 1]
        proj = tangent @ b
        se = (proj**2).std().item() / math.sqrt(draws)
        assert abs((proj**2).mean().item() - a) <= Z_BOUND * se + 1e-7 * a, (p, kappa)
        assert abs(proj.mean().item()) <= Z_BOUND * proj.std().item() / math.sqrt(draws) + 1e-12, (p, kappa)


def test_mean_and_variance_match_sample_moments() -> None:
    p, n = 6, 100_000
    q = PowerSpherical(_unit(p, 1), torch.tensor(7.0, dtype=F64))
    z = q.sample((n,), generator=torch.Generator().manual_seed(1))
    for values, expected in ((z, q.mean), ((z - q.mean) ** 2, q.variance)):
        se = values.std(dim=0) / math.sqrt(n)
        assert ((values.mean(dim=0) - expected).abs() <= Z_BOUND * se).all()
    torch.testing.assert_close(torch.diagonal(q.covariance_matrix), q.variance)


def test_huge_concentration_has_no_shrinkage() -> None:
    """At kappa = 1e12, 1 - t ~ 2 Beta(beta, alpha) ~ (p - 1) / kappa keeps its digits (float64)."""
    p, kappa, n = 5, 1e12, 50_000
    mu = _unit(p, 2)
    z = PowerSpherical(mu, torch.tensor(kappa, dtype=F64)).sample((n,), generator=torch.Generator().manual_seed(2))
    x, _ = _chord_parts(z, mu)
    ratio = (2 * x).mean().item() * (kappa + p - 1) / (p - 1)
    assert abs(ratio - 1.0) < 0.03


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("p", [2, 3, 5, 50, 1000])
@pytest.mark.parametrize("kappa", [0.5, 5.0, 80.0, 1e4])
def test_kappa_gradient_is_unbiased(p: int, kappa: float) -> None:
    """d/dkappa E[mu^T z] = d/dkappa kappa / (p - 1 + kappa) = (p - 1) / (p - 1 + kappa)^2."""
    n = 40_000 if p <= 50 else 4_000
    mu = _unit(p, p)
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
    z = PowerSpherical(mu, k).rsample(generator=torch.Generator().manual_seed(p))
    (grads,) = torch.autograd.grad((z @ mu).sum(), k)
    expected = (p - 1) / (p - 1 + kappa) ** 2
    se = grads.std().item() / math.sqrt(n)
    assert abs(grads.mean().item() - expected) <= Z_BOUND * se + 1e-12, (grads.mean().item(), expected, se)


@pytest.mark.parametrize("p", [2, 3, 7, 200])
def test_loc_gradient_is_unbiased(p: int) -> None:
    """d/dmu E[a^T z] = m a with m = kappa / (p - 1 + kappa), component by component."""
    n, kappa = 50_000 if p < 200 else 5_000, 12.0
    gen = torch.Generator().manual_seed(p)
    a = torch.randn(p, dtype=F64, generator=gen)
    mu = _unit(p, p + 1)
    loc = mu.expand(n, p).clone().requires_grad_()
    z = PowerSpherical(loc, torch.tensor(kappa, dtype=F64)).rsample(generator=gen)
    (grads,) = torch.autograd.grad((z @ a).sum(), loc)
    expected = kappa / (p - 1 + kappa) * a
    se = grads.std(dim=0) / math.sqrt(n)
    assert ((grads.mean(dim=0) - expected).abs() <= Z_BOUND * se + 1e-12).all()


@pytest.mark.parametrize("p, kappa", [(2, 3.0), (3, 0.7), (6, 25.0), (40, 80.0)])
def test_score_function_cross_check(p: int, kappa: float) -> None:
    """For a nonlinear f, reparameterised gradients agree with the score-function estimates
    E[f(z) d log f / d kappa], d log f / d kappa = log(1 + t) - (log 2 + psi(alpha) - psi(alpha + beta)),
    and the tangent part of E[f(z) kappa z / (1 + t)] for loc."""
    n = 100_000
    gen = torch.Generator().manual_seed(7 * p)
    mu, b = _unit(p, 7 * p), _unit(p, 7 * p + 1)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.exp(1.5 * (z @ b)) + torch.sin(3.0 * (z @ mu)) ** 2

    loc = mu.expand(n, p).clone().requires_grad_()
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
    z = PowerSpherical(loc, k).rsample(generator=gen)
    values = f(z)
    grad_loc, grad_k = torch.autograd.grad(values.sum(), (loc, k))
    zd = z.detach()
    t = zd @ mu
    beta = 0.5 * (p - 1)
    expected_log = math.log(2) + float(
        torch.digamma(torch.tensor(beta + kappa)) - torch.digamma(torch.tensor(2 * beta + kappa))
    )
    score_k = values.detach() * (torch.log1p(t) - expected_log)
    tangent = torch.eye(p, dtype=F64) - torch.outer(mu, mu)
    score_loc = (values.detach()[:, None] * kappa * zd / (1 + t)[:, None]) @ tangent
    path_loc = grad_loc @ tangent
    for path, score in ((grad_k[:, None], score_k[:, None]), (path_loc, score_loc)):
        diff = path.mean(dim=0) - score.mean(dim=0)
        se = torch.sqrt(path.var(dim=0) / n + score.var(dim=0) / n)
        assert (diff.abs() <= Z_BOUND * se + 1e-12).all(), diff / se


def test_kl_gradient_is_finite_and_matches_closed_form() -> None:
    """d/dkappa KL(PS || U) = kappa (psi'(alpha) - psi'(alpha + beta)), also at kappa = 0 and where
    the series and the large-kappa forms meet (kappa = beta / 8)."""
    for p in (2, 3, 50, 4096):
        beta = 0.5 * (p - 1)
        kappa = torch.tensor([0.0, 1e-3, beta / 8, beta / 8 * (1 + 1e-9), 35.0, 1e5], dtype=F64, requires_grad=True)
        kl = kl_divergence(PowerSpherical(_unit(p, 1).expand(6, p), kappa), HypersphericalUniform(p, dtype=F64))
        (grad,) = torch.autograd.grad(kl.sum(), kappa)
        k = kappa.detach()
        with mp.workdps(30):
            expected = [float(kk * (mp.psi(1, beta + kk) - mp.psi(1, 2 * beta + kk))) for kk in k.tolist()]
        torch.testing.assert_close(grad, torch.tensor(expected, dtype=F64), rtol=1e-9, atol=1e-300)
