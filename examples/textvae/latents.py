r"""Latent variables of a text VAE: the posterior head, the prior and the KL between them.

Each latent maps an encoder feature vector ``h`` (shape ``(B, in_features)``) to a posterior
``q(z | x)`` over ``z`` in ``R^dim`` and supplies the matching prior and KL, so that a model changes
latent by changing one constructor argument (see :func:`make_latent`).

* ``gaussian``: :math:`q = N(\mu(h), \mathrm{diag}\,\sigma(h)^2)`, prior :math:`N(0, I)` (Miao et al. 2016).
* ``vmf``: :math:`q = \mathrm{vMF}(\mu(h), \kappa)` on the unit sphere :math:`S^{dim-1}` with a fixed
  concentration, prior uniform on the sphere (Xu & Durrett 2018). The KL is then a constant in the data,
  :math:`\kappa A_p(\kappa) + \log C_p(\kappa) + \log|S^{p-1}|`, so the posterior cannot collapse.
* ``vmf`` with ``learn_kappa``: :math:`\kappa(h) = \mathrm{softplus}(w^\top h + b)` per example, started at
  the configured value. The KL then depends on the data again and collapse becomes possible.
* ``none``: no latent variable (``z`` is empty, the KL is 0), so that a plain language model is trained and
  evaluated by the same code as the VAEs: its ELBO and importance-weighted bounds are its exact NLL.

The von Mises-Fisher distribution, its sampler and its KL come from :mod:`spherical_dists`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from spherical_dists import HypersphericalUniform, VonMisesFisher
from spherical_dists.special import vmf_log_normalizer, vmf_mean_resultant_length

from .config import POSITIVE, ConfigError, Settings, at_least, setting

LATENT_KINDS = ("gaussian", "vmf", "none")


@dataclass(frozen=True)
class LatentSettings(Settings):
    """The latent variable's settings, shared by the models' sections (each may set other defaults)."""

    latent: str = setting("vmf", "the latent variable")
    latent_dim: int = setting(50, "dimension of z (the ambient dimension for vmf)", at_least(2))
    kappa: float = setting(100.0, "vMF concentration: fixed, or the start with --learn-kappa", POSITIVE)
    learn_kappa: bool = setting(False, "predict kappa per example instead of fixing it (vmf only)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.learn_kappa and self.latent != "vmf":
            raise ConfigError(f"--learn-kappa needs --latent vmf, got --latent {self.latent}")


class Latent(nn.Module, ABC):
    """A posterior head with its prior. ``dim`` is the dimension of ``z`` (the ambient dimension ``p`` for a
    spherical latent); ``prior_variance``, the variance of one coordinate of ``z`` under the prior, sets the
    scale of the active-units threshold (:func:`textvae.evaluation.active_units`)."""

    dim: int
    prior_variance: float
    min_dim = 2

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        if dim < self.min_dim:
            raise ValueError(f"latent dimension must be at least {self.min_dim}, got {dim}")
        self.in_features = in_features
        self.dim = dim

    @abstractmethod
    def forward(self, h: Tensor) -> Distribution:
        """The posterior ``q(z | x)`` given encoder features ``h`` of shape ``(B, in_features)``;
        its batch shape is ``(B,)`` and its event shape ``(dim,)``."""

    @abstractmethod
    def prior(self, dtype: torch.dtype, device: torch.device) -> Distribution:
        """The prior ``p(z)`` with event shape ``(dim,)``."""

    @abstractmethod
    def mean(self, q: Distribution) -> Tensor:
        """``E_q[z]``, shape ``(B, dim)``."""

    @abstractmethod
    def kl(self, q: Distribution) -> Tensor:
        """``KL(q(z|x) || p(z))`` per example, shape ``(B,)``, exact (no sampling)."""

    def stats(self, q: Distribution) -> dict[str, float]:
        """Scalars worth logging about a batch of posteriors (e.g. the mean concentration)."""
        return {}

    def pairwise_log_prob(self, q: Distribution, z: Tensor) -> Tensor:
        """``log q_j(z_i)`` for every sample ``z_i`` (``z`` of shape ``(N, dim)``) under every posterior
        ``q_j`` of the batch: float64, shape ``(N, B)``. Subclasses with a closed form replace this
        broadcast with one matrix product (the mutual-information estimate needs ``D x D`` of them)."""
        return q.log_prob(z.unsqueeze(1)).double()


class GaussianLatent(Latent):
    """Diagonal Gaussian posterior ``N(mu(h), diag sigma(h)^2)`` and standard normal prior.

    ``log sigma`` starts at exactly 0 (zero weights and bias, as in Miao's NVDM), so that early training is
    not disturbed by huge or tiny variances.
    """

    prior_variance = 1.0

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__(in_features, dim)
        self.loc = nn.Linear(in_features, dim)
        self.log_scale = nn.Linear(in_features, dim)
        nn.init.zeros_(self.log_scale.weight)
        nn.init.zeros_(self.log_scale.bias)

    def forward(self, h: Tensor) -> Distribution:
        # Unvalidated, like the vMF's below: a diverging model's parameters overflow, and the trainer's
        # non-finite-loss stop, not a constraint error inside the forward pass, should report it.
        return Independent(Normal(self.loc(h), self.log_scale(h).exp(), validate_args=False), 1)

    def prior(self, dtype: torch.dtype, device: torch.device) -> Distribution:
        zeros = torch.zeros(self.dim, dtype=dtype, device=device)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def mean(self, q: Distribution) -> Tensor:
        return q.mean

    def kl(self, q: Distribution) -> Tensor:
        loc = q.mean
        return kl_divergence(q, self.prior(loc.dtype, loc.device))

    def pairwise_log_prob(self, q: Distribution, z: Tensor) -> Tensor:
        # -1/2 sum_k (z_ik - m_jk)^2 / s_jk^2 - sum_k log s_jk - dim/2 log 2 pi, with the square expanded.
        z, loc, scale = z.double(), q.mean.double(), q.stddev.double()
        precision = scale.pow(-2)
        quadratic = (z * z) @ precision.T - 2.0 * z @ (loc * precision).T + (loc * loc * precision).sum(-1)
        return -0.5 * quadratic - scale.log().sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)


class VMFLatent(Latent):
    r"""von Mises-Fisher posterior ``vMF(mu(h), kappa)`` and uniform prior on the sphere ``S^{dim-1}``; ``kappa``
    is fixed or, with ``learn_kappa``, the start of :math:`\kappa(h) = \mathrm{softplus}(w^\top h + b)` (``w = 0``,
    ``b = softplus^{-1}(kappa)``)."""

    kappa: Tensor  # the fixed concentration (a buffer), without learn_kappa

    def __init__(self, in_features: int, dim: int, kappa: float, learn_kappa: bool = False) -> None:
        super().__init__(in_features, dim)
        if not kappa > 0:
            raise ValueError(f"kappa must be positive, got {kappa}")
        self.prior_variance = 1.0 / dim  # E[z_i^2] = 1/p for the uniform distribution on S^{p-1}
        self.direction = nn.Linear(in_features, dim)
        self.learn_kappa = learn_kappa
        if learn_kappa:
            self.kappa_head = nn.Linear(in_features, 1)
            nn.init.zeros_(self.kappa_head.weight)
            nn.init.constant_(self.kappa_head.bias, kappa + math.log(-math.expm1(-kappa)))  # softplus^{-1}
        else:
            self.register_buffer("kappa", torch.tensor(float(kappa)))
            # The KL of a fixed kappa is the same for every x: evaluated once, in float64, rather than a
            # log-Bessel evaluation per batch (about 1 ms of a 9 ms training step on one core). A loaded
            # state dict may carry another kappa, so loading evaluates it again.
            self._fixed_kl = _kl_to_uniform(dim, float(kappa))
            self.register_load_state_dict_post_hook(_refresh_fixed_kl)

    def _concentration(self, h: Tensor) -> Tensor:
        if self.learn_kappa:
            return F.softplus(self.kappa_head(h)).squeeze(-1)
        return self.kappa.to(h.dtype).expand(h.shape[:-1])

    def forward(self, h: Tensor) -> Distribution:
        return VonMisesFisher(F.normalize(self.direction(h), dim=-1), self._concentration(h), validate_args=False)

    def prior(self, dtype: torch.dtype, device: torch.device) -> Distribution:
        return HypersphericalUniform(self.dim, dtype=dtype, device=device)

    def kl(self, q: Distribution) -> Tensor:
        loc = cast(VonMisesFisher, q).loc
        if not self.learn_kappa:
            return torch.full(q.batch_shape, self._fixed_kl, dtype=loc.dtype, device=loc.device)
        return kl_divergence(q, self.prior(loc.dtype, loc.device))

    def mean(self, q: Distribution) -> Tensor:
        # E_q[z] = A_p(kappa) mu: the mean direction shrunk by the mean resultant length.
        vmf = cast(VonMisesFisher, q)
        return vmf_mean_resultant_length(self.dim, vmf.concentration).unsqueeze(-1) * vmf.loc

    def stats(self, q: Distribution) -> dict[str, float]:
        return {"kappa": float(cast(VonMisesFisher, q).concentration.detach().mean())}

    def pairwise_log_prob(self, q: Distribution, z: Tensor) -> Tensor:
        # log C_p(kappa_j) + kappa_j mu_j^T z_i
        vmf = cast(VonMisesFisher, q)
        kappa = vmf.concentration.double()
        return vmf_log_normalizer(self.dim, kappa) + (z.double() @ vmf.loc.double().T) * kappa


def _kl_to_uniform(dim: int, kappa: float) -> float:
    """``KL(vMF(mu, kappa) || U(S^{dim-1}))`` in float64; it does not depend on ``mu``."""
    e1 = torch.zeros(dim, dtype=torch.float64)
    e1[0] = 1.0
    return float(
        kl_divergence(
            VonMisesFisher(e1, torch.tensor(kappa, dtype=torch.float64)),
            HypersphericalUniform(dim, dtype=torch.float64),
        )
    )


def _refresh_fixed_kl(module: VMFLatent, incompatible_keys: Any) -> None:
    module._fixed_kl = _kl_to_uniform(module.dim, float(module.kappa))


class PointMass(Distribution):
    """The distribution of an empty vector ``z`` (event shape ``(0,)``): samples are empty, densities are 1."""

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, batch_shape: torch.Size, dtype: torch.dtype, device: torch.device) -> None:
        self._dtype, self._device = dtype, device
        super().__init__(torch.Size(batch_shape), torch.Size((0,)), validate_args=False)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = torch.Size()) -> Tensor:
        return torch.zeros(self._extended_shape(sample_shape), dtype=self._dtype, device=self._device)

    def log_prob(self, value: Tensor) -> Tensor:
        return value.new_zeros(torch.broadcast_shapes(value.shape[:-1], self.batch_shape))

    @property
    def mean(self) -> Tensor:
        return torch.zeros(self.batch_shape + self.event_shape, dtype=self._dtype, device=self._device)


class NoLatent(Latent):
    """No latent variable: ``z`` is an empty vector, certain under both posterior and prior, so the KL is 0.

    A model with this latent is a plain language model, trained and evaluated by the same code as the VAEs.
    """

    prior_variance = 1.0
    min_dim = 0

    def __init__(self, in_features: int) -> None:
        super().__init__(in_features, 0)

    def forward(self, h: Tensor) -> Distribution:
        return PointMass(h.shape[:-1], h.dtype, h.device)

    def prior(self, dtype: torch.dtype, device: torch.device) -> Distribution:
        return PointMass(torch.Size(), dtype, device)

    def mean(self, q: Distribution) -> Tensor:
        return q.mean

    def kl(self, q: Distribution) -> Tensor:
        return q.mean.new_zeros(q.batch_shape)


def make_latent(kind: str, in_features: int, dim: int, kappa: float = 100.0, learn_kappa: bool = False) -> Latent:
    """Build the latent named ``kind`` (one of :data:`LATENT_KINDS`)."""
    if kind == "gaussian":
        if learn_kappa:
            raise ValueError("learn_kappa applies to the vmf latent only")
        return GaussianLatent(in_features, dim)
    if kind == "vmf":
        return VMFLatent(in_features, dim, kappa, learn_kappa)
    if kind == "none":
        return NoLatent(in_features)
    raise ValueError(f"unknown latent {kind!r}; choose one of {LATENT_KINDS}")
