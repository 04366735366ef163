"""Drawing samples ``z = w mu + sqrt(1 - w^2) v`` of the distributions on the sphere: backend
dispatch and the pure-torch path.

``w`` is the marginal (each distribution's own, as ``(1 - w, 1 + w)``) and ``v`` a unit vector
uniform on the great sphere orthogonal to ``mu``; every special case of p = 2 and p = 3 (no
Gaussians needed) is here. Entry points:

* :func:`tangent_directions`: ``v`` alone;
* :func:`components`: ``(1 - w, 1 + w, v)`` with the marginal drawn while the Gaussians of ``v``
  are filled, from which ``DirectionalDistribution.rsample`` assembles ``z`` differentiably;
* :func:`w_and_s`: ``(1 - w, 1 + w) -> (w, sqrt(1 - w^2))``, for every assembly;
* :func:`sample`: the von Mises-Fisher ``z`` without gradients, the fast path (in place,
  cache-sized row chunks), and :func:`triton_components`, its ``(1 - w, 1 + w, v)`` on CUDA.

On CUDA tensors the von Mises-Fisher sampler is the Triton kernel (``_triton_sampler``) when
Triton is installed and the backend is ``"auto"``; :func:`set_sampler_backend` forces the
pure-torch path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from ._marginal import _select, sample_marginal
from ._threads import thread_pool

__all__ = ["set_sampler_backend", "get_sampler_backend"]

Backend = Literal["auto", "torch"]
_backend: Backend = "auto"

# Rows are processed in chunks of about this many floats, so that the Gaussian buffer and the
# passes over it stay in cache (2-4x faster than streaming a large tensor through memory).
_CHUNK_FLOATS = 1 << 16
# Below this dimension the tangent direction is projected twice: one projection leaves a component
# along mu of eps |g| / |g_perp|, and |g_perp| << |g| is common only when p is small.
_REPROJECT_BELOW = 17
# Gaussian buffers at least this large are filled by the worker threads, in blocks of whole rows of
# about _NORMAL_BLOCK floats each: large enough that a block's own generator costs little beside
# its fill (1.5% in serial, measured at p = 1000), small enough to share among threads.
_PARALLEL_NORMALS = 1 << 17
_NORMAL_BLOCK = 1 << 17
# torch splits a reduction with a single output of at least this many elements
# (at::internal::GRAIN_SIZE) among its threads, in an order that depends on the thread count; with
# several outputs, each one is reduced whole by one thread.
_TORCH_GRAIN = 1 << 15


def set_sampler_backend(backend: Backend) -> None:
    """Choose how von Mises-Fisher samples are drawn on CUDA.

    ``"auto"`` (the default) uses the Triton kernel for CUDA tensors when Triton is installed and
    the pure-torch path otherwise; ``"torch"`` always uses the pure-torch path. Both draw from the
    same distribution and give gradients with the same law; their random streams differ.
    """
    if backend not in ("auto", "torch"):
        raise ValueError(f"backend must be 'auto' or 'torch', got {backend!r}")
    global _backend
    _backend = backend


def get_sampler_backend() -> Backend:
    """The backend chosen with :func:`set_sampler_backend`."""
    return _backend


def _use_triton(t: Tensor) -> bool:
    if _backend != "auto" or t.device.type != "cuda":
        return False
    from . import _triton_sampler

    return _triton_sampler.available()


# ---------------------------------------------------------------------------- random numbers


def _start_normal_fill(out: Tensor, generator: torch.Generator | None) -> Callable[[], None]:
    """Begin filling ``out`` (2-D, contiguous) with standard normals; call the result to wait.

    torch's CPU generator fills serially. For large buffers on CPU the rows are cut into blocks of
    about ``_NORMAL_BLOCK`` floats, each filled from its own generator seeded from ``generator``,
    by the worker threads while the caller goes on (with the marginal sampler, which draws from
    ``generator`` after the seeds were taken). The blocks and their seeds depend only on the
    shape, never on the thread count or the timing, so a seed gives the same samples on any
    machine.
    """
    if torch.compiler.is_compiling() or out.device.type != "cpu" or out.numel() < _PARALLEL_NORMALS:
        out.normal_(generator=generator)  # not randn(out=): that fails under dynamic shapes in torch.compile
        return lambda: None
    rows = max(1, _NORMAL_BLOCK // out.shape[1])
    starts = range(0, out.shape[0], rows)
    blocks = list(zip(starts, torch.randint(0, 2**62, (len(starts),), generator=generator).tolist()))

    def fill(share: list[tuple[int, int]]) -> None:
        for begin, seed in share:
            out[begin : begin + rows].normal_(generator=torch.Generator().manual_seed(seed))

    threads = torch.get_num_threads()
    if threads < 2:
        fill(blocks)
        return lambda: None
    # One task per thread over every threads-th block: a task per block was 4-7% slower (p = 1000).
    futures = [thread_pool().submit(fill, blocks[i::threads]) for i in range(threads)]

    def wait() -> None:
        for future in futures:
            future.result()

    return wait


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    # In-place fills: torch.rand(size, generator=...) fails on symbolic sizes under torch.compile.
    return torch.empty(shape, dtype=like.dtype, device=like.device).uniform_(generator=generator)


# ---------------------------------------------------------------------------- row reductions


def _reduce_rows(reduce: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``reduce(x)``, a sum or a norm over the last dimension of the 2-D ``x`` (keepdim), the same
    at any thread count: a single long row is reduced as two halves and its odd element, whose
    results are reduced in turn."""
    if x.shape[0] > 1 or x.numel() < _TORCH_GRAIN:
        return reduce(x)
    half = x.shape[1] // 2
    parts = (reduce(x[:, : 2 * half].reshape(2, half)).reshape(1, 2), reduce(x[:, 2 * half :]))
    return reduce(torch.cat(parts, dim=-1))


def row_sums(x: Tensor) -> Tensor:
    """``x.sum(-1, keepdim=True)`` for 2-D ``x``, the same at any thread count."""
    return _reduce_rows(lambda t: t.sum(-1, keepdim=True), x)


def row_norms(x: Tensor) -> Tensor:
    """``torch.linalg.vector_norm(x, dim=-1, keepdim=True)`` for 2-D ``x``, the same at any thread count."""
    return _reduce_rows(lambda t: torch.linalg.vector_norm(t, dim=-1, keepdim=True), x)


# ---------------------------------------------------------------------------- tangent directions


def _finish_tangent(g: Tensor, mu: Tensor, scale: Tensor) -> None:
    """In place: Gaussian rows ``g`` -> ``scale * v``, v uniform on the unit sphere orthogonal to
    ``mu`` (p >= 4), chunk by chunk so that each chunk stays in cache."""
    p = mu.shape[-1]
    rows = max(1, _CHUNK_FLOATS // p)
    for begin in range(0, g.shape[0], rows):
        gc, m = g[begin : begin + rows], mu[begin : begin + rows]
        gc.addcmul_(m, row_sums(gc * m), value=-1.0)  # project out mu
        if p < _REPROJECT_BELOW:
            gc.addcmul_(m, row_sums(gc * m), value=-1.0)
        norm = row_norms(gc).clamp_min_(torch.finfo(gc.dtype).tiny)
        gc.mul_(scale[begin : begin + rows].unsqueeze(-1) / norm)


def _tangent_2d(mu: Tensor, generator: torch.Generator | None) -> Tensor:
    """p = 2: the orthogonal "sphere" is two points, +-(mu rotated by 90 degrees)."""
    sign = (_uniform((mu.shape[0],), mu, generator) >= 0.5).to(mu.dtype).mul_(2.0).sub_(1.0)
    return sign.unsqueeze(-1) * torch.stack([-mu[:, 1], mu[:, 0]], dim=-1)


def _assemble_3d(mu: Tensor, w: Tensor, s: Tensor, generator: torch.Generator | None) -> Tensor:
    """p = 3: ``w mu + s (cos(phi) e1 + sin(phi) e2)`` with phi uniform and (e1, e2) the
    orthonormal basis of mu's plane of Duff et al. (2017), branch-free and exact at mu = +-e3:
    e1 = (1 + sign x^2 a, sign b, -sign x), e2 = (b, sign + y^2 a, -y) with sign = sign(z),
    a = -1 / (sign + z), b = x y a. Written column by column on 1-D tensors, which is several
    times faster than operations on (n, 3) rows."""
    x, y, z = mu.unbind(-1)
    sign = 2.0 * (z >= 0).to(mu.dtype) - 1.0
    a = -1.0 / (sign + z)
    b = x * y * a
    phi = _uniform((mu.shape[0],), mu, generator).mul_(2.0 * math.pi)
    c, d = s * torch.cos(phi), s * torch.sin(phi)
    sign_c = sign * c
    columns = (
        w * x + c + sign_c * (x * x * a) + d * b,
        w * y + sign_c * b + d * (sign + y * y * a),
        w * z - sign_c * x - d * y,
    )
    return torch.stack(columns, dim=-1)


def _low_dimension(mu: Tensor, w: Tensor, s: Tensor, generator: torch.Generator | None) -> Tensor:
    """``w mu + s v`` for p = 2 and p = 3, where ``v`` takes one uniform per row and no Gaussians."""
    if mu.shape[-1] == 2:
        return _tangent_2d(mu, generator).mul_(s.unsqueeze(-1)).addcmul_(mu, w.unsqueeze(-1))
    return _assemble_3d(mu, w, s, generator)


# ---------------------------------------------------------------------------- entry points

Marginal = Callable[[], tuple[Tensor, Tensor]]


def w_and_s(omw: Tensor, opw: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(1 - w, 1 + w) -> (w, s = sqrt(1 - w^2))`` in ``dtype``: w from the smaller of the two,
    which keeps its digits near either pole."""
    upper = (omw <= 1.0).to(omw.dtype)
    return _select(upper, 1.0 - omw, opw - 1.0).to(dtype), torch.sqrt(omw * opw).to(dtype)


def tangent_directions(mu: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Unit vectors ``v`` uniform on the great sphere orthogonal to each row of ``mu`` (n, p), no
    gradient; the tangent part of any rotationally symmetric law about ``mu`` (pure torch)."""
    n, p = mu.shape
    if p <= 3:
        zeros = torch.zeros(n, dtype=mu.dtype, device=mu.device)
        return _low_dimension(mu, zeros, torch.ones_like(zeros), generator)
    v = torch.empty_like(mu)
    _start_normal_fill(v, generator)()
    _finish_tangent(v, mu, torch.ones(n, dtype=mu.dtype, device=mu.device))
    return v


def components(
    mu: Tensor, marginal: Marginal, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(*marginal(), v)`` for rows of ``mu`` (n, p), ``v`` as from :func:`tangent_directions`.
    For p >= 4 the Gaussians of ``v`` are drawn first (their seeds, for a large buffer), so that
    their fill runs in the worker threads while ``marginal`` draws from ``generator``."""
    n, p = mu.shape
    if p <= 3:
        omw, opw = marginal()
        return omw, opw, tangent_directions(mu, generator)
    v = torch.empty_like(mu)
    wait = _start_normal_fill(v, generator)
    omw, opw = marginal()
    wait()
    _finish_tangent(v, mu, torch.ones(n, dtype=mu.dtype, device=mu.device))
    return omw, opw, v


def triton_components(
    mu: Tensor, kappa: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor] | None:
    """The von Mises-Fisher ``(1 - w, 1 + w, v)`` (float64 marginal, no gradient) drawn by the
    Triton kernel in one launch where it serves (see :func:`set_sampler_backend`); None elsewhere."""
    if not _use_triton(mu):
        return None
    from . import _triton_sampler

    return _triton_sampler.components(mu, kappa, generator)


def sample(mu: Tensor, kappa: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The von Mises-Fisher ``z`` for rows of ``mu`` (n, p) and ``kappa`` (n,), without gradients."""
    if _use_triton(mu):
        from . import _triton_sampler

        return _triton_sampler.sample(mu, kappa, generator)
    p = mu.shape[-1]
    kappa = kappa.to(mu.dtype)  # p = 3's exact inverse CDF runs in this dtype; other p in float64
    if p <= 3:
        return _low_dimension(mu, *w_and_s(*sample_marginal(kappa, p, generator), mu.dtype), generator)
    z = torch.empty_like(mu)
    wait = _start_normal_fill(z, generator)  # runs while the marginal is drawn
    w, s = w_and_s(*sample_marginal(kappa, p, generator), mu.dtype)
    wait()
    _finish_tangent(z, mu, s)
    return z.addcmul_(mu, w.unsqueeze(-1))
