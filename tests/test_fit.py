"""Maximum-likelihood fitting of the von Mises-Fisher distribution: against scipy.stats.vonmises_fisher.fit
where scipy is finite, against mpmath (the root of A_p(kappa) = R at 40 digits) everywhere, a property
test of A_p(kappa_hat) = R, weights, batches, edge cases and errors."""

from __future__ import annotations

import math
import warnings

import mpmath as mp
import pytest
import scipy.stats
import torch
from hypothesis import given
from hypothesis import strategies as st

from spherical_dists import VonMisesFisher
from spherical_dists import testing as ref
from spherical_dists._vmf import concentration_from_resultant, vmf_terms

F64 = torch.float64
# scipy's brentq stops at |kappa - root| <= 2e-12 + 8.9e-16 |root| (its default xtol and rtol).
SCIPY_XTOL = 2e-12


def _fit(
    x: torch.Tensor, weights: torch.Tensor | None = None, validate_args: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    fitted = VonMisesFisher.fit(x, weights, validate_args=validate_args)
    return fitted.loc, fitted.concentration


def _data(p: int, kappa: float, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mu = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1)
    return VonMisesFisher(mu, torch.tensor(kappa, dtype=F64)).sample((n,), generator=gen)


def _scipy_fit(x: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """scipy's estimate, or None where it fails: an error, a non-finite value, or an end of its
    bracket (1e-8, 1e9), which it returns without complaint where ``ive`` underflows (p = 100,
    R = 0.05 gives 1e-8 instead of 4.8)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mu, kappa = scipy.stats.vonmises_fisher.fit(x.numpy())
    except (ValueError, RuntimeError):
        return None
    if not (math.isfinite(kappa) and all(map(math.isfinite, mu))) or not 1.0001e-8 < kappa < 0.9999e9:
        return None
    return torch.from_numpy(mu), float(kappa)


@pytest.mark.parametrize("p", [2, 3, 10, 50])
def test_matches_scipy(p: int) -> None:
    compared = 0
    for i, kappa in enumerate([0.05, 1.0, 30.0, 1e3, 1e5]):
        x = _data(p, kappa, 500, seed=10 * p + i)
        theirs = _scipy_fit(x)
        if theirs is None:
            continue
        loc, kappa_hat = _fit(x)
        torch.testing.assert_close(loc, theirs[0], rtol=0, atol=1e-13)
        # scipy forms 1 - R by subtraction, so its kappa carries a relative error of about
        # eps / (1 - R) ~ 2 kappa eps / (p - 1) (1e-10 at kappa 1e5, p = 2; ours is checked against
        # mpmath to 1e-12 below): the comparison allows for it.
        rtol = 1e-10 + 4 * torch.finfo(F64).eps * theirs[1]
        assert abs(kappa_hat.item() - theirs[1]) <= rtol * theirs[1] + SCIPY_XTOL, (p, kappa, kappa_hat, theirs[1])
        compared += 1
    assert compared >= 4


def test_integer_weights_equal_repeated_points() -> None:
    """Weights 0..3 give the fit of the data with each point repeated that many times (scipy)."""
    x = _data(4, 12.0, 300, seed=1)
    counts = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(2))
    repeated = x.repeat_interleave(counts, dim=0)
    loc, kappa = _fit(x, counts.to(F64))
    mu, kappa_ref = _scipy_fit(repeated)  # type: ignore[misc]
    torch.testing.assert_close(loc, mu, rtol=0, atol=1e-13)
    assert abs(kappa.item() - kappa_ref) <= 1e-10 * kappa_ref + SCIPY_XTOL


def _mp_root(p: int, r: float, one_minus_r: float, kappa: float) -> mp.mpf:
    """Newton in mpmath (40 digits) from ``kappa`` to the root of A_p(k) = R, R = r below 1/2 and
    1 - one_minus_r above (exactly): each step's correction is the error of the previous iterate to
    first order; two steps from 1e-10 reach 1e-20."""
    with mp.workdps(40):
        r = mp.mpf(r) if r < 0.5 else 1 - mp.mpf(one_minus_r)
        v = mp.mpf(p) / 2 - 1
        k = mp.mpf(kappa)
        for _ in range(2):
            a = ref.iv_ratio(v, k)
            k = k - (a - r) / (1 - a * a - (p - 1) * a / k)
        return k


@pytest.mark.parametrize("p", [2, 3, 10, 1000, 65536])
def test_concentration_matches_mpmath(p: int) -> None:
    """Relative error below 1e-12 for R from 1e-8 to 1 - 1e-14 (kappa up to 3e18), where scipy
    returns NaN or fails for most of the grid (its bracket ends at kappa = 1e9)."""
    one_minus_r = [1 - 1e-8, 0.9, 0.5, 0.1, 1e-3, 1e-6, 1e-10, 1e-14]
    omr = torch.tensor(one_minus_r, dtype=F64)
    r = 1.0 - omr  # exact in float64 for 1 - r <= 1/2; below, 1 - r is recomputed from r
    omr = torch.where(r > 0.5, omr, 1.0 - r)
    kappa = concentration_from_resultant(p, r, omr)
    for k, rr, o in zip(kappa.tolist(), r.tolist(), omr.tolist()):
        expected = _mp_root(p, rr, o, k)
        assert abs(k - expected) <= 1e-12 * expected, (p, rr, k, float(expected))


def test_concentration_matches_mpmath_findroot() -> None:
    """A few points solved from scratch by mpmath's findroot (secant from Sra's start, computed in
    mpmath): independent of the code under test."""
    for p, r in [(2, 0.3), (3, 0.9), (7, 0.999), (50, 0.5), (300, 0.99)]:
        with mp.workdps(40):
            rr, v = mp.mpf(r), mp.mpf(p) / 2 - 1
            start = rr * (p - rr**2) / (1 - rr**2)
            expected = mp.findroot(lambda k, v=v, rr=rr: ref.iv_ratio(v, k) - rr, (start, start * 1.01))
        loc, kappa = _fit(_two_points(p, r), validate_args=False)
        assert abs(kappa.item() - float(expected)) <= 1e-11 * float(expected), (p, r)


def _two_points(p: int, r: float) -> torch.Tensor:
    """x = (r, +-s, 0, ...): resultant length exactly r (the fit takes 1 - R from the spread s^2)."""
    s = math.sqrt((1 - r) * (1 + r))
    x = torch.zeros(2, p, dtype=F64)
    x[:, 0] = r
    x[0, 1], x[1, 1] = s, -s
    return x


@given(
    log_p=st.floats(math.log(2), math.log(65536)),
    log_omr=st.floats(-14, math.log10(0.999)),
    small=st.booleans(),
)
def test_fitted_kappa_solves_the_likelihood_equation(log_p: float, log_omr: float, small: bool) -> None:
    """A_p(kappa_hat) = R with the package's own ratio, to relative 1e-13 on the side with digits."""
    p = int(round(math.exp(log_p)))
    value = 10.0**log_omr
    r, omr = (value, 1.0 - value) if small else (1.0 - value, value)
    kappa = concentration_from_resultant(p, torch.tensor([r], dtype=F64), torch.tensor([omr], dtype=F64))
    terms = vmf_terms(p, kappa)
    if r < 0.5:
        assert abs(terms.mean_length.item() - r) <= 1e-13 * r
    else:
        assert abs(terms.one_minus_mean_length.item() - omr) <= 1e-13 * omr


def test_batched_and_weighted_equals_one_by_one() -> None:
    x = torch.stack([torch.stack([_data(5, k, 64, seed=int(k) + j) for k in (2.0, 40.0, 900.0)]) for j in range(2)])
    w = torch.rand(2, 3, 64, dtype=F64, generator=torch.Generator().manual_seed(3))
    loc, kappa = _fit(x, w)
    assert loc.shape == (2, 3, 5) and kappa.shape == (2, 3)
    for j in range(2):
        for i in range(3):
            loc1, kappa1 = _fit(x[j, i], w[j, i])
            torch.testing.assert_close(loc[j, i], loc1, rtol=0, atol=1e-15)
            torch.testing.assert_close(kappa[j, i], kappa1, rtol=1e-14, atol=0)


@pytest.mark.parametrize("p, kappa", [(3, 5.0), (20, 200.0), (3, 1e10), (1000, 1e6)])
def test_recovers_parameters_within_standard_errors(p: int, kappa: float) -> None:
    """Large-sample standard errors: var(kappa_hat) = 1 / (n A_p'(kappa)); the angle between mu_hat
    and mu has E[angle^2] = (p - 1) / (n kappa A_p(kappa))."""
    n = 4000
    x = _data(p, kappa, n, seed=p)
    gen = torch.Generator().manual_seed(p)
    mu = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1)
    loc, kappa_hat = _fit(x)
    k = torch.tensor(kappa, dtype=F64)
    terms = vmf_terms(p, k)
    a, b, b2 = terms.mean_length, terms.one_minus_mean_length, vmf_terms(p + 2, k).one_minus_mean_length
    a_prime = a / k * (1 + k * (b - b2))
    assert abs(kappa_hat.item() - kappa) <= 5 / math.sqrt(n * a_prime.item()) + 2 * kappa / n  # + O(1/n) bias
    angle_sq = ((loc - mu).pow(2).sum()).item()
    assert angle_sq <= 25 * (p - 1) / (n * kappa * a.item()) * 2


def test_float32_matches_float64() -> None:
    x = _data(8, 50.0, 1000, seed=4)
    dist = VonMisesFisher.fit(x.float())
    assert isinstance(dist, VonMisesFisher) and dist.loc.dtype == torch.float32
    loc, kappa = _fit(x)
    torch.testing.assert_close(dist.concentration.double(), kappa, rtol=1e-5, atol=0)
    torch.testing.assert_close(dist.loc.double(), loc, rtol=0, atol=1e-6)


def test_edge_cases() -> None:
    # R = 0: uniform; the direction is undefined and e1 is returned.
    loc, kappa = _fit(torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]], dtype=F64))
    assert kappa.item() == 0.0 and loc.tolist() == [1.0, 0.0, 0.0]
    # Zero weights drop points.
    x = _data(3, 10.0, 10, seed=1)
    w = torch.zeros(10, dtype=F64)
    w[:4] = 1.0
    torch.testing.assert_close(torch.stack(_fit(x, w)[:1]), torch.stack(_fit(x[:4])[:1]))
    # R -> 1 without NaN: 1 - R = 1e-15.
    _, kappa = _fit(_two_points(3, 1 - 2**-50), validate_args=False)
    assert math.isfinite(kappa.item()) and kappa.item() > 1e14


@pytest.mark.parametrize(
    "x, weights, match",
    [
        (torch.ones(5, 3, dtype=F64), None, "unit norm.*0.732.*tolerance"),
        (torch.zeros(0, 3, dtype=F64), None, "n >= 1"),
        (torch.ones(4, 1, dtype=F64), None, "p >= 2"),
        (torch.tensor([[1, 0]]), None, "floating-point"),
        (torch.eye(3, dtype=F64), torch.tensor([1.0, -1.0, 1.0]), "non-negative"),
        (torch.eye(3, dtype=F64), torch.tensor([1.0, math.nan, 1.0]), "finite"),
        (torch.eye(3, dtype=F64), torch.zeros(3), "all zero"),
        (torch.eye(3, dtype=F64), torch.ones(4), "broadcast"),
    ],
)
def test_invalid_input(x: torch.Tensor, weights: torch.Tensor | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _fit(x, weights)


def test_coincident_points_raise_instead_of_an_infinite_concentration() -> None:
    """One point, or identical points, have no finite maximum-likelihood kappa: a ValueError that says
    so, not the constructor's "concentration inf" that the user never passed."""
    x = _data(4, 3.0, 1, seed=0)
    for points in (x, x.expand(3, 4), torch.stack([x[0], x[0]]).float()):
        with pytest.raises(ValueError, match="coincide.*infinite"):
            VonMisesFisher.fit(points)
    batch = torch.stack([_data(4, 3.0, 3, seed=1), x.expand(3, 4)])
    with pytest.raises(ValueError, match=r"batch elements \[\[1\]\]"):
        VonMisesFisher.fit(batch)


def test_half_precision_data_with_a_large_concentration() -> None:
    """kappa about 1e6 does not fit in float16 (its largest value is 65504): the concentration comes
    back in float32, the direction in float16."""
    x = _data(3, 1e6, 2000, seed=5)
    fitted = VonMisesFisher.fit(x.half())
    assert fitted.concentration.dtype == torch.float32 and torch.isfinite(fitted.concentration)
    # float16 rounds each coordinate by up to 2.4e-4, the size of the spread itself: only the order of
    # magnitude can survive.
    assert 1e3 < fitted.concentration.item() < 1e8


@pytest.mark.parametrize("p, kappa", [(2, 0.5), (3, 20.0), (50, 300.0), (1000, 1e5)])
def test_fixed_mean_direction_solves_its_likelihood_equation(p: int, kappa: float) -> None:
    """With mu fixed (scipy's floc), A_p(kappa_hat) = mu^T S / W, checked with mpmath's A_p."""
    x = _data(p, kappa, 300, seed=p)
    gen = torch.Generator().manual_seed(p)
    mu = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1)
    fitted = VonMisesFisher.fit(x, loc=mu)
    assert torch.equal(fitted.loc, mu)
    r = (x @ mu).mean().item()
    k = fitted.concentration.item()
    assert float(ref.iv_ratio(p / 2 - 1, k)) == pytest.approx(r, rel=1e-10)
    # Away from mu the data points the other way: R <= 0 gives the uniform, kappa = 0.
    assert VonMisesFisher.fit(x, loc=-mu).concentration.item() == 0.0


def test_fixed_mean_direction_is_validated_and_broadcast() -> None:
    x = torch.stack([_data(3, 5.0, 50, seed=s) for s in range(2)])
    mu = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    assert VonMisesFisher.fit(x, loc=mu).batch_shape == (2,)
    with pytest.raises(ValueError, match="unit norm"):
        VonMisesFisher.fit(x, loc=2 * mu)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        VonMisesFisher.fit(x, loc=torch.ones(4, dtype=F64) / 2)
