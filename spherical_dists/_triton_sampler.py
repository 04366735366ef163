"""Triton kernel drawing von Mises-Fisher samples on CUDA in one launch, with no host synchronisation.

Each program owns ``BLOCK_R`` rows. Per row it runs Wood's rejection sampler (the same
cancellation-free float64 arithmetic as ``_marginal``) until a proposal is accepted, at most
``MAX_PROPOSALS`` times (a row that rejects all 40, probability below 3e-19, keeps its last
proposal; the pure-torch path keeps another rejected one: either is a bias below 3e-19), then
draws the tangent direction: a Gaussian projected onto the plane orthogonal to mu and normalised,
written once. p = 3 uses the exact inverse CDF; p = 2 the arcsine proposal and
the rotated mu as tangent.

Random numbers come from Philox-4x32-10 (``tl.philox``) with the counter (c0, c1, c2) =
(iteration or column, row, stream) under a key drawn from torch's generator on the device. The
stream of every row and column is fixed by that counter, so the samples do not depend on the
launch configuration (block sizes, number of warps), and the same ``torch.manual_seed`` or
``generator`` state gives the same samples. The Gaussians use Box-Muller on 32-bit uniforms
(tails beyond 6.6 sigma, probability 3e-11, are not produced), like cuRAND's.

For p up to ``SINGLE_PASS_MAX_P`` a row lives in registers (mu read once, z written once: the
traffic of a copy). Above it, two passes over column chunks: the first accumulates mu.g and |g|^2,
the second regenerates the same Gaussians from their counters and writes z.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # optional dependency: the pure-torch path is used instead
    triton = None
    tl = None

SINGLE_PASS_MAX_P = 2048
MAX_PROPOSALS = 40
_TILE = 2048  # elements per program in single-pass mode
_STREAM_MARGINAL = 0
_STREAM_NORMAL = 1


def available() -> bool:
    """Whether the kernel can run here (Triton installed and a CUDA device present)."""
    return triton is not None and torch.cuda.is_available()


if triton is not None:

    @triton.jit
    def _uniform64(a, b):
        """53-bit uniform in (0, 1) from two uint32."""
        bits = (a.to(tl.uint64) << 21) ^ (b.to(tl.uint64) >> 11)
        return (bits.to(tl.float64) + 0.5) * 1.1102230246251565e-16

    @triton.jit
    def _uniform32(a):
        """Uniform in (0, 1) from a uint32, as float64 (never 0 or 1)."""
        return (a.to(tl.float64) + 0.5) * 2.3283064365386963e-10

    @triton.jit
    def _log1p(x):
        """log(1 + x) to a few ulps without a library log1p (Goldberg's trick)."""
        u = 1.0 + x
        return tl.where(u == 1.0, x, tl.log(u) * (x / tl.where(u == 1.0, 2.0, u - 1.0)))

    @triton.jit
    def _expm1(x):
        """exp(x) - 1 to a few ulps without a library expm1 (Kahan's trick)."""
        u = tl.exp(x)
        ratio = (u - 1.0) * (x / tl.log(tl.where((u == 1.0) | (u == 0.0), 2.0, u)))
        return tl.where(u == 1.0, x, tl.where(u == 0.0, -1.0, ratio))

    @triton.jit
    def _normal(seed, rows, cols, OUT_F64: tl.constexpr):
        """Standard normals for the (rows x cols) tile: Box-Muller on Philox output."""
        zero = tl.zeros([rows.shape[0], cols.shape[0]], dtype=tl.uint32)
        x0, x1, _, _ = tl.philox(
            seed, zero + cols[None, :].to(tl.uint32), zero + rows[:, None].to(tl.uint32), zero + 1, zero
        )
        if OUT_F64:
            u1 = _uniform32(x0)
            u2 = _uniform32(x1)
            return tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.283185307179586 * u2)
        u1 = (x0.to(tl.float32) + 0.5) * 2.3283064365386963e-10
        u2 = x1.to(tl.float32) * 2.3283064365386963e-10
        return tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.283185307179586 * u2)

    @triton.jit
    def _marginal(seed, rows, kappa, d, DIM_CASE: tl.constexpr, MAX_ITER: tl.constexpr):
        """(1 - w, 1 + w) per row in float64; DIM_CASE 2, 3, or 0 for p >= 4."""
        zero = tl.zeros_like(rows).to(tl.uint32)
        if DIM_CASE == 3:
            x0, x1, _, _ = tl.philox(seed, zero, rows.to(tl.uint32), zero, zero)
            u = _uniform64(x0, x1)
            k = tl.where(kappa > 0, kappa, 1.0)
            omw = -_log1p((1.0 - u) * _expm1(-2.0 * k)) / k
            kc = tl.minimum(k, 300.0)
            opw = tl.where(k < 300.0, _log1p(u * _expm1(2.0 * kc)) / k, 2.0 - omw)
            right = omw <= 1.0  # each formula is accurate below 1; the other side is 2 minus it
            omw_c = tl.where(right, omw, 2.0 - opw)
            opw = tl.where(right, 2.0 - omw, opw)
            omw = tl.where(kappa > 0, omw_c, 2.0 * (1.0 - u))
            opw = tl.where(kappa > 0, opw, 2.0 * u)
            return omw, opw
        b = d / (2.0 * kappa + tl.sqrt(4.0 * kappa * kappa + d * d))
        omx0 = 2.0 * b / (1.0 + b)
        opx0 = 2.0 / (1.0 + b)
        x0 = (1.0 - b) / (1.0 + b)
        log_envelope = tl.log(omx0 * opx0)
        omw = tl.zeros_like(kappa)
        opw = tl.zeros_like(kappa)
        done = kappa != kappa  # all False
        it = 0
        while (it < MAX_ITER) & (tl.sum((done == 0).to(tl.int32), axis=0) > 0):
            r0, r1, r2, r3 = tl.philox(seed, zero + it, rows.to(tl.uint32), zero, zero)
            if DIM_CASE == 2:  # Beta(1/2, 1/2)
                angle = 1.5707963267948966 * _uniform64(r0, r1)
                e = tl.sin(angle) * tl.sin(angle)
                one_minus_e = tl.cos(angle) * tl.cos(angle)
            else:  # Ulrich's construction of Beta(d/2, d/2)
                t = tl.exp(tl.log(_uniform64(r0, r1)) / (0.5 * d - 0.5))
                rho = tl.sqrt(1.0 - t)
                half_one_minus_rho = 0.5 * t / (1.0 + rho)
                angle = 3.141592653589793 * _uniform32(r2)
                e = half_one_minus_rho + rho * tl.cos(angle) * tl.cos(angle)
                one_minus_e = half_one_minus_rho + rho * tl.sin(angle) * tl.sin(angle)
            denominator = one_minus_e + b * e
            prop_omw = 2.0 * b * e / denominator
            prop_opw = 2.0 * one_minus_e / denominator
            log_ratio = kappa * (omx0 - prop_omw) + d * (tl.log(omx0 + x0 * prop_omw) - log_envelope)
            accepted = log_ratio >= tl.log(_uniform32(r3))
            take = (accepted | (it == MAX_ITER - 1)) & (done == 0)
            omw = tl.where(take, prop_omw, omw)
            opw = tl.where(take, prop_opw, opw)
            done = done | accepted
            it += 1
        return omw, opw

    @triton.jit
    def _vmf_kernel(
        loc_ptr, kappa_ptr, seed_ptr, out_ptr, omw_ptr, opw_ptr,
        n, p, loc_stride, out_stride,
        BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr, SINGLE_PASS: tl.constexpr, WRITE_Z: tl.constexpr,
        DIM_CASE: tl.constexpr, REPROJECT: tl.constexpr, OUT_F64: tl.constexpr, MAX_ITER: tl.constexpr,
    ):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        row_ok = rows < n
        rows64 = rows.to(tl.int64)
        seed = tl.load(seed_ptr)
        kappa = tl.load(kappa_ptr + rows64, mask=row_ok, other=0.0).to(tl.float64)
        omw, opw = _marginal(seed, rows, kappa, p - 1.0, DIM_CASE, MAX_ITER)
        w = tl.where(omw <= 1.0, 1.0 - omw, opw - 1.0)
        s = tl.sqrt(omw * opw)
        compute = tl.float64 if OUT_F64 else tl.float32
        w_c = w.to(compute)
        s_c = s.to(compute)
        if not WRITE_Z:
            tl.store(omw_ptr + rows64, omw, mask=row_ok)
            tl.store(opw_ptr + rows64, opw, mask=row_ok)
            w_c = w_c * 0.0  # the kernel then writes v = (z - w mu) / s
            s_c = s_c * 0.0 + 1.0
        if SINGLE_PASS:
            cols = tl.arange(0, BLOCK_P)
            mask = row_ok[:, None] & (cols < p)[None, :]
            loc_offsets = rows64[:, None] * loc_stride + cols[None, :]
            out_offsets = rows64[:, None] * out_stride + cols[None, :]
            if DIM_CASE == 2:  # tangent = sign * (-mu_1, mu_0)
                swapped = tl.load(loc_ptr + rows64[:, None] * loc_stride + (1 - cols)[None, :], mask=mask, other=0.0)
                mu = tl.load(loc_ptr + loc_offsets, mask=mask, other=0.0).to(compute)
                zero = tl.zeros_like(rows).to(tl.uint32)
                bit, _, _, _ = tl.philox(seed, zero, rows.to(tl.uint32), zero + 2, zero)
                sign = tl.where((bit & 1) == 1, 1.0, -1.0).to(compute)
                rot = tl.where(cols[None, :] == 0, -1.0, 1.0).to(compute) * swapped.to(compute)
                z = w_c[:, None] * mu + (s_c * sign)[:, None] * rot
            else:
                mu = tl.load(loc_ptr + loc_offsets, mask=mask, other=0.0).to(compute)
                g = tl.where(
                    mask,
                    _normal(seed, rows, cols, OUT_F64),
                    0.0,
                )
                g = g - tl.sum(g * mu, axis=1)[:, None] * mu
                if REPROJECT:
                    g = g - tl.sum(g * mu, axis=1)[:, None] * mu
                norm = tl.sqrt(tl.sum(g * g, axis=1))
                z = w_c[:, None] * mu + (s_c / norm)[:, None] * g
            tl.store(out_ptr + out_offsets, z.to(out_ptr.dtype.element_ty), mask=mask)
        else:  # two passes over column chunks; p is large, so |g|^2 - (mu.g)^2 does not cancel
            dot = tl.zeros([BLOCK_R], dtype=tl.float64)
            square = tl.zeros([BLOCK_R], dtype=tl.float64)
            for start in range(0, p, BLOCK_P):
                cols = start + tl.arange(0, BLOCK_P)
                mask = row_ok[:, None] & (cols < p)[None, :]
                mu = tl.load(loc_ptr + rows64[:, None] * loc_stride + cols[None, :], mask=mask, other=0.0).to(compute)
                g = tl.where(
                    mask,
                    _normal(seed, rows, cols, OUT_F64),
                    0.0,
                )
                dot += tl.sum(g * mu, axis=1).to(tl.float64)
                square += tl.sum(g * g, axis=1).to(tl.float64)
            scale = (s / tl.sqrt(square - dot * dot)).to(compute)
            if not WRITE_Z:
                scale = (1.0 / tl.sqrt(square - dot * dot)).to(compute)
            dot_c = dot.to(compute)
            for start in range(0, p, BLOCK_P):
                cols = start + tl.arange(0, BLOCK_P)
                mask = row_ok[:, None] & (cols < p)[None, :]
                mu = tl.load(loc_ptr + rows64[:, None] * loc_stride + cols[None, :], mask=mask, other=0.0).to(compute)
                g = _normal(seed, rows, cols, OUT_F64)
                z = w_c[:, None] * mu + scale[:, None] * (g - dot_c[:, None] * mu)
                tl.store(
                    out_ptr + rows64[:, None] * out_stride + cols[None, :], z.to(out_ptr.dtype.element_ty), mask=mask
                )


@functools.cache
def _layout(p: int) -> tuple[int, int, bool]:
    """(BLOCK_R, BLOCK_P, single_pass) for dimension p."""
    if p <= SINGLE_PASS_MAX_P:
        block_p = triton.next_power_of_2(p)
        return max(1, _TILE // block_p), block_p, True
    return 1, SINGLE_PASS_MAX_P, False


def _launch(
    mu: Tensor, kappa: Tensor, generator: torch.Generator | None, write_z: bool
) -> tuple[Tensor, Tensor, Tensor]:
    if triton is None:
        raise RuntimeError("the Triton sampler needs the optional dependency triton")
    mu = mu.contiguous()
    n, p = mu.shape
    kappa = kappa.to(device=mu.device, dtype=torch.float64).contiguous()
    out = torch.empty_like(mu)
    omw = torch.empty(n if not write_z else 1, dtype=torch.float64, device=mu.device)
    opw = torch.empty_like(omw)
    # The key is drawn on the device (no host synchronisation) and read by the kernel.
    seed = torch.randint(0, 2**62, (1,), dtype=torch.int64, device=mu.device, generator=generator)
    block_r, block_p, single_pass = _layout(p)
    if n:
        _vmf_kernel[(triton.cdiv(n, block_r),)](
            mu, kappa, seed, out, omw, opw, n, p, mu.stride(0), out.stride(0),
            BLOCK_R=block_r, BLOCK_P=block_p, SINGLE_PASS=single_pass, WRITE_Z=write_z,
            DIM_CASE=p if p in (2, 3) else 0, REPROJECT=p < 17, OUT_F64=mu.dtype == torch.float64,
            MAX_ITER=MAX_PROPOSALS,
        )  # fmt: skip
    return out, omw, opw


def sample(mu: Tensor, kappa: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``z`` for rows of ``mu`` (n, p), float32 or float64, and ``kappa`` (n,)."""
    return _launch(mu, kappa, generator, write_z=True)[0]


def components(mu: Tensor, kappa: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(1 - w, 1 + w, v)``: the marginal in float64 and the unit tangent directions."""
    v, omw, opw = _launch(mu, kappa, generator, write_z=False)
    return omw, opw, v
