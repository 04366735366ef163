"""CUDA paths end to end (skipped without a GPU): dispatch to the Triton kernel, no host
synchronisation while sampling, both backends' laws, gradients and torch.compile on the device."""

from __future__ import annotations

import math

import pytest
import torch

from spherical_dists import VonMisesFisher, get_sampler_backend, set_sampler_backend
from spherical_dists.special import vmf_mean_resultant_length

from .conftest import requires_cuda

pytestmark = requires_cuda


@pytest.fixture(params=["auto", "torch"])
def backend(request):  # type: ignore[no-untyped-def]
    previous = get_sampler_backend()
    set_sampler_backend(request.param)
    yield request.param
    set_sampler_backend(previous)


def _dist(n: int, p: int, kappa: float, dtype: torch.dtype = torch.float32) -> VonMisesFisher:
    loc = torch.nn.functional.normalize(torch.randn(n, p, device="cuda", dtype=dtype), dim=-1)
    return VonMisesFisher(loc, torch.full((n,), kappa, device="cuda", dtype=dtype), validate_args=False)


@pytest.mark.parametrize("p", [2, 3, 50, 1024, 4100])
def test_moments_on_cuda(p: int, backend: str) -> None:
    n = 20_000 if p <= 1024 else 2000
    for kappa in (0.0, 10.0, 1e4):
        dist = _dist(n, p, kappa)
        z = dist.sample()
        assert z.device.type == "cuda" and ((z.norm(dim=-1) - 1).abs() < 1e-5).all()
        w = (z.double() * dist.loc.double()).sum(-1)
        expected = float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=torch.float64)))
        assert abs(w.mean().item() - expected) <= 5 * w.std().item() / math.sqrt(n) + 1e-7


def test_sampling_never_synchronises_with_the_host() -> None:
    dist = _dist(4096, 64, 30.0)
    dist.sample()  # warm-up: kernel compilation and coefficient upload
    torch.cuda.set_sync_debug_mode("error")
    try:
        dist.sample()
        dist.rsample()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_gradients_on_cuda(backend: str) -> None:
    n, p, kappa = 50_000, 8, 15.0
    loc = torch.nn.functional.normalize(torch.randn(p, device="cuda", dtype=torch.float64), dim=-1)
    k = torch.full((n,), kappa, device="cuda", dtype=torch.float64, requires_grad=True)
    z = VonMisesFisher(loc, k).rsample()
    (grad,) = torch.autograd.grad((z @ loc).sum(), k)
    a = float(vmf_mean_resultant_length(p, torch.tensor(kappa, dtype=torch.float64)))
    expected = 1 - a * a - (p - 1) * a / kappa
    assert abs(grad.mean().item() - expected) <= 5 * grad.std().item() / math.sqrt(n)


def test_compiled_rsample_on_cuda() -> None:
    dist = _dist(256, 16, 40.0)
    loc = dist.loc.clone().requires_grad_()
    kappa = dist.concentration.clone().requires_grad_()
    draw = torch.compile(lambda mu, k: VonMisesFisher(mu, k, validate_args=False).rsample(), fullgraph=True)
    z = draw(loc, kappa)
    z.sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(kappa.grad).all()
