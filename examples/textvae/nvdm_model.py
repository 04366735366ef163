r"""The neural variational document model (NVDM; Miao, Yu & Blunsom 2016) with a choice of latent.

A document is its vector of word counts :math:`x \in \mathbb{N}^V` with length :math:`N = \sum_w x_w`.

* Encoder: an MLP with tanh activations on the raw counts, ``V -> H -> ... -> H``, then the latent's
  posterior head (:mod:`textvae.latents`).
* Decoder: :math:`p(w \mid z) = \mathrm{softmax}(W z + b)_w` (Miao's linear decoder), or with
  ``decoder_hidden > 0`` a tanh layer in between, :math:`\mathrm{softmax}(W \tanh(U z + c) + b)` (the variant
  in Xu & Durrett's code). The bias starts at the log unigram frequencies of the training corpus, so that
  the first step already predicts the word distribution of an average document.
* Likelihood: the words are independent draws given ``z``,
  :math:`\log p(x \mid z) = \sum_w x_w \log p(w \mid z)`. The multinomial coefficient is left out, as in
  every NVDM paper: perplexities are per word token of the bag, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .latents import make_latent
from .vae import TextVAE

__all__ = ["NVDMConfig", "NVDM"]


@dataclass(frozen=True)
class NVDMConfig:
    """Architecture of the document model.

    Attributes
    ----------
    latent : str
        ``gaussian`` or ``vmf``.
    latent_dim : int
        Dimension of ``z`` (the ambient dimension for vmf).
    kappa : float
        vMF concentration: fixed, or the starting value with ``learn_kappa``.
    learn_kappa : bool
        Predict kappa per document instead of fixing it (vmf only).
    hidden : int
        Width of the encoder's hidden layers.
    encoder_layers : int
        Number of tanh hidden layers of the encoder.
    decoder_hidden : int
        Width of a tanh hidden layer in the decoder; 0 for Miao's linear decoder.
    dropout : float
        Dropout on the encoder's hidden layers during training.
    """

    latent: Literal["gaussian", "vmf"] = "gaussian"
    latent_dim: int = 50
    kappa: float = 100.0
    learn_kappa: bool = False
    hidden: int = 500
    encoder_layers: int = 2
    decoder_hidden: int = 0
    dropout: float = 0.0


class NVDM(TextVAE):
    """The document VAE. Batches are dense ``(B, V)`` float count matrices.

    Parameters
    ----------
    config
        Architecture.
    vocab_size
        ``V``.
    word_log_freq
        Optional ``(V,)`` log unigram frequencies of the training corpus to start the output bias at.
    """

    def __init__(self, config: NVDMConfig, vocab_size: int, word_log_freq: Tensor | None = None) -> None:
        if config.encoder_layers < 1:
            raise ValueError("the encoder needs at least one hidden layer")
        super().__init__(make_latent(config.latent, config.hidden, config.latent_dim, config.kappa, config.learn_kappa))
        self.config = config
        self.vocab_size = vocab_size
        layers: list[nn.Module] = []
        width = vocab_size
        for _ in range(config.encoder_layers):
            layers += [nn.Linear(width, config.hidden), nn.Tanh(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.encoder = nn.Sequential(*layers)
        if config.decoder_hidden > 0:
            self.decoder = nn.Sequential(
                nn.Linear(config.latent_dim, config.decoder_hidden),
                nn.Tanh(),
                nn.Linear(config.decoder_hidden, vocab_size),
            )
        else:
            self.decoder = nn.Sequential(nn.Linear(config.latent_dim, vocab_size))
        if word_log_freq is not None:
            with torch.no_grad():
                self.decoder[-1].bias.copy_(word_log_freq)

    def posterior(self, batch: Tensor) -> Distribution:
        return self.latent(self.encoder(batch))

    def log_likelihood(self, batch: Tensor, z: Tensor) -> Tensor:
        log_probs = torch.log_softmax(self.decoder(z), dim=-1)  # (S, B, V)
        return (log_probs * batch).sum(-1)

    def n_tokens(self, batch: Tensor) -> Tensor:
        return batch.sum(-1)
