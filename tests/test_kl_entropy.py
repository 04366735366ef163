"""KL divergences and entropy against mpmath (closed forms at 50 digits) and Monte Carlo."""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import torch
from torch.distributions import kl_divergence

from spherical_dists import HypersphericalUniform, VonMisesFisher
from spherical_dists import testing as ref
from spherical_dists.special import vmf_mean_resultant_length

F64 = torch.float64
Z_BOUND = 5.0
DIMS = [2, 3, 10, 1000, 65536]
KAPPAS = [1e-8, 1e-4, 0.1, 1.0, 80.0, 1e4, 1e7]


def _mp_kl_to_uniform(p: int, kappa: float) -> mp.mpf:
    """kappa A_p + log C_p(kappa) + log |S^{p-1}|, at 60 digits (it is ~kappa^2 / (2p) near 0)."""
    with mp.workdps(60):
        return kappa * ref.iv_ratio(p / 2 - 1, kappa) + ref.vmf_log_normalizer(p, kappa) + ref.log_sphere_area(p)


def _unit(p: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(p, dtype=F64, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


@pytest.mark.parametrize("p", DIMS)
def test_kl_to_uniform_and_entropy_match_mpmath(p: int) -> None:
    kappa = torch.tensor(KAPPAS, dtype=F64)
    q = VonMisesFisher(_unit(p, p).expand(len(KAPPAS), p), kappa)
    expected_kl = torch.tensor([float(_mp_kl_to_uniform(p, k)) for k in KAPPAS], dtype=F64)
    torch.testing.assert_close(kl_divergence(q, HypersphericalUniform(p, dtype=F64)), expected_kl, rtol=1e-12, atol=0)
    expected_entropy = torch.tensor(
        [float(ref.log_sphere_area(p) - _mp_kl_to_uniform(p, k)) for k in KAPPAS], dtype=F64
    )
    torch.testing.assert_close(q.entropy(), expected_entropy, rtol=1e-12, atol=1e-12)


def test_kl_to_uniform_float32_high_dimension() -> None:
    """Float32 in, float32 accuracy out, even at p = 16384 (where other libraries are off by 2e-2)."""
    kappa = torch.tensor([0.01, 1.0, 100.0, 1e4], dtype=torch.float32)
    q = VonMisesFisher(_unit(16384, 0).float().expand(4, 16384), kappa)
    expected = torch.tensor([float(_mp_kl_to_uniform(16384, float(k))) for k in kappa], dtype=F64)
    torch.testing.assert_close(kl_divergence(q, HypersphericalUniform(16384)).double(), expected, rtol=1e-6, atol=0)


def test_kl_to_uniform_at_zero_and_its_gradient() -> None:
    """KL = 0 at kappa = 0, and d/dkappa KL = kappa A_p'(kappa)."""
    for p in (2, 3, 50, 4096):
        kappa = torch.tensor([0.0, 0.01, 1.0, 35.0, 1e5], dtype=F64, requires_grad=True)
        kl = kl_divergence(VonMisesFisher(_unit(p, 1).expand(5, p), kappa), HypersphericalUniform(p, dtype=F64))
        assert kl[0].item() == 0.0
        (grad,) = torch.autograd.grad(kl.sum(), kappa)
        k = kappa.detach()
        a = vmf_mean_resultant_length(p, k)
        a_prime = torch.where(k > 0, 1 - a * a - (p - 1) * a / torch.where(k > 0, k, 1.0), 1.0 / p)
        torch.testing.assert_close(grad, k * a_prime, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("p", [2, 3, 17, 1000])
def test_kl_vmf_vmf_matches_mpmath(p: int) -> None:
    mu1, mu2 = _unit(p, 5), _unit(p, 6)
    cases = [
        (mu1, 3.0, mu2, 30.0),
        (mu1, 1e-6, mu2, 2e-6),
        (mu1, 500.0, mu1, 400.0),
        (mu1, 80.0, mu2, 0.0),
        (mu1, 0.0, mu2, 5.0),
    ]
    for m1, k1, m2, k2 in cases:
        q1 = VonMisesFisher(m1, torch.tensor(k1, dtype=F64))
        q2 = VonMisesFisher(m2, torch.tensor(k2, dtype=F64))
        with mp.workdps(60):
            cos = mp.mpf(float(m1 @ m2))
            expected = (
                ref.vmf_log_normalizer(p, k1)
                - ref.vmf_log_normalizer(p, k2)
                + ref.iv_ratio(p / 2 - 1, k1) * (k1 - k2 * cos)
            )
        torch.testing.assert_close(
            kl_divergence(q1, q2), torch.tensor(float(expected), dtype=F64), rtol=1e-10, atol=1e-15
        )
    same = VonMisesFisher(mu1, torch.tensor(7.0, dtype=F64))
    assert kl_divergence(same, same).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("p", [3, 5, 1000])
def test_kl_vmf_vmf_at_huge_concentration(p: int, dtype: torch.dtype) -> None:
    """Batched, at concentrations where G(k2) - G(k1) - A1 (k2 - k1) loses every digit: relative
    error 1e-12 in float64 and a few float32 ulps (the terms are evaluated in float64)."""
    kappas = [1e3, 1e5, 1e8, 1e10] + ([1e20] if dtype == F64 else [])
    k1 = torch.tensor(kappas, dtype=F64)
    k2 = k1 / 2 + 1
    mu1 = _unit(p, 7).expand(len(kappas), p)
    tilt = torch.zeros(p, dtype=F64)
    tilt[1] = 1e-3
    mu2 = torch.nn.functional.normalize(mu1 + tilt, dim=-1)
    q1 = VonMisesFisher(mu1.to(dtype), k1.to(dtype))
    q2 = VonMisesFisher(mu2.to(dtype), k2.to(dtype))
    got = kl_divergence(q1, q2)
    assert got.dtype == dtype
    expected = []
    with mp.workdps(60):
        for i, (a, b) in enumerate(zip(kappas, k2.tolist())):
            m1, m2 = q1.loc[i].to(F64), q2.loc[i].to(F64)  # the rounded directions the KL sees
            cos = 1 - mp.mpf(float(0.5 * (m1 - m2).pow(2).sum()))
            a, b = mp.mpf(float(torch.tensor(a, dtype=dtype))), mp.mpf(float(torch.tensor(b, dtype=dtype)))
            value = (
                ref.vmf_log_normalizer(p, a) - ref.vmf_log_normalizer(p, b) + ref.iv_ratio(p / 2 - 1, a) * (a - b * cos)
            )
            expected.append(float(value))
    rtol = 1e-12 if dtype == F64 else 4 * torch.finfo(torch.float32).eps
    torch.testing.assert_close(got.to(F64), torch.tensor(expected, dtype=F64), rtol=rtol, atol=0.0)
    assert (got > 0).all()


def test_kl_vmf_vmf_gradients() -> None:
    """dKL/dk2 = A(k2) - A(k1) cos and dKL/dk1 = A'(k1) (k1 - k2 cos), batched, float64."""
    p = 6
    k1 = torch.tensor([0.0, 0.5, 20.0, 3e3, 1e7], dtype=F64, requires_grad=True)
    k2 = torch.tensor([2.0, 1e-3, 25.0, 1e3, 2e7], dtype=F64, requires_grad=True)
    mu1, mu2 = _unit(p, 8), _unit(p, 9)
    kl = kl_divergence(VonMisesFisher(mu1, k1), VonMisesFisher(mu2, k2))
    g1, g2 = torch.autograd.grad(kl.sum(), (k1, k2))
    a1, a2 = vmf_mean_resultant_length(p, k1.detach()), vmf_mean_resultant_length(p, k2.detach())
    cos = mu1 @ mu2
    k = k1.detach()
    a_prime = torch.where(k > 0, 1 - a1 * a1 - (p - 1) * a1 / torch.where(k > 0, k, 1.0), 1.0 / p)
    torch.testing.assert_close(g2, a2 - a1 * cos, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g1, a_prime * (k - k2.detach() * cos), rtol=1e-9, atol=1e-12)


def test_kl_uniform_vmf_and_uniform_uniform() -> None:
    for p in (2, 3, 300):
        for k in (1e-6, 2.0, 1e4):
            q = VonMisesFisher(_unit(p, 2), torch.tensor(k, dtype=F64))
            with mp.workdps(60):
                expected = float(-ref.vmf_log_normalizer(p, k) - ref.log_sphere_area(p))
            torch.testing.assert_close(
                kl_divergence(HypersphericalUniform(p, dtype=F64), q),
                torch.tensor(expected, dtype=F64),
                rtol=1e-12,
                atol=0,
            )
    zero = kl_divergence(HypersphericalUniform(5, batch_shape=(3,)), HypersphericalUniform(5))
    assert zero.shape == (3,) and (zero == 0).all()


@pytest.mark.parametrize("p, k1, k2", [(3, 4.0, 20.0), (10, 50.0, 5.0), (200, 150.0, 300.0)])
def test_kl_and_entropy_against_monte_carlo(p: int, k1: float, k2: float) -> None:
    n = 100_000
    gen = torch.Generator().manual_seed(p)
    q1 = VonMisesFisher(_unit(p, 11), torch.tensor(k1, dtype=F64))
    q2 = VonMisesFisher(_unit(p, 12), torch.tensor(k2, dtype=F64))
    uniform = HypersphericalUniform(p, dtype=F64)
    z = q1.sample((n,), generator=gen)
    u = uniform.sample((n,), generator=gen)
    estimates = [
        (q1.log_prob(z) - q2.log_prob(z), kl_divergence(q1, q2)),
        (q1.log_prob(z) - uniform.log_prob(z), kl_divergence(q1, uniform)),
        (uniform.log_prob(u) - q2.log_prob(u), kl_divergence(uniform, q2)),
        (-q1.log_prob(z), q1.entropy()),
    ]
    for values, exact in estimates:
        se = values.std().item() / math.sqrt(n)
        assert abs(values.mean().item() - exact.item()) <= Z_BOUND * se + 1e-12, (
            values.mean().item(),
            exact.item(),
            se,
        )


def test_log_prob_matches_mpmath_at_large_kappa() -> None:
    """log C + kappa mu^T z = (log C + kappa) - kappa |z - mu|^2 / 2 without cancellation: float32
    stays accurate at kappa = 1e8, where log C alone is -1e8."""
    p = 5
    mu = _unit(p, 3)
    for dtype, rtol in ((F64, 1e-12), (torch.float32, 1e-5)):
        for kappa in (1e-3, 10.0, 1e8):
            q = VonMisesFisher(mu.to(dtype), torch.tensor(kappa, dtype=dtype))
            z = q.sample((4,))
            k = float(torch.tensor(kappa, dtype=dtype))
            with mp.workdps(60):
                expected = [
                    ref.vmf_log_normalizer(p, k)
                    + k
                    - k * mp.mpf(float(((zi.double() - mu.to(dtype).double()) ** 2).sum())) / 2
                    for zi in z
                ]
            torch.testing.assert_close(
                q.log_prob(z).double(), torch.tensor([float(e) for e in expected], dtype=F64), rtol=rtol, atol=0
            )


def test_log_prob_gradient_in_kappa_matches_mpmath() -> None:
    """d/dkappa [log C_p(kappa) + kappa mu^T z] = mu^T z - A_p(kappa), with A_p = I_{p/2}/I_{p/2-1} from mpmath:
    the gradient of the fast log_prob path, which asks the Bessel core for F and E only."""
    torch.manual_seed(0)
    for p, kappa in ((3, 0.5), (25, 100.0), (200, 1e4)):
        mu = _unit(p, p)
        k = torch.tensor(kappa, dtype=F64, requires_grad=True)
        q = VonMisesFisher(mu, k)
        z = q.sample((3,))
        (grad,) = torch.autograd.grad(q.log_prob(z).sum(), k)
        with mp.workdps(40):
            a = ref.iv_ratio(mp.mpf(p) / 2 - 1, mp.mpf(kappa))
        expected = float((z @ mu).sum()) - 3 * float(a)
        assert grad.item() == pytest.approx(expected, rel=1e-10, abs=1e-10)
