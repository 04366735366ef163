"""The Triton sampling kernel: on CUDA when present, otherwise on CPU tensors through Triton's
interpreter (``TRITON_INTERPRET=1``, set by conftest), at small sizes since the interpreter is slow.

The kernel and the pure-torch path use different random streams; the checks are statistical
(seeded, 5 standard errors, goodness-of-fit p-values above 1e-4) plus exact properties
(reproducibility, independence of the launch configuration, unit norm, orthogonality).
"""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

pytest.importorskip("triton")

from spherical_dists import VonMisesFisher, _sampling, _triton_sampler  # noqa: E402
from spherical_dists.special import vmf_mean_resultant_length  # noqa: E402

from .test_vmf_sampling import _chi_square_p_value  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
F64 = torch.float64


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device=DEVICE).manual_seed(seed)


def _rows(n: int, p: int, kappa: float, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mu = torch.nn.functional.normalize(torch.randn(n, p, dtype=F64, generator=gen), dim=-1).to(DEVICE, dtype)
    return mu, torch.full((n,), kappa, dtype=dtype, device=DEVICE)


def _angles(z: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    chord = torch.linalg.vector_norm(z.double() - mu.double(), dim=-1)
    return (2.0 * torch.asin(torch.clamp(chord / 2, max=1.0))).cpu()


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("p", [2, 3, 6, pytest.param(40, marks=pytest.mark.slow)])
def test_kernel_samples_the_von_mises_fisher_law(p: int, dtype: torch.dtype) -> None:
    n = 3000
    eps = torch.finfo(dtype).eps
    for i, kappa in enumerate([0.0, 5.0, 500.0]):
        mu, k = _rows(n, p, kappa, dtype, seed=10 * p + i)
        z = _triton_sampler.sample(mu, k, _generator(i))
        assert z.dtype == dtype and z.shape == (n, p)
        assert ((z.double().norm(dim=-1) - 1).abs() <= 4 * eps).all()
        theta = _angles(z, mu)
        omw = 2 * torch.sin(theta / 2) ** 2
        expected = 1 - float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=F64)))
        se = omw.std().item() / math.sqrt(n)
        assert abs(omw.mean().item() - expected) <= 5 * se, (p, kappa)
        assert _chi_square_p_value(theta, p, kappa, bins=20) > 1e-4, (p, kappa)


@pytest.mark.slow
def test_two_pass_layout_for_large_dimension() -> None:
    p = _triton_sampler.SINGLE_PASS_MAX_P + 52
    n, kappa = 64, 3000.0
    mu, k = _rows(n, p, kappa, torch.float32, seed=1)
    z = _triton_sampler.sample(mu, k, _generator(1))
    assert ((z.double().norm(dim=-1) - 1).abs() <= 8 * torch.finfo(torch.float32).eps).all()
    w = (z.double() * mu.double()).sum(-1).cpu()
    expected = float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=F64)))
    assert abs(w.mean().item() - expected) <= 5 * w.std().item() / math.sqrt(n)
    omw, opw, v = _triton_sampler.components(mu, k, _generator(2))
    assert (v.double() * mu.double()).sum(-1).abs().max() < 1e-5
    assert ((v.double().norm(dim=-1) - 1).abs() < 1e-5).all()


def test_components_are_consistent() -> None:
    mu, k = _rows(500, 7, 30.0, F64, seed=3)
    omw, opw, v = _triton_sampler.components(mu, k, _generator(3))
    assert omw.dtype == F64 and (omw + opw - 2).abs().max() < 1e-14
    assert ((v * mu).sum(-1).abs() < 1e-14).all()
    assert ((v.norm(dim=-1) - 1).abs() < 1e-14).all()


def test_reproducible_and_independent_of_launch_configuration(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    mu, k = _rows(300, 5, 12.0, torch.float32, seed=4)
    first = _triton_sampler.sample(mu, k, _generator(7))
    assert torch.equal(first, _triton_sampler.sample(mu, k, _generator(7)))
    assert not torch.equal(first, _triton_sampler.sample(mu, k, _generator(8)))
    monkeypatch.setattr(_triton_sampler, "_TILE", 64)  # 8 rows per program instead of 256
    _triton_sampler._layout.cache_clear()
    try:
        assert torch.equal(first, _triton_sampler.sample(mu, k, _generator(7)))
    finally:
        _triton_sampler._layout.cache_clear()


@pytest.mark.parametrize("p, kappa", [(3, 2.0), (6, 20.0)])
def test_kernel_and_torch_path_sample_the_same_distribution(p: int, kappa: float) -> None:
    n = 3000
    mu, k = _rows(n, p, kappa, F64, seed=5)
    kernel = _angles(_triton_sampler.sample(mu, k, _generator(5)), mu)
    torch_path = _angles(_sampling.sample(mu.cpu(), k.cpu(), torch.Generator().manual_seed(6)), mu)
    assert scipy.stats.ks_2samp(kernel.numpy(), torch_path.numpy()).pvalue > 1e-4


def test_distribution_draws_through_the_kernel(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """VonMisesFisher's sample and rsample where the kernel serves (CUDA; here CPU tensors through
    the interpreter): sample is the kernel's z, and rsample's kappa-gradient, from the kernel's
    marginal by implicit reparameterisation, has mean dA/dkappa = 1 - A^2 - (p - 1) A / kappa."""
    monkeypatch.setattr(_sampling, "_use_triton", lambda t: True)
    n, p, kappa = 2000, 6, 20.0
    mu, k = _rows(n, p, kappa, F64, seed=9)
    dist = VonMisesFisher(mu, k, validate_args=False)
    assert torch.equal(dist.sample(generator=_generator(9)), _triton_sampler.sample(mu, k, _generator(9)))
    loc, concentration = mu.clone().requires_grad_(), k.clone().requires_grad_()
    z = VonMisesFisher(loc, concentration, validate_args=False).rsample(generator=_generator(10))
    omw, opw, v = _triton_sampler.components(mu, k, _generator(10))
    w, s = _sampling.w_and_s(omw, opw, F64)
    torch.testing.assert_close(z.detach(), w[:, None] * mu + s[:, None] * v)  # the kernel's draw
    grad_loc, grad_kappa = torch.autograd.grad((z * mu).sum(), (loc, concentration))
    assert torch.isfinite(grad_loc).all()
    a = float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=F64)))
    expected = 1 - a * a - (p - 1) * a / kappa
    assert abs(grad_kappa.mean().item() - expected) <= 5 * grad_kappa.std().item() / math.sqrt(n)
