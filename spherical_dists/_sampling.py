"""Drawing von Mises-Fisher samples: backend dispatch and the pure-torch path.

A sample is ``z = w mu + sqrt(1 - w^2) v`` with ``w`` from the marginal sampler (``_marginal``)
and ``v`` a unit vector uniform on the great sphere orthogonal to ``mu``. Two entry points:

* :func:`sample`: ``z`` without gradients, the fast path (in-place, cache-sized row chunks);
* :func:`components`: ``(1 - w, 1 + w, v)``, from which ``VonMisesFisher.rsample`` assembles ``z``
  differentiably, so that every backend gives gradients with the same law.

On CUDA tensors the Triton kernel (``_triton_sampler``) is used when Triton is installed and the
backend is ``"auto"``; :func:`set_sampler_backend` forces the pure-torch path.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import torch
from torch import Tensor

from ._marginal import sample_marginal

__all__ = ["set_sampler_backend", "get_sampler_backend"]

Backend = Literal["auto", "torch"]
_backend: Backend = "auto"

# Rows are processed in chunks of about this many floats, so that the Gaussian buffer and the
# passes over it stay in cache (2-4x faster than streaming a large tensor through memory).
_CHUNK_FLOATS = 1 << 16
# Below this dimension the tangent direction is projected twice: one projection leaves a component
# along mu of eps |g| / |g_perp|, and |g_perp| << |g| is common only when p is small.
_REPROJECT_BELOW = 17
# Gaussian buffers at least this large are filled by several generators in parallel threads.
_PARALLEL_NORMALS = 1 << 17


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

_pool: ThreadPoolExecutor | None = None
_pool_pid = -1
_pool_lock = threading.Lock()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():  # a forked child starts without threads
            _pool = ThreadPoolExecutor(max_workers=torch.get_num_threads(), thread_name_prefix="spherical_dists")
            _pool_pid = os.getpid()
        return _pool


def _fill_normal(out: Tensor, generator: torch.Generator | None) -> None:
    """Standard normal entries into ``out`` (2-D, contiguous).

    torch's CPU generator fills serially; for large buffers on CPU, the rows are split among
    ``torch.get_num_threads()`` generators seeded from ``generator``, filled in parallel threads.
    The split depends only on the shape and the thread count, so a seed gives the same samples.
    """
    serial = torch.compiler.is_compiling() or out.device.type != "cpu" or out.numel() < _PARALLEL_NORMALS
    workers = 1 if serial else torch.get_num_threads()
    if workers < 2:
        torch.randn(out.shape, dtype=out.dtype, device=out.device, generator=generator, out=out)
        return
    seeds = torch.randint(0, 2**62, (workers,), generator=generator).tolist()
    bounds = [round(i * out.shape[0] / workers) for i in range(workers + 1)]

    def fill(i: int) -> None:
        part = out[bounds[i] : bounds[i + 1]]
        torch.randn(part.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seeds[i]), out=part)

    for future in [_thread_pool().submit(fill, i) for i in range(workers)]:
        future.result()


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)


# ---------------------------------------------------------------------------- tangent directions


def _orthonormal_basis_3d(mu: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit vectors spanning the plane orthogonal to each row of ``mu`` (p = 3), branch-free
    and exact at mu = +-e3 (Duff et al. 2017, "Building an orthonormal basis, revisited")."""
    x, y, z = mu.unbind(-1)
    sign = torch.where(z >= 0, 1.0, -1.0).to(mu.dtype)
    a = -1.0 / (sign + z)
    b = x * y * a
    e1 = torch.stack([1.0 + sign * x * x * a, sign * b, -sign * x], dim=-1)
    e2 = torch.stack([b, sign + y * y * a, -y], dim=-1)
    return e1, e2


def _scaled_tangent_into(out: Tensor, mu: Tensor, scale: Tensor, generator: torch.Generator | None) -> None:
    """``out = scale * v`` with v uniform on the unit sphere orthogonal to ``mu`` (rows; p >= 4)."""
    p = mu.shape[-1]
    rows = max(1, _CHUNK_FLOATS // p)
    _fill_normal(out, generator)
    for begin in range(0, out.shape[0], rows):
        g, m = out[begin : begin + rows], mu[begin : begin + rows]
        g.addcmul_(m, (g * m).sum(-1, keepdim=True), value=-1.0)  # project out mu
        if p < _REPROJECT_BELOW:
            g.addcmul_(m, (g * m).sum(-1, keepdim=True), value=-1.0)
        norm = torch.linalg.vector_norm(g, dim=-1, keepdim=True).clamp_min_(torch.finfo(g.dtype).tiny)
        g.mul_(scale[begin : begin + rows].unsqueeze(-1) / norm)


def _tangent(mu: Tensor, generator: torch.Generator | None, scale: Tensor | None = None) -> Tensor:
    """``scale * v`` (``scale`` per row, default 1) for 2-D ``mu``; no gradient."""
    n, p = mu.shape
    if scale is None:
        scale = torch.ones(n, dtype=mu.dtype, device=mu.device)
    if p == 2:  # the orthogonal "sphere" is two points: +-(mu rotated by 90 degrees)
        sign = torch.randint(0, 2, (n,), device=mu.device, generator=generator).to(mu.dtype).mul_(2.0).sub_(1.0)
        return (sign * scale).unsqueeze(-1) * torch.stack([-mu[:, 1], mu[:, 0]], dim=-1)
    if p == 3:  # a uniform angle in an orthonormal basis of the plane
        e1, e2 = _orthonormal_basis_3d(mu)
        angle = _uniform((n,), mu, generator).mul_(2.0 * math.pi)
        return (scale * torch.cos(angle)).unsqueeze(-1) * e1 + (scale * torch.sin(angle)).unsqueeze(-1) * e2
    out = torch.empty_like(mu)
    _scaled_tangent_into(out, mu, scale, generator)
    return out


# ---------------------------------------------------------------------------- entry points


def _marginal(kappa: Tensor, dim: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    return sample_marginal(kappa.to(torch.float64), dim, generator)


def components(mu: Tensor, kappa: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(1 - w, 1 + w, v)`` for rows of ``mu`` (n, p) and ``kappa`` (n,); float64 marginal."""
    if _use_triton(mu):
        from . import _triton_sampler

        return _triton_sampler.components(mu, kappa, generator)
    omw, opw = _marginal(kappa, mu.shape[-1], generator)
    return omw, opw, _tangent(mu, generator)


def sample(mu: Tensor, kappa: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``z`` for rows of ``mu`` (n, p) and ``kappa`` (n,), without gradients."""
    if _use_triton(mu):
        from . import _triton_sampler

        return _triton_sampler.sample(mu, kappa, generator)
    omw, opw = _marginal(kappa, mu.shape[-1], generator)
    w = torch.where(omw <= 1.0, 1.0 - omw, opw - 1.0).to(mu.dtype)
    z = _tangent(mu, generator, scale=torch.sqrt(omw * opw).to(mu.dtype))
    return z.addcmul_(mu, w.unsqueeze(-1))
