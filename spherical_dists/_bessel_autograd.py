r"""The Bessel core (``_bessel``) as a differentiable torch function, shared by the public special
functions (``special``) and the von Mises-Fisher quantities (``_vmf``).

:func:`evaluate` broadcasts its inputs to float64, evaluates the quantities asked for in one pass
of the core and returns them with exact derivatives in ``x`` to any order: the backward of each
quantity is a closed form in the ratio ``A = I_{v+1} / I_v``, itself an output of this function.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ._bessel import log_bessel_parts

__all__ = ["Evaluation", "evaluate"]


def _times(grad: Tensor, derivative: Tensor) -> Tensor:
    """``grad * derivative`` where a zero upstream gradient contributes zero even if the
    derivative is infinite (x = 0 with v > 0), so unselected branches never inject NaN."""
    return torch.where(grad == 0, torch.zeros_like(grad), grad * derivative)


class _LogBessel(torch.autograd.Function):
    """The quantities of ``_bessel.QUANTITIES`` named in ``want``, in that order, in float64:
    F = log I_v(x) - v log x, E = log I_v(x) - x, A = I_{v+1}(x) / I_v(x), G = F(v, x) - F(v, 0),
    B = 1 - A and log I_v(x).

    dF/dx = dG/dx = A, dE/dx = A + v/x - 1, d log I_v / dx = A + v/x and dA/dx = -dB/dx =
    1 - A^2 - (2v + 1) A / x. The backward uses the saved output A (the caller asks for it when
    x requires grad), so differentiating it again re-enters this function: every order is exact.
    """

    @staticmethod
    def forward(v: Tensor, x: Tensor, want: tuple[str, ...]) -> tuple[Tensor, ...]:
        parts = log_bessel_parts(v, x, want)
        return tuple(parts[k] for k in want)

    @staticmethod
    def setup_context(ctx, inputs, output):
        v, x, want = inputs
        ctx.want = want
        ctx.save_for_backward(v, x, output[want.index("a")] if "a" in want else None)
        ctx.set_materialize_grads(False)

    @staticmethod
    def vmap(info, in_dims, v, x, want):
        # Elementwise: put the batch dimension first on both inputs and evaluate plain tensors.
        v, x = (
            t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape)
            for t, d in zip((v, x), in_dims[:2])
        )
        v, x = torch.broadcast_tensors(v, x)
        return _LogBessel.apply(v, x, want), (0,) * len(want)

    @staticmethod
    def backward(ctx, *grads):
        v, x, a = ctx.saved_tensors
        if a is None:
            raise RuntimeError("internal error: the Bessel ratio was not computed for the backward pass")
        zero_order = v == 0
        v_over_x = torch.where(zero_order, 0.0, v / torch.where(zero_order, 1.0, x))  # inf at x = 0 < v
        # A/x tends to 1/(2v + 2); below 1e-150 the limit is exact to within x^2.
        tiny = x > 1e-150
        a_over_x = torch.where(tiny, a / torch.where(tiny, x, torch.ones_like(x)), 0.5 / (v + 1.0))

        def a_prime() -> Tensor:
            return 1.0 - a * a - (2.0 * v + 1.0) * a_over_x

        derivatives = {  # computed only for the outputs that receive a gradient
            "f": lambda: a,
            "g": lambda: a,
            "e": lambda: a + v_over_x - 1.0,
            "log_iv": lambda: a + v_over_x,
            "a": a_prime,
            "b": lambda: -a_prime(),
        }
        present = [_times(g, derivatives[k]()) for k, g in zip(ctx.want, grads) if g is not None]
        return None, (sum(present[1:], present[0]) if present else None), None


def _prepare(v: Tensor | float, x: Tensor | float) -> tuple[Tensor, Tensor, torch.dtype]:
    """Broadcast to float64 tensors; return the dtype the caller gets back.

    The output dtype is the promoted floating dtype of the tensor inputs (Python numbers do not
    take part, as in torch), except that float16 and bfloat16 come back as float32 (their range
    cannot hold log I_v for most arguments) and integer or Python-only inputs give the default
    dtype. Python numbers are converted straight to float64, never through float32.
    """
    if isinstance(v, Tensor) and v.requires_grad:
        raise ValueError("the order v (or dimension p) is not differentiable; pass it without requires_grad")
    tensors = [t for t in (v, x) if isinstance(t, Tensor)]
    device = tensors[0].device if tensors else None
    dtype = torch.get_default_dtype()
    if tensors:
        promoted = tensors[0].dtype
        for t in tensors[1:]:
            promoted = torch.promote_types(promoted, t.dtype)
        if promoted.is_floating_point:
            dtype = torch.float32 if promoted in (torch.float16, torch.bfloat16) else promoted
    vt, xt = (torch.as_tensor(t, dtype=torch.float64, device=device) for t in (v, x))
    vt, xt = torch.broadcast_tensors(vt, xt)
    return vt, xt, dtype


class Evaluation(NamedTuple):
    v: Tensor  # the order, float64, broadcast
    x: Tensor  # the argument, float64, broadcast
    values: dict[str, Tensor]  # the quantities asked for, float64
    dtype: torch.dtype  # what the caller gets back


def evaluate(v: Tensor | float, x: Tensor | float, *want: str) -> Evaluation:
    """Evaluate the quantities ``want`` (names from ``_bessel.QUANTITIES``), and the ratio A
    as well when x will be differentiated (the backward needs it)."""
    vt, xt, dtype = _prepare(v, x)
    if torch.is_grad_enabled() and xt.requires_grad and "a" not in want:
        want = (*want, "a")
    return Evaluation(vt, xt, dict(zip(want, _LogBessel.apply(vt, xt, want))), dtype)
