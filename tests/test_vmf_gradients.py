"""Gradients of rsample: the implicit reparameterisation against mpmath, and Monte Carlo checks of
unbiasedness for concentration and loc (seeded; tolerances of 5 standard errors)."""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import torch

from spherical_dists import VonMisesFisher
from spherical_dists import testing as ref
from spherical_dists._marginal import kappa_derivative, sample_marginal
from spherical_dists.special import vmf_mean_resultant_length

F64 = torch.float64
Z_BOUND = 5.0


def _reference_dw_dkappa(p: int, kappa: float, one_minus_w: float) -> float:
    """dw/dkappa at fixed CDF value, by mpmath at 30 digits.

    p = 3: differentiate the closed-form quantile w(kappa; u) = 1 + log(u + (1 - u) e^{-2 kappa}) / kappa
    at the u that gives w. Otherwise: -(dF/dkappa)/q(w), which in the angle is
    -sin(theta) int_theta^pi (cos t - A) e^{psi(t) - psi(theta)} dt with
    psi(t) = kappa cos t + (p - 2) log sin t, by tanh-sinh quadrature split around theta.
    """
    with mp.workdps(30):
        pm, k, omw = mp.mpf(p), mp.mpf(kappa), mp.mpf(one_minus_w)
        if p == 3 and kappa > 0:
            u = (mp.exp(-k * omw) - mp.exp(-2 * k)) / (1 - mp.exp(-2 * k))  # F(w)
            return float(mp.diff(lambda kk: 1 + mp.log(u + (1 - u) * mp.exp(-2 * kk)) / kk, k))
        mean = ref.iv_ratio(pm / 2 - 1, k)
        theta = 2 * mp.asin(mp.sqrt(omw / 2))

        def psi(t: mp.mpf) -> mp.mpf:
            return k * mp.cos(t) + (pm - 2) * mp.log(mp.sin(t))

        step = 1 / mp.sqrt(pm + k)
        cuts = [theta + s * step for s in (-64, -16, -4, -1, -0.25, 0.25, 1, 4, 16, 64)]
        points = sorted({mp.mpf(0), theta, mp.pi, *[c for c in cuts if 0 < c < mp.pi]})
        integral = mp.quad(
            lambda t: (mp.cos(t) - mean) * mp.exp(psi(t) - psi(theta)), [c for c in points if c >= theta]
        )
        return float(-mp.sin(theta) * integral)


@pytest.mark.parametrize(
    "p", [2, 3, 4, 10, pytest.param(1000, marks=pytest.mark.slow), pytest.param(65536, marks=pytest.mark.slow)]
)
def test_implicit_derivative_matches_mpmath(p: int) -> None:
    kappas, omws = [], []
    for kappa in (0.0, 1e-3, 1.0, 80.0, 1e3, 1e5):
        omw, _ = sample_marginal(torch.full((2000,), kappa, dtype=F64), p, torch.Generator().manual_seed(p))
        for q in (0.001, 0.1, 0.5, 0.9, 0.999):
            kappas.append(kappa)
            omws.append(float(torch.quantile(omw, q)))
    k, o = torch.tensor(kappas, dtype=F64), torch.tensor(omws, dtype=F64)
    ours = kappa_derivative(k, o, 2.0 - o, p)
    expected = torch.tensor([_reference_dw_dkappa(p, a, b) for a, b in zip(kappas, omws)], dtype=F64)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=0.0)


def _per_sample_kappa_gradients(p: int, kappa: float, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    mu = torch.nn.functional.normalize(torch.randn(p, dtype=F64), dim=-1).to(dtype)
    k = torch.full((n,), kappa, dtype=dtype, requires_grad=True)
    z = VonMisesFisher(mu, k).rsample()
    return z, mu, k  # type: ignore[return-value]


@pytest.mark.parametrize("p", [2, 3, 5, 50, 1000])
@pytest.mark.parametrize("kappa", [0.5, 5.0, 80.0, 1e4])
def test_kappa_gradient_is_unbiased(p: int, kappa: float) -> None:
    """d/dkappa E[mu^T z] = A_p'(kappa) = 1 - A^2 - (p - 1) A / kappa."""
    n = 100_000 if p <= 50 else 20_000
    z, mu, k = _per_sample_kappa_gradients(p, kappa, n, F64 if p <= 50 else torch.float32)
    (grads,) = torch.autograd.grad((z @ mu).sum(), k)
    grads = grads.double()
    a = float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=F64)))
    expected = 1 - a * a - (p - 1) * a / kappa
    se = grads.std().item() / math.sqrt(n)
    assert abs(grads.mean().item() - expected) <= Z_BOUND * se, (grads.mean().item(), expected, se)


@pytest.mark.parametrize("p", [2, 3, 7, 200])
def test_loc_gradient_is_unbiased(p: int) -> None:
    """d/dmu E[a^T z] = A_p(kappa) a, component by component."""
    n, kappa = 50_000, 12.0
    gen = torch.Generator().manual_seed(p)
    a = torch.randn(p, dtype=F64, generator=gen)
    mu = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1)
    loc = mu.expand(n, p).clone().requires_grad_()
    z = VonMisesFisher(loc, torch.tensor(kappa, dtype=F64)).rsample(generator=gen)
    (grads,) = torch.autograd.grad((z @ a).sum(), loc)
    expected = float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=F64))) * a
    se = grads.std(dim=0) / math.sqrt(n)
    assert ((grads.mean(dim=0) - expected).abs() <= Z_BOUND * se + 1e-12).all()


@pytest.mark.parametrize("p, kappa", [(2, 3.0), (3, 0.7), (6, 25.0), (40, 80.0)])
def test_score_function_cross_check(p: int, kappa: float) -> None:
    """For a nonlinear f, the reparameterised gradients agree with the score-function estimates
    E[f(z) (mu^T z - A)] (concentration) and the tangent part of E[f(z) kappa z] (loc)."""
    n = 200_000
    gen = torch.Generator().manual_seed(7 * p)
    mu = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(p, dtype=F64, generator=gen), dim=-1)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.exp(1.5 * (z @ b)) + torch.sin(3.0 * (z @ mu)) ** 2

    loc = mu.expand(n, p).clone().requires_grad_()
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
    z = VonMisesFisher(loc, k).rsample(generator=gen)
    values = f(z)
    grad_loc, grad_k = torch.autograd.grad(values.sum(), (loc, k))
    zd = z.detach()
    a = float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=F64)))
    score_k = values.detach() * (zd @ mu - a)
    tangent = torch.eye(p, dtype=F64) - torch.outer(mu, mu)
    score_loc = (values.detach()[:, None] * kappa * zd) @ tangent
    path_loc = grad_loc @ tangent
    for path, score in ((grad_k[:, None], score_k[:, None]), (path_loc, score_loc)):
        diff = path.mean(dim=0) - score.mean(dim=0)
        se = torch.sqrt(path.var(dim=0) / n + score.var(dim=0) / n)
        assert (diff.abs() <= Z_BOUND * se + 1e-12).all(), diff / se
