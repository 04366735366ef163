"""Special functions against mpmath at 50 digits, closed forms and identities.

Error measure: ``|value - reference| <= rtol * max(|reference|, 1) + 2 eps cond`` where
``cond = |x df/dx|`` (or ``|kappa df/dkappa|``). The second term is the change that a 2-ulp
perturbation of the input causes; it only matters next to the zero crossings of log I_v and
log C_p at large order, where no float64 evaluation can do better than the rounding of x allows.
Everywhere else the bound is the plain mixed relative/absolute error.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spherical_dists import _bessel
from spherical_dists import testing as ref
from spherical_dists.special import (
    iv_ratio,
    log_iv,
    log_ive,
    vmf_log_normalizer,
    vmf_log_normalizer_gap,
    vmf_mean_resultant_length,
)

from .conftest import DEVICES, requires_cuda

F64 = torch.float64
EPS64 = float(torch.finfo(F64).eps)
RTOL64 = 1e-13
RTOL32 = 1e-6


def _rows() -> list[dict[str, float]]:
    path = Path(__file__).parent / "data" / "special_reference.csv"
    with path.open() as f:
        return [{k: float(val) for k, val in row.items()} for row in csv.DictReader(f)]


ROWS = _rows()
V = torch.tensor([r["v"] for r in ROWS], dtype=F64)
X = torch.tensor([r["x"] for r in ROWS], dtype=F64)
REF_LOG_IV = torch.tensor([r["log_iv"] for r in ROWS], dtype=F64)
REF_F = torch.tensor([r["log_iv_minus_v_log_x"] for r in ROWS], dtype=F64)
REF_RATIO = torch.tensor([r["iv_ratio"] for r in ROWS], dtype=F64)


def assert_mixed_close(
    value: torch.Tensor, reference: torch.Tensor, rtol: float, cond: torch.Tensor | float = 0.0, eps: float = EPS64
) -> None:
    value = value.detach().to(F64).cpu()
    reference = reference.to(F64)
    both_inf = torch.isinf(reference) & (value == reference)
    err = torch.where(both_inf, 0.0, (value - reference).abs())
    bound = rtol * reference.abs().clamp(min=1.0) + 2 * eps * torch.as_tensor(cond, dtype=F64).abs()
    bad = ~(err <= bound)
    assert not bad.any(), (
        f"{int(bad.sum())} of {bad.numel()} outside tolerance; worst relative error "
        f"{(err / reference.abs().clamp(min=1.0))[bad].max():.3e}"
    )


# ---------------------------------------------------------------- the reference table (extremes)


@pytest.mark.parametrize("device", DEVICES)
def test_table_float64(device: str) -> None:
    v, x = V.to(device), X.to(device)
    cond_f = X * REF_RATIO  # x dF/dx
    assert_mixed_close(log_iv(v, x), REF_LOG_IV, RTOL64, cond=cond_f + V)
    assert_mixed_close(log_ive(v, x), REF_LOG_IV - X, RTOL64, cond=cond_f + V + X)
    assert_mixed_close(iv_ratio(v, x), REF_RATIO, RTOL64)
    dim = 2 * (V + 1)
    ref_log_c = -(V + 1) * math.log(2 * math.pi) - REF_F
    assert_mixed_close(vmf_log_normalizer(dim.to(device), x), ref_log_c, RTOL64, cond=cond_f)
    assert_mixed_close(vmf_mean_resultant_length(dim.to(device), x), REF_RATIO, RTOL64)


def test_table_float32() -> None:
    # Reference at the float32-rounded arguments would differ from the table, so only rows
    # whose arguments are exact in float32 are used.
    exact = (X.float().double() == X) & (V.float().double() == V)
    v, x = V[exact].float(), X[exact].float()
    eps32 = float(torch.finfo(torch.float32).eps)
    cond = X[exact] * REF_RATIO[exact] + V[exact]
    for out in (log_iv(v, x), iv_ratio(v, x)):
        assert out.dtype == torch.float32
    assert_mixed_close(log_iv(v, x), REF_LOG_IV[exact], RTOL32, cond=cond, eps=eps32)
    assert_mixed_close(iv_ratio(v, x), REF_RATIO[exact], RTOL32, eps=eps32)


def test_both_dispatch_strategies_agree() -> None:
    """The CPU gathered path and the masked path (CUDA, torch.compile) use the same formulas."""
    every = frozenset(_bessel.QUANTITIES)
    gathered = _bessel._gathered(V, X.clamp(max=1e300), every)
    masked = _bessel._masked(V, X.clamp(max=1e300), every)
    assert set(gathered) == set(masked) == every
    for k in every:
        torch.testing.assert_close(gathered[k], masked[k], rtol=4 * EPS64, atol=0.0, equal_nan=True)


def test_threaded_chunks_match_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks spread over worker threads give bit-identical results to one thread, and the
    gradient mode of the caller is respected (the workers run without autograd)."""
    monkeypatch.setattr(_bessel, "_CHUNK", 64)  # many chunks from a small input
    gen = torch.Generator().manual_seed(3)
    v = torch.exp(torch.rand(5000, generator=gen, dtype=torch.float64) * 11.5) - 1.0
    x = torch.exp(torch.rand(5000, generator=gen, dtype=torch.float64) * 20.0 - 3.0).requires_grad_()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = log_iv(v, x)
        torch.set_num_threads(2)
        threaded = log_iv(v, x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(serial, threaded)
    (grad,) = torch.autograd.grad(threaded.sum(), x)
    torch.testing.assert_close(grad, iv_ratio(v, x.detach()) + v / x.detach(), rtol=1e-13, atol=0.0)


# ---------------------------------------------------------------- hypothesis against mpmath

orders = st.one_of(st.just(0.0), st.floats(-3, 5).map(lambda e: 10.0**e))
arguments = st.one_of(st.just(0.0), st.floats(-300, 4).map(lambda e: 10.0**e))


@given(v=orders, x=arguments)
def test_log_iv_and_ratio_match_mpmath(v: float, x: float) -> None:
    ref_log = ref.log_iv(v, x)
    ref_ratio = ref.iv_ratio(v, x)
    value = log_iv(torch.tensor(v, dtype=F64), torch.tensor(x, dtype=F64))
    cond = x * float(ref_ratio) + v
    assert_mixed_close(value, torch.tensor(float(ref_log), dtype=F64), RTOL64, cond=cond)
    assert_mixed_close(iv_ratio(v, torch.tensor(x, dtype=F64)), torch.tensor(float(ref_ratio), dtype=F64), RTOL64)


@given(v=orders, x=arguments)
def test_float32_within_a_few_ulps(v: float, x: float) -> None:
    v32, x32 = np.float32(v), np.float32(x)
    ref_log = float(ref.log_iv(float(v32), float(x32)))
    ref_ratio = float(ref.iv_ratio(float(v32), float(x32)))
    eps32 = float(torch.finfo(torch.float32).eps)
    value = log_iv(torch.tensor(v32), torch.tensor(x32))
    assert value.dtype == torch.float32
    assert_mixed_close(
        value, torch.tensor(ref_log, dtype=F64), RTOL32, cond=float(x32) * ref_ratio + float(v32), eps=eps32
    )
    assert_mixed_close(
        iv_ratio(torch.tensor(v32), torch.tensor(x32)), torch.tensor(ref_ratio, dtype=F64), RTOL32, eps=eps32
    )


@given(dim=st.integers(2, 100_000), kappa=arguments)
def test_vmf_log_normalizer_matches_mpmath(dim: int, kappa: float) -> None:
    reference = float(ref.vmf_log_normalizer(dim, kappa))
    ratio = float(ref.iv_ratio(dim / 2 - 1, kappa))
    value = vmf_log_normalizer(dim, torch.tensor(kappa, dtype=F64))
    assert_mixed_close(value, torch.tensor(reference, dtype=F64), RTOL64, cond=kappa * ratio)


@given(v=orders, x=st.floats(-6, 4).map(lambda e: 10.0**e))
def test_first_and_second_derivative_match_closed_form(v: float, x: float) -> None:
    """d/dx log I_v = A + v/x and d2/dx2 log I_v = 1 - A^2 - (2v+1) A/x - v/x^2, A from mpmath."""
    a = ref.iv_ratio(v, x)
    vm, xm = mp.mpf(v), mp.mpf(x)
    first = a + vm / xm
    second = 1 - a * a - (2 * vm + 1) * a / xm - vm / xm**2
    xt = torch.tensor(x, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(log_iv(v, xt), xt, create_graph=True)
    (h,) = torch.autograd.grad(g, xt)
    assert_mixed_close(g, torch.tensor(float(first), dtype=F64), 1e-12)
    # 1 - A^2 - ... cancels for large x; allow the condition of that expression.
    scale = float(1 + a * a + (2 * vm + 1) * a / xm + vm / xm**2)
    assert_mixed_close(h, torch.tensor(float(second), dtype=F64), 1e-12, cond=scale * 50)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("fn", [log_iv, log_ive, iv_ratio])
def test_gradcheck_and_gradgradcheck(fn) -> None:  # type: ignore[no-untyped-def]
    v = torch.tensor([0.0, 0.3, 1.0, 4.5, 19.5, 20.0, 37.0, 300.0, 5e3], dtype=F64)
    for x0 in (1e-4, 0.3, 0.999, 1.001, 7.0, 25.0, 400.0, 1e5):
        x = torch.full_like(v, x0, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x: fn(v, x), (x,))
        assert torch.autograd.gradgradcheck(lambda x: fn(v, x), (x,))


def test_log_normalizer_derivatives() -> None:
    """d/dkappa log C_p = -A_p and d2/dkappa2 log C_p = -A_p' with A_p' = 1 - A^2 - (p-1) A / kappa."""
    kappa = torch.tensor([0.0, 1e-200, 1e-8, 0.5, 3.0, 80.0, 1e4, 1e7], dtype=F64, requires_grad=True)
    for dim in (2, 3, 5, 50, 1000, 65536):
        log_c = vmf_log_normalizer(dim, kappa)
        (g,) = torch.autograd.grad(log_c.sum(), kappa, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), kappa)
        refs = [ref.iv_ratio(dim / 2 - 1, float(k)) for k in kappa.detach()]
        a = torch.tensor([float(r) for r in refs], dtype=F64)
        a_prime = torch.tensor(
            [
                float(1 - r * r - (dim - 1) * r / mp.mpf(float(k))) if k > 0 else 1.0 / dim
                for r, k in zip(refs, kappa.detach())
            ],
            dtype=F64,
        )
        assert_mixed_close(g, -a, 1e-13)
        assert_mixed_close(h, -a_prime, 1e-10)


def test_no_nan_anywhere_in_the_domain() -> None:
    v = torch.cat([torch.zeros(1), torch.logspace(-3, 5.5, 40)]).double()
    x = torch.cat([torch.zeros(1), torch.logspace(-300, 300, 121)]).double()
    vv, xx = torch.meshgrid(v, x, indexing="ij")
    for dtype in (torch.float32, F64):
        xg = xx.to(dtype).clone().requires_grad_(True)
        vg = vv.to(dtype)
        outputs = {
            "log_iv": log_iv(vg, xg),
            "log_ive": log_ive(vg, xg),
            "ratio": iv_ratio(vg, xg),
            "log_c": vmf_log_normalizer(2 * (vg + 1), xg),
        }
        for name, out in outputs.items():
            assert not out.isnan().any(), name
            (g,) = torch.autograd.grad(out.sum(), xg)
            assert not g.isnan().any(), name
        # Only log I_v(0) for v > 0 is infinite among finite arguments.
        expected_inf = (xg.detach() == 0) & (vg > 0)
        finite_x = torch.isfinite(xg.detach())
        assert torch.equal(torch.isinf(outputs["log_iv"]) & finite_x, expected_inf)
        assert torch.isfinite(outputs["log_c"][finite_x]).all()
        assert torch.isfinite(outputs["ratio"]).all()


def test_special_values() -> None:
    inf, nan = math.inf, math.nan
    x = torch.tensor([0.0, inf, -1.0, nan], dtype=F64)
    assert log_iv(0.0, x)[:2].tolist() == [0.0, inf]
    assert log_iv(2.0, x)[:2].tolist() == [-inf, inf]
    assert iv_ratio(3.0, x)[:2].tolist() == [0.0, 1.0]
    assert log_iv(1.0, x)[2:].isnan().all()
    assert log_iv(-1.0, torch.tensor(2.0)).isnan()


def test_order_is_not_differentiable() -> None:
    with pytest.raises(ValueError, match="order v"):
        log_iv(torch.tensor(1.0, requires_grad=True), torch.tensor(1.0))


def test_half_precision_computes_in_float32() -> None:
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.tensor([0.5, 3.0, 60.0], dtype=dtype)
        out = log_iv(2.0, x)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, log_iv(2.0, x.float()))


def test_broadcasting() -> None:
    v = torch.tensor([[0.0], [1.5], [30.0]], dtype=F64)
    x = torch.tensor([0.5, 2.0, 50.0, 1e3], dtype=F64)
    out = log_iv(v, x)
    assert out.shape == (3, 4)
    torch.testing.assert_close(out[1, 2], log_iv(1.5, torch.tensor(50.0, dtype=F64)), rtol=0, atol=0)


# ---------------------------------------------------------------- identities and closed forms


@given(v=st.floats(1, 1000), x=st.floats(-2, 3).map(lambda e: 10.0**e))
def test_recurrence(v: float, x: float) -> None:
    """I_{v-1} - I_{v+1} = (2v/x) I_v, i.e. 1/A_{v-1} - A_v = 2v/x."""
    lhs = 1.0 / iv_ratio(v - 1.0, torch.tensor(x, dtype=F64)) - iv_ratio(v, torch.tensor(x, dtype=F64))
    torch.testing.assert_close(lhs, torch.tensor(2 * v / x, dtype=F64), rtol=1e-12, atol=0.0)


@given(v=st.one_of(st.just(0.0), st.floats(-3, 5).map(lambda e: 10.0**e)), x=st.floats(-8, 7).map(lambda e: 10.0**e))
def test_amos_bounds(v: float, x: float) -> None:
    """Amos (1974): x/(v+1+sqrt(x^2+(v+1)^2)) and x/(v+1/2+sqrt(x^2+(v+3/2)^2)) bound A from
    below; x/(v+1/2+sqrt(x^2+(v+1/2)^2)) and x/(v+sqrt(x^2+(v+2)^2)) from above."""
    a = float(iv_ratio(v, torch.tensor(x, dtype=F64)))
    slack = 1 + 1e-14
    lower = max(x / (v + 1 + math.hypot(x, v + 1)), x / (v + 0.5 + math.hypot(x, v + 1.5)))
    upper = min(x / (v + 0.5 + math.hypot(x, v + 0.5)), x / (v + math.hypot(x, v + 2)))
    assert lower <= a * slack and a <= upper * slack


def test_ratio_monotone_and_tends_to_one() -> None:
    kappa = torch.logspace(-10, 12, 400, dtype=F64)
    for dim in (2, 3, 10, 1000, 65536):
        a = vmf_mean_resultant_length(dim, kappa)
        assert (a.diff() >= 0).all(), dim
        # 1 - A_p(kappa) = (p - 1) / (2 kappa) + O(kappa^-2); forming 1 - A costs eps / (1 - A)
        big = (kappa > 1e5 * dim) & ((dim - 1) / (2 * kappa) > 1e-9)
        torch.testing.assert_close(
            (1 - a[big]) * 2 * kappa[big] / (dim - 1), torch.ones_like(a[big]), rtol=1e-3, atol=0
        )
    assert vmf_mean_resultant_length(7, torch.tensor(math.inf)).item() == 1.0
    orders = torch.linspace(0, 100, 201, dtype=F64)
    assert (iv_ratio(orders, torch.tensor(13.0, dtype=F64)).diff() < 0).all()


@pytest.mark.parametrize("dim", [2, 3, 4, 7, 50, 1024, 65536, 100_000])
def test_log_normalizer_at_zero_is_uniform(dim: int) -> None:
    value = vmf_log_normalizer(dim, torch.zeros((), dtype=F64))
    assert_mixed_close(value, torch.tensor(-float(ref.log_sphere_area(dim)), dtype=F64), RTOL64)


def test_closed_forms_half_integer_orders() -> None:
    """p = 3: C_3(k) = k / (4 pi sinh k); I_{1/2}(x) = sqrt(2/(pi x)) sinh x."""
    kappa = torch.tensor([1e-6, 0.3, 2.0, 40.0, 700.0], dtype=F64)
    expected = torch.log(kappa) - math.log(4 * math.pi) - (kappa + torch.log(-torch.expm1(-2 * kappa)) - math.log(2))
    torch.testing.assert_close(vmf_log_normalizer(3, kappa), expected, rtol=1e-14, atol=1e-14)
    expected_i = 0.5 * torch.log(2 / (math.pi * kappa)) + kappa + torch.log(-torch.expm1(-2 * kappa)) - math.log(2)
    torch.testing.assert_close(log_iv(0.5, kappa), expected_i, rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------------- transforms


def test_vmap_grad_and_compile() -> None:
    kappa = torch.rand(6, dtype=F64) * 20
    per_sample = torch.func.vmap(torch.func.grad(lambda k: vmf_log_normalizer(10, k)))(kappa)
    torch.testing.assert_close(per_sample, -vmf_mean_resultant_length(10, kappa))
    compiled = torch.compile(lambda k: vmf_log_normalizer(10, k), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(kappa), vmf_log_normalizer(10, kappa), rtol=4 * EPS64, atol=0)


@requires_cuda
def test_cuda_matches_cpu() -> None:
    out_cpu = log_iv(V, X)
    out_cuda = log_iv(V.cuda(), X.cuda())
    assert out_cuda.device.type == "cuda"
    torch.testing.assert_close(out_cuda.cpu(), out_cpu, rtol=1e-14, atol=1e-14, equal_nan=True)


def test_tensor_dimension_below_two_raises_like_an_int() -> None:
    """vmf_log_normalizer(torch.tensor(1), 1.0) returned NaN where vmf_log_normalizer(1, 1.0) raises."""
    for fn in (vmf_log_normalizer, vmf_mean_resultant_length, vmf_log_normalizer_gap):
        for dim in (1, torch.tensor(1), torch.tensor([3, 1])):
            with pytest.raises(ValueError, match="dim must be >= 2"):
                fn(dim, 1.0)
    np = pytest.importorskip("numpy")
    torch.testing.assert_close(vmf_log_normalizer(np.int64(3), 1.0), vmf_log_normalizer(3, 1.0))
