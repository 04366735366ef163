r"""The neural variational document model (NVDM; Miao, Yu & Blunsom 2016) with a choice of latent.

A document is its vector of word counts :math:`x \in \mathbb{N}^V` with length :math:`N = \sum_w x_w`.

* Encoder: an MLP with tanh activations on the raw counts, ``V -> H -> ... -> H``, then the latent's
  posterior head (:mod:`textvae.latents`).
* Decoder: :math:`p(w \mid z) = \mathrm{softmax}(W z + b)_w` (Miao's linear decoder), or with
  ``decoder_hidden > 0`` a tanh layer in between, :math:`\mathrm{softmax}(W \tanh(U z + c) + b)` (the variant
  in Xu & Durrett's code). The bias starts at the log unigram frequencies of the training corpus, so that
  the first step already predicts the word distribution of an average document.
* ``architecture="paper-code"`` follows Xu & Durrett's NVDM code of May 2018 (``NVLL/model/nvdm.py`` at
  jiacheng-xu/vmf_vae_nlp@6ee2071) instead: dropout on the first layer's pre-activation and on the decoder's
  logits, no tanh after the last encoder layer (the original has two; a single layer keeps its tanh), and
  PyTorch's default output bias.
* Likelihood: the words are independent draws given ``z``,
  :math:`\log p(x \mid z) = \sum_w x_w \log p(w \mid z)`. The multinomial coefficient is left out, as in
  every NVDM paper: perplexities are per word token of the bag, in any order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from .config import PROBABILITY, at_least, setting
from .latents import LatentSettings, make_latent
from .vae import TextVAE


@dataclass(frozen=True)
class NVDMConfig(LatentSettings):
    """Architecture of the document model."""

    latent: Literal["gaussian", "vmf"] = setting("gaussian", "the latent variable")
    hidden: int = setting(500, "width of the encoder's hidden layers", at_least(1))
    encoder_layers: int = setting(2, "tanh hidden layers of the encoder", at_least(1))
    decoder_hidden: int = setting(0, "width of a tanh hidden layer in the decoder (0: Miao's linear one)", at_least(0))
    dropout: float = setting(
        0.0, "dropout in training: on the encoder's hidden layers (miao), or see --architecture", PROBABILITY
    )
    architecture: Literal["miao", "paper-code"] = setting(
        "miao",
        "paper-code: as Xu & Durrett's code of May 2018 (dropout before the first tanh and on the decoder's logits, "
        "no tanh after the last encoder layer when there are two or more, default output bias)",
    )


class CountLinear(nn.Module):
    r"""The encoder's first layer, :math:`x W + b` for count vectors :math:`x`, computed over the nonzero counts.

    A 20NG document has about 65 distinct words of the 2,000 in the vocabulary, so on the CPU an
    ``embedding_bag`` over the nonzero entries, weighted by the counts, is about 2x cheaper forward and
    backward than the dense product (1.8 ms against 3.9 ms for a batch of 64 on one core, finding the
    nonzeros included). It is the same function as ``nn.Linear(V, H)``, initialised the same way (uniform
    within :math:`\pm 1/\sqrt V`), with the weight stored as ``(V, H)``, a row per word. On CUDA (any device
    but the CPU) the dense product is used: finding the nonzeros would make the host wait for the device.
    """

    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(vocab_size)
        self.weight = nn.Parameter(torch.empty(vocab_size, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(width).uniform_(-bound, bound))

    def forward(self, counts: Tensor) -> Tensor:
        if counts.device.type != "cpu":
            return torch.addmm(self.bias, counts, self.weight)
        docs, words = counts.nonzero(as_tuple=True)  # row-major: each document's entries are contiguous
        offsets = torch.zeros(counts.shape[0], dtype=torch.int64)
        offsets[1:] = torch.bincount(docs, minlength=counts.shape[0]).cumsum(0)[:-1]
        bags = F.embedding_bag(words, self.weight, offsets, mode="sum", per_sample_weights=counts[docs, words])
        return bags + self.bias


class NVDM(TextVAE):
    """The document VAE over ``vocab_size`` words; batches are dense ``(B, V)`` float count matrices. The output
    bias starts at ``word_log_freq``, the ``(V,)`` log unigram frequencies of the training corpus, if given
    (and the architecture is miao's)."""

    def __init__(self, config: NVDMConfig, vocab_size: int, word_log_freq: Tensor | None = None) -> None:
        if config.encoder_layers < 1:
            raise ValueError("the encoder needs at least one hidden layer")
        super().__init__(make_latent(config.latent, config.hidden, config.latent_dim, config.kappa, config.learn_kappa))
        self.config = config
        self.vocab_size = vocab_size
        paper_code = config.architecture == "paper-code"
        layers: list[nn.Module] = [CountLinear(vocab_size, config.hidden)]
        if paper_code:
            layers += [nn.Dropout(config.dropout), nn.Tanh()]
            for i in range(config.encoder_layers - 1):
                last = i == config.encoder_layers - 2
                layers += [nn.Linear(config.hidden, config.hidden)] + ([] if last else [nn.Tanh()])
        else:
            layers += [nn.Tanh(), nn.Dropout(config.dropout)]
            for _ in range(config.encoder_layers - 1):
                layers += [nn.Linear(config.hidden, config.hidden), nn.Tanh(), nn.Dropout(config.dropout)]
        self.encoder = nn.Sequential(*layers)
        self.logit_dropout: nn.Module = nn.Dropout(config.dropout) if paper_code else nn.Identity()
        if config.decoder_hidden > 0:
            self.decoder = nn.Sequential(
                nn.Linear(config.latent_dim, config.decoder_hidden),
                nn.Tanh(),
                nn.Linear(config.decoder_hidden, vocab_size),
            )
        else:
            self.decoder = nn.Sequential(nn.Linear(config.latent_dim, vocab_size))
        if word_log_freq is not None and not paper_code:
            with torch.no_grad():
                cast(nn.Linear, self.decoder[-1]).bias.copy_(word_log_freq)

    def posterior(self, batch: Tensor) -> Distribution:
        return self.latent(self.encoder(batch))

    def log_likelihood(self, batch: Tensor, z: Tensor) -> Tensor:
        log_probs = torch.log_softmax(self.logit_dropout(self.decoder(z)), dim=-1)  # (S, B, V)
        return (log_probs * batch).sum(-1)

    def n_tokens(self, batch: Tensor) -> Tensor:
        return batch.sum(-1)
