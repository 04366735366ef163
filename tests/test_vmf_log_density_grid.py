"""The von Mises-Fisher log normaliser, the log density and their derivatives in kappa on a grid
against mpmath (50 digits): p from 2 to 16384, kappa from 1e-8 to 1e6, float32 and float64.

Thresholds, with eps the dtype's machine epsilon and A = A_p(kappa):
* log C_p(kappa): relative 1e-13 (float64) or 8 eps (float32) of max(1, |log C|), plus the rounding of
  kappa itself times the condition number kappa A;
* d/dkappa log C_p = -A: relative 1e-13 (float64) or 4 eps (float32);
* d/dkappa log_prob(z) = mu^T z - A: 8 eps relative to |mu^T z| + A, where mu^T z is that of the
  rounded z (the derivative of the function the tensors define), at every kappa down to 1e-8;
* log_prob(z) = L - kappa h (L = log C + kappa, h = |z - mu|^2 / 2): 1e-13 (float64) or 8 eps (float32)
  of max(1, |L| + kappa h), the rounding of its two terms, at kappa up to 1e6: near the mode both terms
  stay small (no term of size kappa is formed).
"""

from __future__ import annotations

import functools

import mpmath as mp
import pytest
import torch

from spherical_dists import VonMisesFisher
from spherical_dists import testing as ref
from spherical_dists.special import vmf_log_normalizer

DIMS = [2, 3, 4, 10, 100, 1000, 16384]
KAPPAS = [1e-8, 1e-6, 1e-4, 1e-2, 1.0, 10.0, 100.0, 1e4, 1e6]
DTYPES = [torch.float32, torch.float64]

pytestmark = pytest.mark.slow  # the mpmath references take a few seconds


@functools.cache
def _reference(p: int, kappa: float) -> tuple[mp.mpf, mp.mpf]:
    """(log C_p(kappa), A_p(kappa)) at the kappa given (a float64 number)."""
    return ref.vmf_log_normalizer(p, kappa), ref.iv_ratio(mp.mpf(p) / 2 - 1, kappa)


def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", DIMS)
def test_log_normalizer_and_its_derivative(p: int, dtype: torch.dtype) -> None:
    kappa = torch.tensor(KAPPAS, dtype=dtype, requires_grad=True)
    log_c = vmf_log_normalizer(p, kappa)
    (grad,) = torch.autograd.grad(log_c.sum(), kappa)
    rtol = 1e-13 if dtype == torch.float64 else 8 * _eps(dtype)
    for k, value, g in zip(kappa.detach().tolist(), log_c.tolist(), grad.tolist()):
        expected_c, expected_a = _reference(p, k)  # at the kappa the tensor holds
        bound = rtol * max(1.0, abs(float(expected_c)))
        assert abs(value - float(expected_c)) <= bound, (p, k, value, float(expected_c))
        assert abs(g + float(expected_a)) <= (rtol / 2) * float(expected_a), (p, k, g, -float(expected_a))


def _points(p: int, dtype: torch.dtype) -> torch.Tensor:
    """Unit vectors at angles from 1e-4 to pi from e1 (so mu^T z from 1 down to -1, and 0 exactly at e2)."""
    angles = torch.tensor([1e-4, 1e-2, 0.3, 1.0, torch.pi / 2, 2.0, 3.0, torch.pi], dtype=torch.float64)
    z = torch.zeros(len(angles), p, dtype=torch.float64)
    z[:, 0], z[:, 1] = torch.cos(angles), torch.sin(angles)
    z[4] = 0.0
    z[4, 1] = 1.0  # e2 exactly: the derivative is -A, which used to round to 0 as kappa -> 0
    return z.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", DIMS)
def test_log_prob_and_its_kappa_derivative(p: int, dtype: torch.dtype) -> None:
    loc = torch.zeros(p, dtype=dtype)
    loc[0] = 1.0
    z = _points(p, dtype)
    eps = _eps(dtype)
    value_rtol = 1e-13 if dtype == torch.float64 else 8 * eps
    for k in KAPPAS:
        kappa = torch.tensor(k, dtype=dtype, requires_grad=True)
        out = VonMisesFisher(loc, kappa).log_prob(z)
        grads = [torch.autograd.grad(o, kappa, retain_graph=True)[0].item() for o in out]
        k_held = kappa.item()
        expected_c, expected_a = _reference(p, k_held)
        with mp.workdps(50):
            for row, value, g in zip(z.tolist(), out.tolist(), grads):
                cos = mp.mpf(row[0])  # mu^T z for mu = e1, exactly
                half_sq = ((mp.mpf(row[0]) - 1) ** 2 + sum(mp.mpf(c) ** 2 for c in row[1:])) / 2
                expected_grad = cos - expected_a
                scale = abs(cos) + expected_a
                assert abs(g - expected_grad) <= 8 * eps * scale, (p, k_held, row[:2], g, float(expected_grad))
                expected_value = expected_c + mp.mpf(k_held) - mp.mpf(k_held) * half_sq
                terms = abs(expected_c + mp.mpf(k_held)) + mp.mpf(k_held) * half_sq  # |L| + kappa h
                assert abs(value - expected_value) <= value_rtol * max(1, terms), (
                    p,
                    k_held,
                    row[:2],
                    value,
                    float(expected_value),
                )
