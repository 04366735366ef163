r"""The sentence VAE (Bowman et al. 2016; Xu & Durrett 2018): an LSTM encoder and an LSTM language-model decoder.

A sentence :math:`x = (w_1, \dots, w_n)` is scored on the tokens :math:`y = (w_1, \dots, w_n, \langle eos \rangle)`:

.. math::

    \log p(x \mid z) = \sum_{t=1}^{n+1} \log \mathrm{softmax}(W o_t + b)_{y_t}, \qquad
    o_t = \mathrm{LSTM}([e(y_{t-1}); z], \text{state}_{t-1}), \quad y_0 = \langle bos \rangle,
    \quad \text{state}_0 = \tanh(L z)

* Encoder: an LSTM over the embedded tokens (packed, so padding is never read); its final ``(h, c)``,
  concatenated, go through a linear layer to the latent's posterior head (:mod:`textvae.latents`).
* Decoder: an LSTM whose initial state is a linear function of ``z`` and whose every input is the previous
  word's embedding with ``z`` concatenated. ``inputless`` replaces every input word by ``<unk>`` (word
  dropout 1, in training and evaluation), so that all information about the words must come through ``z``.
  ``skip`` (Dieng et al. 2019) concatenates ``z`` to the input of every LSTM layer and to the output layer.
  With the ``none`` latent, ``z`` is empty and the decoder is a plain LSTM language model (RNNLM).
* Speed: one LSTM call per layer over the whole padded batch (cuDNN on a GPU); the decoder needs no packing,
  since an LSTM is causal and the padded positions, which come after ``<eos>``, are not scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.nn.utils.rnn import pack_padded_sequence

from .config import POSITIVE, PROBABILITY, at_least, setting
from .latents import LatentSettings, make_latent
from .sentences import SentenceBatch, Vocabulary
from .vae import TextVAE


@dataclass(frozen=True)
class SentenceVAEConfig(LatentSettings):
    """Architecture of the sentence model."""

    latent: Literal["gaussian", "vmf", "none"] = setting("vmf", "the latent variable (none: an LSTM language model)")
    kappa: float = setting(35.0, "vMF concentration: fixed, or the start with --learn-kappa", POSITIVE)
    embed: int = setting(100, "word embedding size (encoder and decoder each have their own)", at_least(1))
    hidden: int = setting(400, "LSTM state size of the encoder and of each decoder layer", at_least(1))
    layers: int = setting(1, "decoder LSTM layers", at_least(1))
    dropout: float = setting(0.5, "dropout on the embeddings and the decoder's output in training", PROBABILITY)
    inputless: bool = setting(False, "replace every decoder input word by <unk>, in training and evaluation")
    skip: bool = setting(False, "feed z to every decoder layer and to the output layer (Dieng et al. 2019)")


_State = tuple[Tensor, Tensor] | None  # an LSTM layer's (h, c), or None for zeros


class SentenceVAE(TextVAE):
    """The sentence VAE over the words of ``vocab``; batches are :class:`~textvae.sentences.SentenceBatch`."""

    def __init__(self, config: SentenceVAEConfig, vocab: Vocabulary) -> None:
        if config.layers < 1:
            raise ValueError("the decoder needs at least one layer")
        super().__init__(make_latent(config.latent, config.hidden, config.latent_dim, config.kappa, config.learn_kappa))
        self.config = config
        self.pad, self.bos, self.unk = vocab.pad, vocab.bos, vocab.unk
        dim, hidden, v = self.latent.dim, config.hidden, len(vocab)
        self.dropout = nn.Dropout(config.dropout)
        if dim:
            self.encoder_embedding = nn.Embedding(v, config.embed, padding_idx=self.pad)
            self.encoder = nn.LSTM(config.embed, hidden, batch_first=True)
            self.encoder_out = nn.Linear(2 * hidden, hidden)
            self.initial_state = nn.Linear(dim, 2 * hidden * config.layers)
        self.decoder_embedding = nn.Embedding(v, config.embed, padding_idx=self.pad)
        # One single-layer LSTM per layer, so that z can join the input of each (skip).
        self.decoder = nn.ModuleList(
            nn.LSTM(
                (config.embed if i == 0 else hidden) + (dim if i == 0 or config.skip else 0), hidden, batch_first=True
            )
            for i in range(config.layers)
        )
        self.output = nn.Linear(hidden + (dim if config.skip else 0), v)

    # ---------------------------------------------------------------------------------------- encoder
    def posterior(self, batch: SentenceBatch) -> Distribution:
        if not self.latent.dim:
            return self.latent(batch.tokens.new_zeros((batch.tokens.shape[0], 0), dtype=torch.float32))
        embedded = self.dropout(self.encoder_embedding(batch.tokens))
        packed = pack_padded_sequence(embedded, batch.lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, c) = self.encoder(packed)
        return self.latent(self.encoder_out(torch.cat([h[-1], c[-1]], dim=-1)))

    # ---------------------------------------------------------------------------------------- decoder
    def _decoder_inputs(self, tokens: Tensor) -> Tensor:
        """``<bos>`` then every token but the last; all ``<unk>`` when inputless (padding is never scored)."""
        if self.config.inputless:
            inputs = torch.full_like(tokens, self.unk)
        else:
            inputs = tokens.roll(1, dims=1)
        inputs[:, 0] = self.bos
        return inputs

    def logits(self, inputs: Tensor, z: Tensor, state: list[_State] | None = None) -> tuple[Tensor, list[_State]]:
        """Output logits ``(N, T, V)`` for decoder input ids ``(N, T)`` and codes ``z`` ``(N, dim)``, and the final
        ``(h, c)`` of every layer; ``state`` continues from a previous call (``None``: start from ``z``)."""
        n, t = inputs.shape
        z_steps = z.unsqueeze(1).expand(n, t, z.shape[-1])
        state = self._initial_state(z) if state is None else state
        x = self.dropout(self.decoder_embedding(inputs))
        final: list[_State] = []
        for i, lstm in enumerate(self.decoder):
            if i == 0 or self.config.skip:
                x = torch.cat([x, z_steps], dim=-1)
            x, layer_state = lstm(x, state[i])
            final.append(layer_state)
        x = self.dropout(x)
        if self.config.skip:
            x = torch.cat([x, z_steps], dim=-1)
        return self.output(x), final

    def _initial_state(self, z: Tensor) -> list[_State]:
        if not self.latent.dim:
            return [None] * self.config.layers  # zeros
        h, c = torch.tanh(self.initial_state(z)).chunk(2, dim=-1)
        return [
            (hl.unsqueeze(0).contiguous(), cl.unsqueeze(0).contiguous())
            for hl, cl in zip(h.chunk(self.config.layers, dim=-1), c.chunk(self.config.layers, dim=-1))
        ]

    def log_likelihood(self, batch: SentenceBatch, z: Tensor) -> Tensor:
        s, b = z.shape[:2]
        tokens = batch.tokens.repeat(s, 1)  # sample-major, matching z.reshape(s * b, dim)
        logits, _ = self.logits(self._decoder_inputs(tokens), z.reshape(s * b, -1))
        nll = F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten(), ignore_index=self.pad, reduction="none")
        return -nll.view(s, b, -1).sum(-1)

    def n_tokens(self, batch: SentenceBatch) -> Tensor:
        return batch.lengths

    # --------------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self, z: Tensor, max_length: int = 40, greedy: bool = True, generator: torch.Generator | None = None
    ) -> Tensor:
        """Decode sentences from codes ``z`` ``(N, dim)``: word ids ``(N, <= max_length)``, ``<eos>``-terminated
        unless cut. Greedy (argmax) or sampled from the softmax; ``<unk>`` inputs when inputless."""
        was_training = self.training
        self.eval()
        n = z.shape[0]
        current = torch.full((n, 1), self.bos, dtype=torch.int64, device=z.device)
        state: list[_State] | None = None
        out: list[Tensor] = []
        for _ in range(max_length):  # generation only: training never loops over tokens
            inputs = torch.full_like(current, self.unk) if self.config.inputless and out else current
            logits, state = self.logits(inputs, z, state)
            logits = logits[:, -1].float()
            if greedy:
                current = logits.argmax(-1, keepdim=True)
            else:
                current = torch.multinomial(logits.softmax(-1), 1, generator=generator)
            out.append(current)
        self.train(was_training)
        return torch.cat(out, dim=1)
