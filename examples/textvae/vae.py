r"""The contract between a text VAE and the shared training loop and evaluation.

A model subclasses :class:`TextVAE` and defines three things: the posterior ``q(z|x)`` for a batch, the
log-likelihood ``log p(x|z)`` of the batch under samples of ``z``, and the number of tokens each example
is scored on. The ELBO terms and the importance weights are then derived here, once, for every model:

.. math::

    \mathrm{recon}(x) = -\frac1S \sum_{s=1}^S \log p(x \mid z_s), \quad z_s \sim q(z \mid x)
    \qquad \mathrm{ELBO}(x) = -\mathrm{recon}(x) - \mathrm{KL}(q(z \mid x) \,\|\, p(z))

    \log w_k = \log p(x \mid z_k) + \log p(z_k) - \log q(z_k \mid x), \quad z_k \sim q(z \mid x)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

from torch import Tensor, nn
from torch.distributions import Distribution

from .latents import Latent


class ELBOTerms(NamedTuple):
    """Per-example terms of the negative ELBO, each ``(B,)``: ``recon`` = ``-E_q[log p(x|z)]`` estimated with the
    model's samples of ``z`` and ``kl`` = ``KL(q(z|x) || p(z))`` exactly (nats), and ``n_tokens``, the tokens
    the example is scored on (the denominator of its perplexity)."""

    recon: Tensor
    kl: Tensor
    n_tokens: Tensor


class TextVAE(nn.Module, ABC):
    """Base class of the example models: a latent plus the three model-specific methods below."""

    def __init__(self, latent: Latent) -> None:
        super().__init__()
        self.latent = latent

    @abstractmethod
    def posterior(self, batch: Any) -> Distribution:
        """``q(z | x)`` for a batch: batch shape ``(B,)``, event shape ``(latent.dim,)``."""

    @abstractmethod
    def log_likelihood(self, batch: Any, z: Tensor) -> Tensor:
        """``log p(x | z)`` of each example under each sample: ``z`` is ``(S, B, dim)``, the result ``(S, B)``."""

    @abstractmethod
    def n_tokens(self, batch: Any) -> Tensor:
        """Tokens each example is scored on, shape ``(B,)``."""

    def forward(self, batch: Any, n_samples: int = 1) -> ELBOTerms:
        """The negative-ELBO terms of a batch, with ``n_samples`` reparameterised samples of ``z``."""
        q = self.posterior(batch)
        z = q.rsample((n_samples,))
        recon = -self.log_likelihood(batch, z).mean(0)
        return ELBOTerms(recon, self.latent.kl(q), self.n_tokens(batch))

    def log_importance_weights(self, batch: Any, n_samples: int) -> Tensor:
        """``log p(x, z_k) - log q(z_k | x)`` for ``n_samples`` draws ``z_k ~ q``: shape ``(n_samples, B)``."""
        q = self.posterior(batch)
        z = q.sample((n_samples,))
        prior = self.latent.prior(z.dtype, z.device)
        return self.log_likelihood(batch, z) + prior.log_prob(z) - q.log_prob(z)
