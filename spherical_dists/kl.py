r"""KL divergences between the sphere's distributions, registered with torch.

All four pairs of :class:`VonMisesFisher` and :class:`HypersphericalUniform` are registered
exactly, and so are the three closed-form pairs with :class:`PowerSpherical` (at the end), so
:func:`torch.distributions.kl_divergence` dispatches without ambiguity warnings. With
:math:`G(\kappa) = \log C_p(0) - \log C_p(\kappa) \ge 0` (computed
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

from . import power_spherical as _power_spherical
from .hyperspherical_uniform import HypersphericalUniform, log_sphere_area
from .power_spherical import PowerSpherical
from .special import _vmf_terms, vmf_log_normalizer_gap, vmf_mean_resultant_length
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


# ---------------------------------------------------------------------------- PowerSpherical
#
# With beta = (p - 1)/2, alpha = beta + kappa and (1 + mu^T z)/2 ~ Beta(alpha, beta) under the power
# spherical, Beta(beta, beta) under the uniform:
#
#   KL(PS || U)   = log C + log |S^{p-1}| + kappa E_PS[log(1 + mu^T z)]
#   KL(U || PS)   = -log |S^{p-1}| - log C - kappa E_U[log(1 + mu^T z)]
#   KL(PS || vMF) = -H(PS) - log C_vMF(k2) - k2 mu2^T E_PS[z],  E_PS[z] = kappa / (p - 1 + kappa) mu1,
#
# all closed forms (the first two to full relative precision near kappa = 0, see power_spherical).
# KL(vMF || PS) and KL(PS || PS) need E[log(1 + mu2^T z)] under a law centred on mu1,
# which has no closed form unless mu1 = mu2: they are left unregistered (NotImplementedError).


@register_kl(PowerSpherical, HypersphericalUniform)
def _kl_power_uniform(p: PowerSpherical, q: HypersphericalUniform) -> Tensor:
    _check_same_dim(p, q)
    return _broadcast_to(p._kl_to_uniform(), q)


@register_kl(HypersphericalUniform, PowerSpherical)
def _kl_uniform_power(p: HypersphericalUniform, q: PowerSpherical) -> Tensor:
    dim = _check_same_dim(p, q)
    kl = _power_spherical._kl_uniform_power(dim, q.concentration.to(torch.float64)).to(q.loc.dtype)
    return _broadcast_to(kl, p)


@register_kl(PowerSpherical, VonMisesFisher)
def _kl_power_vmf(p: PowerSpherical, q: VonMisesFisher) -> Tensor:
    r"""Two exact forms, with :math:`m_1 = \kappa_1 / (p - 1 + \kappa_1)` and
    :math:`\mu_2^\top\mu_1 = 1 - \lVert \mu_1 - \mu_2 \rVert^2 / 2`:
    :math:`\mathrm{KL}(PS \| U) + G(\kappa_2) - \kappa_2 m_1 \mu_2^\top\mu_1` (exact near 0, where it is
    of order :math:`\kappa^2`) and :math:`\mathrm{KL}(PS \| U) - \log|S^{p-1}| - (\log C_{vMF}(\kappa_2) + \kappa_2)
    + \kappa_2 ((p - 1)/(p - 1 + \kappa_1) + m_1 \lVert \mu_1 - \mu_2 \rVert^2 / 2)` (no term of order
    :math:`\kappa` at large concentrations); the one whose terms are smaller is used."""
    dim = _check_same_dim(p, q)
    k1 = p.concentration.to(torch.float64)
    k2 = q.concentration.to(torch.float64)
    m1 = k1 / (dim - 1 + k1)
    half_chord = 0.5 * (p.loc.to(torch.float64) - q.loc.to(torch.float64)).pow(2).sum(-1)
    kl_uniform = _power_spherical._kl_power_uniform(dim, k1)
    terms = _vmf_terms(dim, k2)
    small_terms = (terms.gap, -k2 * m1 * (1.0 - half_chord))
    large_terms = (
        torch.full_like(k2, -log_sphere_area(dim)),
        -terms.log_c_plus_kappa,
        k2 * ((dim - 1) / (dim - 1 + k1) + m1 * half_chord),
    )
    small = kl_uniform + sum(small_terms)
    large = kl_uniform + sum(large_terms)
    use_small = (sum(t.abs() for t in small_terms) <= sum(t.abs() for t in large_terms)).detach()
    return torch.where(use_small, small, large).to(torch.promote_types(p.loc.dtype, q.loc.dtype))
