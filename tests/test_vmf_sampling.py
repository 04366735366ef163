"""Statistical checks of the von Mises-Fisher sampler (seeded; tolerances from standard errors).

About 1e5 draws per (p, kappa) point make the tests sharp enough to catch the known errors of
other samplers: a mean of mu^T z off by 6e-3 at p = 50, kappa = 80 is 30 standard errors here.
The angle theta between z and mu is computed from the chord, theta = 2 asin(|z - mu| / 2), which
keeps its precision at large kappa where 1 - mu^T z has no digits left.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch

from spherical_dists import HypersphericalUniform, PowerSpherical, VonMisesFisher
from spherical_dists._marginal import sample_marginal
from spherical_dists._sampling import _PARALLEL_NORMALS
from spherical_dists.special import vmf_mean_resultant_length

from .conftest import DEVICES

F64 = torch.float64
DIMS = [2, 3, 4, 10, 100, 1000]
KAPPAS = [0.0, 1e-3, 1.0, 10.0, 80.0, 1e3, 1e6]
DRAWS = 100_000
Z_BOUND = 5.0  # |mean - expected| <= 5 standard errors
P_VALUE_FLOOR = 1e-4  # goodness-of-fit tests fail below this


def _angle(z: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    chord = torch.linalg.vector_norm(z.double() - mu.double(), dim=-1)
    return 2.0 * torch.asin(torch.clamp(chord / 2.0, max=1.0))


def _draw_angles(
    p: int, kappa: float, dtype: torch.dtype, n: int, seed: int, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """theta, and the samples' tangent parts projected on two fixed orthonormal tangent vectors."""
    gen = torch.Generator().manual_seed(seed)
    device_gen = gen if device == "cpu" else torch.Generator(device=device).manual_seed(seed)
    mu = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1)
    basis = torch.linalg.qr(torch.cat([mu[:, None], torch.randn(p, 2, dtype=F64, generator=gen)], dim=1))[0]
    b = basis[:, 1:] * torch.sign(basis[:, :1].T @ mu)  # two unit vectors orthogonal to mu
    dist = VonMisesFisher(mu.to(device, dtype), torch.tensor(kappa, dtype=dtype, device=device))
    thetas, projections = [], []
    chunk = max(1, min(n, 2_000_000 // p))
    for start in range(0, n, chunk):
        z = dist.sample((min(chunk, n - start),), generator=device_gen).cpu()
        thetas.append(_angle(z, mu))
        tangent = z.double() - (z.double() @ mu)[:, None] * mu
        projections.append(tangent @ b)
    return torch.cat(thetas), torch.cat(projections), mu


def _theta_bin_probabilities(p: int, kappa: float, edges: np.ndarray) -> np.ndarray:
    """P(edge_i < theta <= edge_{i+1}) for the density prop. to exp(kappa cos t) sin(t)^(p-2) on [0, pi]."""
    t = np.linspace(0.0, math.pi, 20001)[1:-1]
    log_density = kappa * (np.cos(t) - 1.0) + (p - 2) * np.log(np.sin(t))
    peak = t[np.argmax(log_density)]
    shift = log_density.max()

    def density(x: float) -> float:
        return (
            math.exp(kappa * (math.cos(x) - 1.0) + (p - 2) * math.log(math.sin(x)) - shift) if 0 < x < math.pi else 0.0
        )

    width = 1.0 / math.sqrt(kappa + p)
    breaks = sorted({min(max(peak + k * width, 1e-300), math.pi) for k in (-20, -5, -1, 0, 1, 5, 20)})
    total = sum(
        scipy.integrate.quad(density, a, b, limit=200, epsabs=1e-14, epsrel=1e-9)[0]
        for a, b in zip([0.0, *breaks], [*breaks, math.pi])
    )
    probs = []
    for a, b in zip(edges[:-1], edges[1:]):
        inner = [x for x in breaks if a < x < b]
        probs.append(
            sum(
                scipy.integrate.quad(density, lo, hi, limit=200, epsabs=1e-14, epsrel=1e-9)[0]
                for lo, hi in zip([a, *inner], [*inner, b])
            )
        )
    return np.array(probs) / total


def _chi_square_p_value(theta: torch.Tensor, p: int, kappa: float, bins: int = 40) -> float:
    """Edges from the first half's quantiles (independent of the second half), tested on the second."""
    half = theta.numel() // 2
    first, second = theta[:half].numpy(), theta[half:].numpy()
    inner = np.unique(np.quantile(first, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[0.0], inner, [math.pi]])
    observed = np.histogram(second, bins=edges)[0]
    expected = _theta_bin_probabilities(p, kappa, edges) * second.size
    keep = expected > 5
    chi2 = (((observed - expected) ** 2)[keep] / expected[keep]).sum()
    return float(scipy.stats.chi2.sf(chi2, keep.sum() - 1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("p", [p if p < 100 else pytest.param(p, marks=pytest.mark.slow) for p in DIMS])
def test_marginal_moments_fit_and_symmetry(p: int, dtype: torch.dtype, device: str) -> None:
    draws = DRAWS if p <= 100 else DRAWS // 5
    for i, kappa in enumerate(KAPPAS):
        theta, proj, _ = _draw_angles(p, kappa, dtype, draws, seed=1000 * p + i, device=device)
        k = torch.tensor(kappa, dtype=F64)
        mean_length = float(vmf_mean_resultant_length(p, k))
        one_minus_w = 2.0 * torch.sin(theta / 2) ** 2  # exact 1 - w from the angle
        # E[1 - w] = 1 - A_p(kappa); E[(1 - w)^2] from E[w^2] = 1 - (p - 1) A / kappa.
        a_over_kappa = mean_length / kappa if kappa > 0 else 1.0 / p
        expected = {
            "1-w": 1.0 - mean_length,
            "(1-w)^2": 1.0 - 2.0 * mean_length + (1.0 - (p - 1) * a_over_kappa),
        }
        for name, values in (("1-w", one_minus_w), ("(1-w)^2", one_minus_w**2)):
            se = values.std().item() / math.sqrt(values.numel())
            err = abs(values.mean().item() - expected[name])
            assert err <= Z_BOUND * se + 1e-12 * abs(expected[name]), (p, kappa, name, err / se)
        assert _chi_square_p_value(theta, p, kappa) > P_VALUE_FLOOR, (p, kappa)
        # Rotational symmetry about mu: E[(b . z)^2] = A / kappa for a unit b orthogonal to mu,
        # zero mean, and a uniform angle in a tangent plane.
        if p == 2:
            count = int((proj[:, 0] > 0).sum())
            assert scipy.stats.binomtest(count, proj.shape[0]).pvalue > P_VALUE_FLOOR, (p, kappa)
            continue
        second = proj[:, 0] ** 2
        se = second.std().item() / math.sqrt(second.numel())
        assert abs(second.mean().item() - a_over_kappa) <= Z_BOUND * se + 1e-7 * a_over_kappa, (p, kappa)
        se_mean = proj.std(dim=0) / math.sqrt(proj.shape[0])
        assert (proj.mean(dim=0).abs() <= Z_BOUND * se_mean).all(), (p, kappa)
        phi = torch.atan2(proj[:, 1], proj[:, 0]).numpy()
        assert scipy.stats.kstest(phi, scipy.stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue > P_VALUE_FLOOR, (
            p,
            kappa,
        )


@pytest.mark.slow
@pytest.mark.parametrize("p", [16384, 65536])
def test_high_dimension(p: int) -> None:
    """The marginal sampler with 1e5 draws, and the full sampler (2,000 draws) for its moments."""
    for i, kappa in enumerate([0.0, 100.0, 1e4, 1e6]):
        k = torch.full((DRAWS,), kappa, dtype=F64)
        omw, opw = sample_marginal(k, p, torch.Generator().manual_seed(i))
        theta = 2.0 * torch.atan2(omw.sqrt(), opw.sqrt())
        assert _chi_square_p_value(theta, p, kappa) > P_VALUE_FLOOR, (p, kappa)
        mean_length = float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=F64)))
        se = omw.std().item() / math.sqrt(DRAWS)
        assert abs(omw.mean().item() - (1 - mean_length)) <= Z_BOUND * se, (p, kappa)
        theta_full, _, _ = _draw_angles(p, kappa, torch.float32, 2000, seed=i)
        w = torch.cos(theta_full)
        assert abs(w.mean().item() - mean_length) <= Z_BOUND * w.std().item() / math.sqrt(2000) + 1e-6


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_unit_norm_and_huge_concentration(dtype: torch.dtype) -> None:
    eps = torch.finfo(dtype).eps
    for p in (2, 3, 5, 300):
        mu = torch.nn.functional.normalize(torch.randn(p, dtype=F64), dim=-1)
        for kappa in (0.0, 1.0, 1e4, 1e8, 1e12):
            z = VonMisesFisher(mu.to(dtype), torch.tensor(kappa, dtype=dtype)).sample((20_000,))
            assert torch.isfinite(z).all()
            assert ((z.double().norm(dim=-1) - 1).abs() <= 4 * eps).all(), (p, kappa)
            if kappa >= 1e4:  # no shrinkage toward mu: E[theta^2] ~ (p - 1) / kappa
                theta = _angle(z, mu)
                ratio = (theta**2).mean().item() * kappa / (p - 1)
                assert abs(ratio - 1.0) < 0.05, (p, kappa, ratio)


def test_per_row_parameters() -> None:
    """Rows with different loc and kappa in one call each follow their own law."""
    p, rows, draws = 5, 6, 20_000
    mu = torch.nn.functional.normalize(torch.randn(rows, p, dtype=F64), dim=-1)
    kappa = torch.tensor([0.0, 0.3, 3.0, 30.0, 300.0, 3e4], dtype=F64)
    z = VonMisesFisher(mu, kappa).sample((draws,))
    w = (z * mu).sum(-1)
    se = w.std(dim=0) / math.sqrt(draws)
    assert ((w.mean(dim=0) - vmf_mean_resultant_length(p, kappa)).abs() <= Z_BOUND * se + 1e-12).all()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_covariance_matches_mpmath_at_every_concentration(dtype: torch.dtype) -> None:
    """Cov[z] = (A/kappa)(I - mu mu^T) + Var[w] mu mu^T with Var[w] = 1 - A^2 - (p - 1) A / kappa,
    against mpmath at 50 digits, including kappa = 1e8 where Var[w] ~ (p - 1) / (2 kappa^2) is a
    tiny difference of terms of size (p - 1) / kappa (relative error ~ kappa * 1e-16 in float64)."""
    import mpmath as mp

    from spherical_dists import testing as ref

    p = 3
    kappas = [0.0, 1e-3, 1.0, 50.0, 1e4, 1e6, 1e8]
    loc = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=F64), dim=-1)
    dist = VonMisesFisher(loc.to(dtype).expand(len(kappas), p), torch.tensor(kappas, dtype=dtype))
    cov = dist.covariance_matrix.to(F64)
    mu = dist.loc.to(F64)
    for i, kappa in enumerate(kappas):
        with mp.workdps(60):
            k = mp.mpf(float(torch.tensor(kappa, dtype=dtype)))
            if k == 0:
                a, var_w = mp.mpf(1) / p, mp.mpf(1) / p
            else:
                big_a = ref.iv_ratio(p / 2 - 1, k)
                a, var_w = big_a / k, 1 - big_a**2 - (p - 1) * big_a / k
        outer = torch.outer(mu[i], mu[i])
        expected = float(a) * (torch.eye(p, dtype=F64) - outer) + float(var_w) * outer
        rtol = 8 * torch.finfo(torch.float32).eps if dtype == torch.float32 else max(1e-13, 4 * kappa * 1e-16)
        scale = float(a) + float(var_w)  # entries of mu mu^T-rounding size are judged against it
        torch.testing.assert_close(cov[i], expected, rtol=rtol, atol=rtol * scale)
        torch.testing.assert_close(dist.variance[i].to(F64), torch.diagonal(expected), rtol=rtol, atol=rtol * scale)
        assert (dist.variance[i] > 0).all()


def test_covariance_matches_sample_covariance() -> None:
    """The closed form against 2e5 draws (p = 5, kappa = 4): each entry within 5 standard errors."""
    gen = torch.Generator().manual_seed(11)
    loc = torch.nn.functional.normalize(torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5], dtype=F64), dim=-1)
    dist = VonMisesFisher(loc, torch.tensor(4.0, dtype=F64))
    z = dist.sample((200_000,), generator=gen)
    centred = z - z.mean(0)
    products = centred.unsqueeze(-1) * centred.unsqueeze(-2)
    sample_cov = products.mean(0)
    standard_error = products.std(0) / math.sqrt(z.shape[0])
    assert ((sample_cov - dist.covariance_matrix).abs() <= 5 * standard_error + 1e-12).all()


# (rows, p, dtype): p = 2 and 3 draw no Gaussians; the others fill at least _PARALLEL_NORMALS of
# them, and p > 2^15 (one row per chunk) and the single row take torch's reductions over one long
# row, which torch splits among its threads.
THREAD_CASES = [
    pytest.param(n, p, dtype, id=f"{n}x{p}-{str(dtype).removeprefix('torch.')}")
    for n, p, dtype in [
        (70_000, 2, torch.float32),
        (50_000, 3, F64),
        (3_000, 50, torch.float32),
        (3_000, 50, F64),
        (200, 1000, torch.float32),
        (3, 65_537, F64),
        (1, 131_073, torch.float32),
    ]
]


@pytest.mark.parametrize(
    "cls, grad",
    # The uniform has no parameters to differentiate.
    [
        (VonMisesFisher, False),
        (VonMisesFisher, True),
        (PowerSpherical, False),
        (PowerSpherical, True),
        (HypersphericalUniform, False),
    ],
)
@pytest.mark.parametrize("n, p, dtype", THREAD_CASES)
def test_same_samples_at_any_thread_count(n: int, p: int, dtype: torch.dtype, cls: type, grad: bool) -> None:
    """A seed and a shape give the same samples with 1, 2 and 4 threads, as torch's own
    distributions do: nothing may depend on torch.get_num_threads()."""
    assert p <= 3 or n * p >= _PARALLEL_NORMALS
    gen = torch.Generator().manual_seed(p)
    loc = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1).to(dtype)
    kappa = torch.tensor(30.0, dtype=dtype)
    if grad:
        loc, kappa = loc.requires_grad_(), kappa.requires_grad_()
    dist = HypersphericalUniform(p, dtype=dtype) if cls is HypersphericalUniform else cls(loc, kappa)
    draw = dist.rsample if grad else dist.sample
    previous = torch.get_num_threads()
    samples = []
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            samples.append(draw((n,), generator=torch.Generator().manual_seed(17)).detach())
    finally:
        torch.set_num_threads(previous)
    assert samples[0].shape == (n, p)
    for threads, z in zip((2, 4), samples[1:]):
        assert torch.equal(z, samples[0]), (threads, (z - samples[0]).abs().max().item())
