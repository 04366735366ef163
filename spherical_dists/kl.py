r"""KL divergences between the sphere's distributions, registered with torch.

All four pairs are registered exactly, so :func:`torch.distributions.kl_divergence` dispatches
without ambiguity warnings. With :math:`G(\kappa) = \log C_p(0) - \log C_p(\kappa) \ge 0` (computed
to full relative precision near :math:`\kappa = 0`, where the KL behaves as :math:`\kappa^2/(2p)`):

.. math::

    \mathrm{KL}(\mathrm{vMF}(\mu, \kappa) \,\|\, U) &= \kappa A_p(\kappa) - G(\kappa), \\
    \mathrm{KL}(U \,\|\, \mathrm{vMF}(\mu, \kappa)) &= G(\kappa), \\
    \mathrm{KL}(\mathrm{vMF}(\mu_1, \kappa_1) \,\|\, \mathrm{vMF}(\mu_2, \kappa_2))
        &= G(\kappa_2) - G(\kappa_1) - A_p(\kappa_1)(\kappa_2 - \kappa_1)
           + \tfrac{1}{2} A_p(\kappa_1)\, \kappa_2 \lVert \mu_1 - \mu_2 \rVert^2, \\
    \mathrm{KL}(U \,\|\, U) &= 0.

The vMF-vMF form is the Bregman divergence of the convex :math:`G` plus a term that vanishes
with :math:`\mu_1 - \mu_2` (using :math:`1 - \mu_1^\top\mu_2 = \lVert \mu_1 - \mu_2 \rVert^2 / 2`),
so it is non-negative by construction and exactly 0 for identical arguments.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import register_kl

from .hyperspherical_uniform import HypersphericalUniform
from .special import vmf_log_normalizer_gap, vmf_mean_resultant_length
from .von_mises_fisher import VonMisesFisher

__all__: list[str] = []


def _check_same_dim(p: VonMisesFisher | HypersphericalUniform, q: VonMisesFisher | HypersphericalUniform) -> int:
    dim_p, dim_q = p.event_shape[0], q.event_shape[0]
    if dim_p != dim_q:
        raise ValueError(
            f"KL divergence between distributions on spheres of different dimensions ({dim_p} and {dim_q})"
        )
    return dim_p


def _broadcast_to(value: Tensor, *dists: object) -> Tensor:
    shape = torch.broadcast_shapes(value.shape, *(d.batch_shape for d in dists))  # type: ignore[attr-defined]
    return value.expand(shape)


@register_kl(VonMisesFisher, HypersphericalUniform)
def _kl_vmf_uniform(p: VonMisesFisher, q: HypersphericalUniform) -> Tensor:
    _check_same_dim(p, q)
    return _broadcast_to(p._kl_to_uniform(), q)


@register_kl(HypersphericalUniform, VonMisesFisher)
def _kl_uniform_vmf(p: HypersphericalUniform, q: VonMisesFisher) -> Tensor:
    dim = _check_same_dim(p, q)
    return _broadcast_to(vmf_log_normalizer_gap(dim, q.concentration), p)


@register_kl(VonMisesFisher, VonMisesFisher)
def _kl_vmf_vmf(p: VonMisesFisher, q: VonMisesFisher) -> Tensor:
    dim = _check_same_dim(p, q)
    k1, k2 = p.concentration, q.concentration
    a1 = vmf_mean_resultant_length(dim, k1)
    bregman = vmf_log_normalizer_gap(dim, k2) - vmf_log_normalizer_gap(dim, k1) - a1 * (k2 - k1)
    direction = 0.5 * a1 * k2 * (p.loc - q.loc).pow(2).sum(-1)
    return bregman + direction


@register_kl(HypersphericalUniform, HypersphericalUniform)
def _kl_uniform_uniform(p: HypersphericalUniform, q: HypersphericalUniform) -> Tensor:
    _check_same_dim(p, q)
    shape = torch.broadcast_shapes(p.batch_shape, q.batch_shape)
    return torch.zeros(shape, dtype=p._dtype, device=p._device)
