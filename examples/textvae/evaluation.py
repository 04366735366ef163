r"""Evaluation of a :class:`~textvae.vae.TextVAE` on a data set: perplexities, IW bound, KL, active units.

Notation: example :math:`d` has :math:`N_d` tokens; :math:`\ell_d` is an upper bound on (or an estimate of)
its negative log-likelihood :math:`-\log p(x_d)` in nats.

* ELBO bound: :math:`\ell_d = \mathrm{recon}_d + \mathrm{KL}_d`, with the reconstruction averaged over ``S``
  samples of ``z`` (this only reduces the variance of the estimate; the bound is the same).
* Importance-weighted bound (Burda et al. 2016) with ``K`` samples :math:`z_k \sim q(z|x_d)`:
  :math:`\ell_d = -\log \frac1K \sum_k p(x_d \mid z_k) p(z_k) / q(z_k \mid x_d)`, computed with logsumexp.
  It is tighter than the ELBO and tends to :math:`-\log p(x_d)` as ``K`` grows.

From either, two perplexities (both appear in the literature; see the examples README):

* corpus-level: :math:`\exp(\sum_d \ell_d / \sum_d N_d)`, the per-token perplexity of the whole test set;
* per-document average: :math:`\exp(\frac1D \sum_d \ell_d / N_d)`, which weighs short documents as much as
  long ones and is larger, since short documents are harder per token.

Active units (Burda et al. 2016): dimension ``i`` is active when :math:`\mathrm{Var}_x(E_{q(z|x)}[z_i])`
exceeds a threshold. The usual 0.01 is relative to the unit variance of a standard normal prior; here the
threshold is ``0.01 * prior_variance`` so that it means the same for the uniform prior on the sphere,
whose coordinates have variance ``1/p``. The count at the absolute threshold 0.01 is reported too.

Embeddings (:func:`encode`): the direction of the posterior mean :math:`E_{q(z|x)}[z]` of every example, a
unit vector, for clustering or retrieval on the sphere.

Mutual information between ``x`` and ``z`` under the encoder (Hoffman & Johnson 2016; the estimator of
He et al. 2019), with the aggregate posterior :math:`q(z) = \frac1D \sum_j q(z \mid x_j)` over the ``D``
evaluated examples and one draw :math:`z_d \sim q(z \mid x_d)` per example:

.. math::

    I_q(x; z) = E_x E_{q(z|x)}[\log q(z \mid x) - \log q(z)] \approx \frac1D \sum_d \Big[\log q(z_d \mid x_d)
    - \log \frac1D \sum_j q(z_d \mid x_j)\Big]

It uses only the posterior's ``log_prob`` (so it works for any latent) and lies in ``[0, log D]`` up to
sampling noise: 0 when every posterior is the same (collapse), ``log D`` when they do not overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import Settings, at_least, setting
from .data import move_to_device
from .progress import track
from .vae import TextVAE


@dataclass(frozen=True)
class EvalConfig(Settings):
    """How the final (test) evaluation is done."""

    eval_samples: int = setting(20, "samples of z per example for the ELBO's reconstruction term", at_least(1))
    iw_samples: int = setting(100, "samples K of the importance-weighted bound (0: skip it)", at_least(0))
    iw_chunk: int = setting(50, "IW samples evaluated at once (memory: iw_chunk x batch x vocabulary)", at_least(1))
    au_threshold: float = setting(0.01, "active-units threshold, relative to the prior variance", at_least(0))


def perplexity(nats_per_token: float) -> float:
    """``exp(nats_per_token)``, or ``inf`` where that overflows (a diverging model must not crash the logs)."""
    return math.exp(nats_per_token) if nats_per_token < 700 else math.inf


def perplexities(nll: Tensor, n_tokens: Tensor) -> dict[str, float]:
    """Corpus-level and per-document-average perplexity from per-example NLLs (nats) and token counts.

    >>> perplexities(torch.tensor([2.0, 6.0]), torch.tensor([1.0, 4.0]))  # exp(8 / 5), exp((2 + 1.5) / 2)
    {'corpus': 4.953..., 'per_doc': 5.754...}
    """
    nll, n_tokens = nll.double(), n_tokens.double()
    if (n_tokens <= 0).any():
        raise ValueError("every example needs at least one token to have a perplexity")
    return {
        "corpus": perplexity(float(nll.sum() / n_tokens.sum())),
        "per_doc": perplexity(float((nll / n_tokens).mean())),
    }


def elbo_summary(terms: dict[str, Tensor]) -> dict[str, float]:
    """Perplexities (corpus, per document) and means per example of the bound (``nll``), the reconstruction
    and the KL, from the terms of :func:`elbo_terms`; a non-finite bound gives infinite perplexities."""
    bound = terms["recon"] + terms["kl"]
    ppl = perplexities(bound, terms["n_tokens"])
    means = {"nll": float(bound.mean()), "recon": float(terms["recon"].mean()), "kl": float(terms["kl"].mean())}
    return {"ppl_corpus": ppl["corpus"], "ppl_per_doc": ppl["per_doc"], **means}


def _on_device_in_eval_mode(model: TextVAE, batches: Iterable[Any]) -> Iterator[Any]:
    """The batches on the model's device, the model in eval mode meanwhile (its mode given back after)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for batch in batches:
            yield move_to_device(batch, device)
    finally:
        model.train(was_training)


@torch.no_grad()
def elbo_terms(model: TextVAE, batches: Iterable[Any], n_samples: int = 1) -> dict[str, Tensor]:
    """Per-example ``recon``, ``kl`` and ``n_tokens`` (float64 tensors of shape ``(D,)``) over all batches."""
    parts: dict[str, list[Tensor]] = {"recon": [], "kl": [], "n_tokens": []}
    for batch in _on_device_in_eval_mode(model, batches):
        for name, value in model(batch, n_samples=n_samples)._asdict().items():
            parts[name].append(value.double().cpu())
    return {name: torch.cat(values) for name, values in parts.items()}


@torch.no_grad()
def iw_nll(model: TextVAE, batches: Iterable[Any], n_samples: int, chunk: int = 50) -> Tensor:
    r"""Importance-weighted NLL bound per example, float64 of shape ``(D,)``: :math:`-\log \frac1K \sum_k w_k`
    with the ``K = n_samples`` log-weights drawn ``chunk`` at a time and combined as ``logsumexp(all) - log K``,
    which is exact (no running-average rounding)."""
    out = []
    for batch in _on_device_in_eval_mode(model, batches):
        chunks = range(0, n_samples, chunk)
        log_w = torch.cat([model.log_importance_weights(batch, min(chunk, n_samples - i)).double() for i in chunks])
        out.append((math.log(n_samples) - torch.logsumexp(log_w, dim=0)).cpu())
    return torch.cat(out)


@torch.no_grad()
def _posterior_means(model: TextVAE, batches: Iterable[Any]) -> tuple[Tensor, list[tuple[int, dict[str, float]]]]:
    """``E_q[z]`` of every example (float64, ``(D, dim)``, in batch order) and, per batch, its size and the
    latent's :meth:`~textvae.latents.Latent.stats`."""
    means, stats = [], []
    for batch in _on_device_in_eval_mode(model, batches):
        q = model.posterior(batch)
        means.append(model.latent.mean(q).double().cpu())
        stats.append((means[-1].shape[0], model.latent.stats(q)))
    return torch.cat(means), stats


def active_units(model: TextVAE, batches: Iterable[Any], threshold: float = 0.01) -> dict[str, Any]:
    r"""``active``: the dimensions with :math:`\mathrm{Var}_x(E_q[z_i]) > threshold \cdot \sigma^2_{prior}`;
    ``active_abs``: those above ``threshold`` itself; ``variance``: the per-dimension variances; ``stats``: the
    latent's :meth:`~textvae.latents.Latent.stats` averaged over the examples (the mean vMF concentration)."""
    means, stats = _posterior_means(model, batches)
    variance = means.var(dim=0, unbiased=False)
    total = sum(n for n, _ in stats)
    return {
        "active": int((variance > threshold * model.latent.prior_variance).sum()),
        "active_abs": int((variance > threshold).sum()),
        "variance": variance.tolist(),
        "stats": {key: sum(n * s[key] for n, s in stats) / total for key in stats[0][1]},
    }


def encode(model: TextVAE, batches: Iterable[Any]) -> Tensor:
    r"""Unit vectors ``E_q[z] / |E_q[z]|`` of every example, float64 of shape ``(D, dim)``, in batch order: for
    a vMF posterior :math:`E_q[z] = A_p(\kappa)\,\mu`, so this is its mean direction :math:`\mu` whatever the
    concentration; for a Gaussian posterior, the normalised posterior mean. No dropout, no sampling."""
    return F.normalize(_posterior_means(model, batches)[0], dim=-1)


@torch.no_grad()
def mutual_information(model: TextVAE, batches: Iterable[Any], chunk: int = 256) -> float:
    r"""The estimate of :math:`I_q(x; z)` in nats of the module docstring (one ``z`` per example); the
    ``D x D`` matrix of :math:`\log q(z_i \mid x_j)` is computed ``chunk`` rows at a time."""
    posteriors, samples, own = [], [], []
    for batch in _on_device_in_eval_mode(model, batches):
        q = model.posterior(batch)
        z = q.sample()
        posteriors.append(q)
        samples.append(z)
        own.append(model.latent.pairwise_log_prob(q, z).diagonal())  # the same arithmetic as below
    z_all = torch.cat(samples)
    log_aggregate = [
        torch.logsumexp(torch.cat([model.latent.pairwise_log_prob(q, rows) for q in posteriors], dim=1), dim=1)
        - math.log(z_all.shape[0])
        for rows in z_all.split(chunk)
    ]
    return float(torch.cat(own).mean() - torch.cat(log_aggregate).mean())


def evaluate(
    model: TextVAE,
    batches: Callable[[], Iterable[Any]],
    config: EvalConfig,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> dict[str, Any]:
    """The full evaluation over ``batches()`` (fresh batches for each pass), with progress lines to ``log`` and
    optional bars: ``ppl_corpus``, ``ppl_per_doc``, ``nll`` (ELBO), ``iw_ppl_corpus``, ``iw_ppl_per_doc``,
    ``iw_nll`` (when ``iw_samples > 0``), ``recon``, ``kl``, ``mi``, ``active_units``, ``active_units_abs``,
    ``n_examples``, ``n_tokens`` and the latent's statistics (``kappa``, the mean vMF concentration)."""
    terms = elbo_terms(model, track(batches(), "test ELBO", progress), config.eval_samples)
    result: dict[str, Any] = elbo_summary(terms)
    result.update(n_examples=int(terms["kl"].numel()), n_tokens=int(terms["n_tokens"].sum()))
    if config.iw_samples > 0:
        log(f"importance-weighted bound with K={config.iw_samples} samples...")
        iw = iw_nll(model, track(batches(), "test IW bound", progress), config.iw_samples, config.iw_chunk)
        iw_ppl = perplexities(iw, terms["n_tokens"])
        result.update(iw_ppl_corpus=iw_ppl["corpus"], iw_ppl_per_doc=iw_ppl["per_doc"], iw_nll=float(iw.mean()))
    result["mi"] = mutual_information(model, batches())
    units = active_units(model, batches(), config.au_threshold)
    result.update(active_units=units["active"], active_units_abs=units["active_abs"], **units["stats"])
    return result
