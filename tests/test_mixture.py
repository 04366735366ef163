"""Mixtures of von Mises-Fisher distributions: torch's MixtureSameFamily with VonMisesFisher
components, and the EM fit (recovery of known parameters within standard errors, monotone
log-likelihood, batches, devices)."""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily

from spherical_dists import VonMisesFisher, fit_vmf_mixture
from spherical_dists import testing as ref
from spherical_dists._vmf import vmf_terms
from spherical_dists.mixture import kmeans_plus_plus

from .conftest import requires_cuda

F64 = torch.float64
Z_BOUND = 5.0


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


def _mixture(weights: torch.Tensor, locs: torch.Tensor, kappas: torch.Tensor) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(probs=weights), VonMisesFisher(locs, kappas))


def test_mixture_same_family_works_out_of_the_box() -> None:
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    locs, kappas = _unit(3, 4, seed=0), torch.tensor([1.0, 10.0, 100.0], dtype=F64)
    mix = _mixture(weights, locs, kappas)
    assert mix.batch_shape == () and mix.event_shape == (4,)
    z = mix.sample((1000,))
    assert z.shape == (1000, 4) and torch.allclose(z.norm(dim=-1), torch.ones(1000, dtype=F64))
    manual = torch.logsumexp(weights.log() + VonMisesFisher(locs, kappas).log_prob(z.unsqueeze(-2)), dim=-1)
    torch.testing.assert_close(mix.log_prob(z), manual, rtol=1e-14, atol=1e-14)
    a = vmf_terms(4, kappas).mean_length
    torch.testing.assert_close(mix.mean, (weights * a) @ locs)
    # Batched: two mixtures of three components each.
    batched = _mixture(weights.expand(2, 3), _unit(2, 3, 4, seed=1), kappas.expand(2, 3))
    assert batched.batch_shape == (2,) and batched.sample((5,)).shape == (5, 2, 4)
    assert batched.log_prob(z[:7].unsqueeze(-2)).shape == (7, 2)


def test_mixture_samples_follow_the_weights() -> None:
    """Well-separated components: the share of samples nearest each loc is its weight (5 SE)."""
    weights = torch.tensor([0.1, 0.6, 0.3], dtype=F64)
    locs = torch.eye(3, dtype=F64)
    n = 20_000
    z = _mixture(weights, locs, torch.full((3,), 200.0, dtype=F64)).sample((n,))
    share = torch.bincount((z @ locs.T).argmax(-1), minlength=3) / n
    assert ((share - weights).abs() <= Z_BOUND * (weights * (1 - weights) / n).sqrt()).all()


def _synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    locs = torch.eye(5, dtype=F64)[:3]
    kappas = torch.tensor([20.0, 50.0, 100.0], dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    component = torch.multinomial(weights, n, replacement=True, generator=gen)
    x = VonMisesFisher(locs[component], kappas[component]).sample(generator=gen)
    return x, weights, locs, kappas


def test_em_recovers_known_parameters() -> None:
    """Tolerances from the sample size: var(pi_k) = pi_k (1 - pi_k) / n, var(kappa_k) ~ 1 / (n_k A'(kappa_k))
    and E[angle_k^2] ~ (p - 1) / (n_k kappa_k A(kappa_k)) (the components overlap negligibly)."""
    n, p = 30_000, 5
    x, weights, locs, kappas = _synthetic(n, seed=0)
    fit = fit_vmf_mixture(x, 3, generator=torch.Generator().manual_seed(1))
    assert fit.converged
    order = (fit.locs @ locs.T).argmax(0)  # fitted component nearest each true loc
    assert sorted(order.tolist()) == [0, 1, 2]
    w_hat, loc_hat, kappa_hat = fit.weights[order], fit.locs[order], fit.concentrations[order]
    assert ((w_hat - weights).abs() <= Z_BOUND * (weights * (1 - weights) / n).sqrt()).all(), w_hat
    counts = weights * n
    terms = vmf_terms(p, kappas)
    a, b, b2 = terms.mean_length, terms.one_minus_mean_length, vmf_terms(p + 2, kappas).one_minus_mean_length
    a_prime = a / kappas * (1 + kappas * (b - b2))
    assert ((kappa_hat - kappas).abs() <= Z_BOUND / (counts * a_prime).sqrt()).all(), kappa_hat
    angle_sq = (loc_hat - locs).pow(2).sum(-1)
    assert (angle_sq <= Z_BOUND**2 * (p - 1) / (counts * kappas * a)).all(), angle_sq
    assert fit.responsibilities.shape == (n, 3)
    torch.testing.assert_close(fit.responsibilities.sum(-1), torch.ones(n, dtype=F64))


def test_log_likelihood_never_decreases_and_matches_the_mixture() -> None:
    """Overlapping components (a hard problem, many iterations): the EM history is monotone, and its
    last value is the mean log-density of the fitted MixtureSameFamily."""
    gen = torch.Generator().manual_seed(3)
    locs = torch.tensor([[1.0, 0.2, 0.0], [1.0, -0.2, 0.1], [0.0, 1.0, 1.0]], dtype=F64)
    locs = torch.nn.functional.normalize(locs, dim=-1)
    mix = _mixture(torch.tensor([0.4, 0.4, 0.2], dtype=F64), locs, torch.tensor([30.0, 30.0, 3.0], dtype=F64))
    x = mix.sample((3000,))
    fit = fit_vmf_mixture(x, 4, max_iter=40, tol=0.0, generator=gen)
    history = fit.log_likelihood
    assert history.shape == (41,) and fit.n_iter == 40 and not fit.converged
    assert (history.diff() >= -1e-12 * history[1:].abs()).all(), history.diff().min()
    torch.testing.assert_close(fit.distribution().log_prob(x).mean(), history[-1], rtol=1e-12, atol=0)


def test_batched_fit_equals_one_by_one() -> None:
    x = torch.stack([_synthetic(2000, seed=s)[0] for s in (4, 5)])
    init = (torch.full((3,), 1 / 3, dtype=F64), torch.eye(5, dtype=F64)[:3] + 0.1, torch.ones(3, dtype=F64))
    init = (init[0], torch.nn.functional.normalize(init[1], dim=-1), init[2])
    batched = fit_vmf_mixture(x, 3, init=init, max_iter=30, tol=1e-12)
    assert batched.weights.shape == (2, 3) and batched.locs.shape == (2, 3, 5)
    assert batched.log_likelihood.shape == (batched.n_iter + 1, 2) and batched.responsibilities.shape == (2, 2000, 3)
    for i in range(2):
        single = fit_vmf_mixture(x[i], 3, init=init, max_iter=30, tol=1e-12)
        steps = single.n_iter + 1  # the batch runs until both converge; the rest changes nothing
        torch.testing.assert_close(batched.log_likelihood[:steps, i], single.log_likelihood, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(batched.locs[i], single.locs, rtol=0, atol=1e-8)
        torch.testing.assert_close(batched.concentrations[i], single.concentrations, rtol=1e-7, atol=0)


def test_one_component_is_the_maximum_likelihood_vmf() -> None:
    """K = 1: the mean direction of the points, and the kappa that solves A_p(kappa) = R (mpmath, 40 digits),
    not a comparison with VonMisesFisher.fit, which shares the M-step's code."""
    x = _synthetic(1000, seed=6)[0]
    fit = fit_vmf_mixture(x, 1)
    mean = x.mean(0)
    torch.testing.assert_close(fit.locs[0], mean / mean.norm(), rtol=0, atol=1e-12)
    with mp.workdps(40):
        r, v, k = mp.mpf(float(mean.norm())), mp.mpf(x.shape[-1]) / 2 - 1, mp.mpf(float(fit.concentrations[0]))
        for _ in range(3):  # Newton from the fit's kappa: each step squares the relative error
            a = ref.iv_ratio(v, k)
            k = k - (a - r) / (1 - a * a - (2 * v + 1) * a / k)
    assert fit.concentrations[0].item() == pytest.approx(float(k), rel=1e-10)
    assert fit.weights.item() == pytest.approx(1.0, abs=1e-12)


def test_float32_and_degenerate_clusters() -> None:
    """float32 in, float32 out; a cluster of identical points gets a finite, capped concentration."""
    x = torch.cat([_synthetic(500, seed=7)[0], torch.eye(5, dtype=F64)[4].expand(50, 5)]).float()
    fit = fit_vmf_mixture(x, 4, max_iter=50, generator=torch.Generator().manual_seed(1))
    assert fit.locs.dtype == torch.float32 and fit.weights.dtype == torch.float32
    assert torch.isfinite(fit.concentrations).all() and torch.isfinite(fit.log_likelihood).all()
    point_mass = fit.concentrations.argmax()
    assert fit.concentrations[point_mass].item() >= 1e5 and fit.weights[point_mass].item() == pytest.approx(50 / 550)


def test_float32_concentrated_components_match_the_plain_fit() -> None:
    """float32 data, kappa = 1e5 at p = 3: 1 - R is about 1e-5, so the M-step's resultants must not be float32
    sums (they put kappa 4.7x off). Each well-separated cluster's fit must match the one-distribution fit of
    its own points within 1 % (the float32 rounding of the data itself moves kappa by about 0.2 %): at p = 3,
    A_3(k) = coth k - 1/k = 1 - 1/k up to e^{-2k}, so that fit is kappa = 1 / (1 - R), R from float64 sums."""
    torch.manual_seed(11)
    locs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    clusters = [VonMisesFisher(loc, torch.tensor(1e5, dtype=F64)).sample((20000,)) for loc in locs]
    x = torch.nn.functional.normalize(torch.cat(clusters).float(), dim=-1)
    fit = fit_vmf_mixture(x, 2, generator=torch.Generator().manual_seed(0))
    order = fit.locs[:, 2].argsort()  # component 0 near e1, component 1 near e3
    for k in range(len(clusters)):
        resultant = x[k * 20000 : (k + 1) * 20000].double().mean(0).norm().item()
        assert fit.concentrations[order[k]].item() == pytest.approx(1 / (1 - resultant), rel=1e-2)


def test_seeded_runs_are_reproducible() -> None:
    x = _synthetic(2000, seed=8)[0]
    a = fit_vmf_mixture(x, 3, generator=torch.Generator().manual_seed(5))
    b = fit_vmf_mixture(x, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.locs, b.locs) and torch.equal(a.log_likelihood, b.log_likelihood)


def _recovers(one_hot: torch.Tensor, truth: torch.Tensor) -> bool:
    """Whether the assignments ``(n, K)`` put the points of each true cluster (labels ``(n,)``, K of
    them) together, one cluster per seed."""
    labels = one_hot.argmax(-1)
    first = [labels[truth == k][0] for k in range(one_hot.shape[-1])]
    return bool((labels == torch.stack(first)[truth]).all()) and len({int(f) for f in first}) == len(first)


def test_kmeans_plus_plus_gives_one_hot_rows_and_a_seed_per_cluster() -> None:
    """Three tight clusters on S^2 (kappa = 1e4 around e1, e2, e3), K = 3, in a batch of 4 data sets:
    float64 one-hot rows, and every cluster gets its own seed."""
    gen = torch.Generator().manual_seed(11)
    truth = torch.arange(3).repeat_interleave(30)  # (90,)
    x = VonMisesFisher(torch.eye(3, dtype=F64)[truth], torch.tensor(1e4, dtype=F64)).sample((4,), generator=gen)
    one_hot = kmeans_plus_plus(x, 3, torch.Generator().manual_seed(3))
    assert one_hot.shape == (4, 90, 3) and one_hot.dtype == F64
    assert bool(((one_hot == 0) | (one_hot == 1)).all()) and bool((one_hot.sum(-1) == 1).all())
    assert all(_recovers(one_hot[b], truth) for b in range(4))
    # float32 data give float64 assignments too.
    assert kmeans_plus_plus(x.float(), 3, None).dtype == F64


def test_kmeans_plus_plus_never_seeds_a_covered_point_twice() -> None:
    """K = the number of distinct points (e1, e2, e3, each repeated, in shuffled orders): a point that
    coincides with a seed has distance exactly 0, so whatever the seed every distinct point gets its own."""
    truth = torch.arange(3).repeat(5)  # (15,)
    orders = torch.stack([torch.randperm(15, generator=torch.Generator().manual_seed(b)) for b in range(8)])
    x = torch.eye(3, dtype=F64)[truth[orders]]  # (8, 15, 3)
    for seed in range(25):
        one_hot = kmeans_plus_plus(x, 3, torch.Generator().manual_seed(seed))
        assert all(_recovers(one_hot[b], truth[orders[b]]) for b in range(8)), seed


def test_kmeans_plus_plus_is_reproducible_from_its_generator() -> None:
    x = _synthetic(500, seed=12)[0].unsqueeze(0)
    a = kmeans_plus_plus(x, 3, torch.Generator().manual_seed(4))
    b = kmeans_plus_plus(x, 3, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    # The same draws as fit_vmf_mixture's seeding: its weights after no iteration are the seeds' shares.
    fit = fit_vmf_mixture(x[0], 3, max_iter=0, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(fit.weights, a[0].mean(-2), rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_components": 0}, "n_components"),
        ({"n_components": 11}, "n_components"),
        ({"n_components": 2, "init": "random"}, "init"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_vmf_mixture(_unit(10, 3, seed=0), **kwargs)
    with pytest.raises(ValueError, match="unit norm"):
        fit_vmf_mixture(2 * _unit(10, 3, seed=0), 2)


def _good_init(k: int = 2, p: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.full((k,), 1.0 / k, dtype=F64), torch.eye(p, dtype=F64)[:k], torch.full((k,), 5.0, dtype=F64)


@pytest.mark.parametrize(
    "which, value, match",
    [
        (0, torch.tensor([1.5, -0.5], dtype=F64), "weights must be finite, non-negative"),
        (0, torch.tensor([math.nan, 1.0], dtype=F64), "weights must be finite"),
        (0, torch.zeros(2, dtype=F64), "not all zero"),
        (1, 2 * torch.eye(3, dtype=F64)[:2], "unit norm"),
        (2, torch.tensor([-1.0, 5.0], dtype=F64), "concentrations must be finite and non-negative"),
        (2, torch.tensor([math.inf, 5.0], dtype=F64), "concentrations must be finite"),
        (2, torch.ones(3, dtype=F64), "broadcast"),
    ],
)
def test_invalid_init_is_refused_before_any_iteration(which: int, value: torch.Tensor, match: str) -> None:
    """A negative weight or concentration used to run 200 iterations of NaN log-likelihood."""
    init = list(_good_init())
    init[which] = value
    with pytest.raises(ValueError, match=match):
        fit_vmf_mixture(_unit(10, 3, seed=0), 2, init=tuple(init))


def test_counts_accept_numpy_integers_and_refuse_negative_iterations() -> None:
    np = pytest.importorskip("numpy")
    x = _unit(10, 3, seed=0)
    fit = fit_vmf_mixture(x, np.int64(2), max_iter=np.int64(3), generator=torch.Generator().manual_seed(0))
    assert fit.weights.shape == (2,) and fit.n_iter <= 3
    with pytest.raises(ValueError, match="max_iter"):
        fit_vmf_mixture(x, 2, max_iter=-1)
    with pytest.raises(ValueError, match="n_components must be an integer"):
        fit_vmf_mixture(x, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tol"):
        fit_vmf_mixture(x, 2, tol=-1.0)
    assert fit_vmf_mixture(x, 2, max_iter=0, generator=torch.Generator().manual_seed(0)).n_iter == 0


def test_init_weights_are_normalised_like_categorical() -> None:
    x = _unit(50, 3, seed=1)
    weights, locs, kappas = _good_init()
    a = fit_vmf_mixture(x, 2, max_iter=0, init=(weights, locs, kappas))
    b = fit_vmf_mixture(x, 2, max_iter=0, init=(3.0 * weights, locs, kappas))
    torch.testing.assert_close(a.log_likelihood, b.log_likelihood, rtol=1e-14, atol=0)


def test_float16_data_never_decrease_the_likelihood() -> None:
    """Half-precision data are computed in float32; in float16 the E-step's products made the
    log-likelihood decrease 18 times in one fit. EM never decreases it (to float32 rounding)."""
    x, _, _, _ = _synthetic(3000, seed=12)
    fit = fit_vmf_mixture(x.half(), 3, tol=0.0, max_iter=60, generator=torch.Generator().manual_seed(2))
    assert fit.weights.dtype == torch.float32 and fit.concentrations.dtype == torch.float32
    history = fit.log_likelihood
    steps = history[1:] - history[:-1]
    assert bool((steps >= -1e-6 * history[1:].abs()).all()), steps.min()


@requires_cuda
def test_em_on_cuda_matches_cpu() -> None:
    x, _, locs, _ = _synthetic(5000, seed=9)
    init = (
        torch.full((3,), 1 / 3, dtype=F64),
        torch.nn.functional.normalize(locs + 0.2, dim=-1),
        torch.ones(3, dtype=F64),
    )
    cpu = fit_vmf_mixture(x, 3, init=init, max_iter=20, tol=0.0)
    cuda = fit_vmf_mixture(x.cuda(), 3, init=tuple(t.cuda() for t in init), max_iter=20, tol=0.0)  # type: ignore[arg-type]
    assert cuda.locs.device.type == "cuda"
    torch.testing.assert_close(cuda.locs.cpu(), cpu.locs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cuda.concentrations.cpu(), cpu.concentrations, rtol=1e-9, atol=0)
    seeded = fit_vmf_mixture(x.cuda().float(), 3, generator=torch.Generator(device="cuda").manual_seed(0))
    assert torch.isfinite(seeded.log_likelihood).all() and math.isfinite(seeded.weights.sum().item())
