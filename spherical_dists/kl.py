r"""KL divergences between the sphere's distributions, registered with torch.

All four pairs of :class:`VonMisesFisher` and :class:`HypersphericalUniform` are registered
exactly, and so are the three closed-form pairs with :class:`PowerSpherical` and the two (equal) pairs
of :class:`SphericalCauchy` and the uniform (at the end), so
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
so it is non-negative by construction and exactly 0 for identical arguments. It is evaluated in
float64 (then cast to the parameters' dtype), and at large concentrations in the equivalent form
:math:`L(\kappa_1) - L(\kappa_2) - (1 - A_p(\kappa_1))(\kappa_1 - \kappa_2)` with
:math:`L = \log C_p + \kappa`, which has no term of size :math:`\kappa`: relative error below
1e-12 (tests/test_kl_entropy.py checks it against mpmath up to :math:`\kappa = 10^{20}`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, register_kl

from ._cancellation import sum_with_smaller_terms
from ._vmf import vmf_terms
from .hyperspherical_uniform import HypersphericalUniform, log_sphere_area
from .power_spherical import PowerSpherical
from .special import vmf_log_normalizer_gap
from .spherical_cauchy import SphericalCauchy
from .von_mises_fisher import VonMisesFisher

__all__: list[str] = []


def _check_same_dim(p: Distribution, q: Distribution) -> int:
    dim_p, dim_q = p.event_shape[0], q.event_shape[0]
    if dim_p != dim_q:
        raise ValueError(
            f"KL divergence between distributions on spheres of different dimensions ({dim_p} and {dim_q})"
        )
    return dim_p


def _broadcast_to(value: Tensor, *dists: Distribution) -> Tensor:
    shape = torch.broadcast_shapes(value.shape, *(d.batch_shape for d in dists))
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
    dtype = torch.promote_types(p.concentration.dtype, q.concentration.dtype)
    # In float64 whatever the dtype: at large kappa the terms are far larger than their sum.
    k1, k2 = p.concentration.to(torch.float64), q.concentration.to(torch.float64)
    t1, t2 = vmf_terms(dim, k1), vmf_terms(dim, k2)
    # The Bregman part log C(k1) - log C(k2) - A1 (k2 - k1), two exact ways: with G = log C(0) - log C,
    # G2 - G1 - A1 (k2 - k1) (relative precision at small kappa, where every term is ~ kappa^2), and
    # with L = log C + kappa and 1 - A1, L1 - L2 - (1 - A1) (k1 - k2) (no term of size kappa, for
    # large kappa); the one whose terms are smaller is used, as in the KL to the uniform.
    bregman = sum_with_smaller_terms(
        (t2.gap, -t1.gap, -t1.mean_length * (k2 - k1)),
        (t1.log_c_plus_kappa, -t2.log_c_plus_kappa, -t1.one_minus_mean_length * (k1 - k2)),
    )
    direction = 0.5 * t1.mean_length * k2 * (p.loc - q.loc).pow(2).sum(-1).to(torch.float64)
    return (bregman + direction).to(dtype)


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
    return _broadcast_to(p._kl_to_uniform().to(p.loc.dtype), q)


@register_kl(HypersphericalUniform, PowerSpherical)
def _kl_uniform_power(p: HypersphericalUniform, q: PowerSpherical) -> Tensor:
    _check_same_dim(p, q)
    return _broadcast_to(q._kl_from_uniform().to(q.loc.dtype), p)


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
    kl_uniform = p._kl_to_uniform()
    terms = vmf_terms(dim, k2)
    rest = sum_with_smaller_terms(
        (terms.gap, -k2 * m1 * (1.0 - half_chord)),
        (
            torch.full_like(k2, -log_sphere_area(dim)),
            -terms.log_c_plus_kappa,
            k2 * ((dim - 1) / (dim - 1 + k1) + m1 * half_chord),
        ),
    )
    return (kl_uniform + rest).to(torch.promote_types(p.loc.dtype, q.loc.dtype))


# ---------------------------------------------------------------------------- SphericalCauchy
# KL(SC || U) = KL(U || SC) = (p - 1) sum_n [1 - (1 - p/2)_n / (p/2)_n] rho^(2n) / n: the image of the
# uniform under the Moebius map turns E_SC[log f] into E_U[-log f] (spherical_cauchy.py evaluates it).


@register_kl(SphericalCauchy, HypersphericalUniform)
def _kl_cauchy_uniform(p: SphericalCauchy, q: HypersphericalUniform) -> Tensor:
    _check_same_dim(p, q)
    return _broadcast_to(p._kl_to_uniform().to(p.loc.dtype), q)


@register_kl(HypersphericalUniform, SphericalCauchy)
def _kl_uniform_cauchy(p: HypersphericalUniform, q: SphericalCauchy) -> Tensor:
    _check_same_dim(p, q)
    return _broadcast_to(q._kl_to_uniform().to(q.loc.dtype), p)
