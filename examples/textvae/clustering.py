r"""Clustering unit vectors and scoring a clustering against reference labels.

* :func:`fit_movmf`: the mixture of von Mises-Fisher distributions of :mod:`spherical_dists.mixture`
  (Banerjee et al. 2005, soft EM), best of several k-means++ restarts by log-likelihood.
* :func:`spherical_kmeans`: k-means with the cosine similarity (Dhillon & Modha 2001), best of several
  restarts by the mean cosine to the assigned centre; the hard-assignment, equal-concentration limit of the
  same mixture. Both draw their k-means++ seeds in the same way, so restart ``r`` of one starts from the
  seeds of restart ``r`` of the other.
* :func:`tfidf`: the bag-of-words baseline, tf-idf rows scaled to unit length.
* :func:`nmi`, :func:`ari`: normalised mutual information (arithmetic-mean normalisation, as scikit-learn's
  default) and the adjusted Rand index (Hubert & Arabie 1985), from the contingency table.

Every random choice comes from a generator seeded by ``(seed, restart)``, so a result is a function of the
data and the seed (on the CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spherical_dists.mixture import fit_vmf_mixture, kmeans_plus_plus

from .bow import BowCorpus
from .data import derive_seed

__all__ = ["Clustering", "fit_movmf", "spherical_kmeans", "tfidf", "nmi", "ari", "contingency"]


# -------------------------------------------------------------------------------------- scores
def contingency(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> np.ndarray:
    """Counts ``n_ij`` of the examples in reference class ``i`` and cluster ``j`` (labels of any hashable type)."""
    if len(labels_true) != len(labels_pred):
        raise ValueError(f"{len(labels_true)} reference labels for {len(labels_pred)} predicted ones")
    _, true_ids = np.unique(np.asarray(labels_true), return_inverse=True)
    _, pred_ids = np.unique(np.asarray(labels_pred), return_inverse=True)
    table = np.zeros((true_ids.max() + 1, pred_ids.max() + 1), dtype=np.int64)
    np.add.at(table, (true_ids, pred_ids), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> float:
    r"""Normalised mutual information :math:`I(U; V) / \frac12 (H(U) + H(V))`: 1 for the same partition (up to
    renaming), about 0 for independent ones. Two single-cluster partitions count as identical (1)."""
    table = contingency(labels_true, labels_pred).astype(np.float64)
    h_true, h_pred = _entropy(table.sum(1)), _entropy(table.sum(0))
    if h_true == 0.0 and h_pred == 0.0:
        return 1.0
    n = table.sum()
    joint = table[table > 0] / n
    outer = np.outer(table.sum(1), table.sum(0))[table > 0] / n**2
    mutual = float((joint * np.log(joint / outer)).sum())
    return max(mutual, 0.0) / (0.5 * (h_true + h_pred))


def ari(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> float:
    r"""Adjusted Rand index: the Rand index of the pairs of examples, corrected so that its expectation under
    random labellings with the same cluster sizes is 0; 1 for the same partition."""
    table = contingency(labels_true, labels_pred).astype(np.float64)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    both, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / pairs(np.array([table.sum()]))
    top = 0.5 * (rows + cols)
    if top == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return (both - expected) / (top - expected)


# -------------------------------------------------------------------------------------- features
def tfidf(corpus: BowCorpus) -> Tensor:
    r"""tf-idf rows of unit length, float64 of shape ``(D, V)``: raw counts times the smoothed inverse document
    frequency :math:`1 + \log\frac{1 + D}{1 + \mathrm{df}_w}` of the corpus itself (scikit-learn's default)."""
    counts = corpus.collate(torch.arange(len(corpus))).double()
    df = (counts > 0).sum(0).double()
    idf = 1.0 + torch.log((1.0 + len(corpus)) / (1.0 + df))
    return torch.nn.functional.normalize(counts * idf, dim=-1)


# ------------------------------------------------------------------------------------ clustering
@dataclass
class Clustering:
    """The chosen (best) restart of a clustering method, and a summary of all restarts.

    Attributes
    ----------
    labels : Tensor
        ``int64`` cluster of each example, shape ``(n,)``.
    score : float
        What chose the restart: mean log-likelihood per example (movMF) or mean cosine to the centre (k-means).
    n_iter : int
        Iterations of the chosen restart.
    converged : bool
        Whether the chosen restart met the tolerance.
    seconds : float
        Wall time of all restarts.
    concentrations : Tensor or None
        The fitted kappas (movMF), shape ``(K,)``.
    weights : Tensor or None
        The fitted mixing weights (movMF), shape ``(K,)``.
    restart_scores : list of float
        ``score`` of every restart, in order.
    restart_labels : list of Tensor
        ``labels`` of every restart, in order (to see how much the choice of restart matters).
    """

    labels: Tensor
    score: float
    n_iter: int
    converged: bool
    seconds: float
    concentrations: Tensor | None = None
    weights: Tensor | None = None
    restart_scores: list[float] = field(default_factory=list)
    restart_labels: list[Tensor] = field(default_factory=list)


def _generator(seed: int, restart: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, restart))


def _best_of(runs: list[tuple[float, Tensor, int, bool, dict[str, Tensor]]], started: float) -> Clustering:
    best = max(range(len(runs)), key=lambda r: runs[r][0])  # the first of equal scores
    score, labels, n_iter, converged, extra = runs[best]
    return Clustering(
        labels,
        score,
        n_iter,
        converged,
        time.perf_counter() - started,
        restart_scores=[r[0] for r in runs],
        restart_labels=[r[1] for r in runs],
        **extra,
    )


def fit_movmf(
    x: Tensor, n_components: int, restarts: int = 5, seed: int = 0, max_iter: int = 300, tol: float = 1e-6
) -> Clustering:
    """Fit :func:`spherical_dists.mixture.fit_vmf_mixture` ``restarts`` times (k-means++ seeds) and keep the
    fit of the highest log-likelihood; an example's cluster is its most responsible component."""
    started = time.perf_counter()
    runs = []
    for restart in range(restarts):
        fit = fit_vmf_mixture(x, n_components, max_iter=max_iter, tol=tol, generator=_generator(seed, restart))
        extra = {"concentrations": fit.concentrations, "weights": fit.weights}
        runs.append((float(fit.log_likelihood[-1]), fit.responsibilities.argmax(-1), fit.n_iter, fit.converged, extra))
    return _best_of(runs, started)


def _kmeans_once(x: Tensor, k: int, generator: torch.Generator, max_iter: int) -> tuple[float, Tensor, int, bool]:
    one_hot = kmeans_plus_plus(x.unsqueeze(0), k, generator).squeeze(0).to(x.dtype)  # (n, k)
    labels = one_hot.argmax(-1)
    converged, iterations = False, 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        sums = torch.zeros(k, x.shape[-1], dtype=x.dtype).index_add_(0, labels, x)
        norms = torch.linalg.vector_norm(sums, dim=-1, keepdim=True)
        empty = norms.squeeze(-1) == 0
        centers = sums / torch.where(empty.unsqueeze(-1), 1.0, norms)
        if empty.any():  # an empty cluster takes the points worst served by their centres
            cos_own = (x * centers[labels]).sum(-1)
            centers[empty] = x[cos_own.argsort()[: int(empty.sum())]]
        new = (x @ centers.T).argmax(-1)
        if torch.equal(new, labels):
            converged = True
            break
        labels = new
    objective = float((x * centers[labels]).sum(-1).mean())
    return objective, labels, iterations, converged


def spherical_kmeans(x: Tensor, k: int, restarts: int = 5, seed: int = 0, max_iter: int = 300) -> Clustering:
    """Spherical k-means (centres: normalised means of their points; assignment: the largest cosine), run
    until the assignments stop changing; the restart of the largest mean cosine is kept."""
    started = time.perf_counter()
    runs = []
    for restart in range(restarts):
        objective, labels, n_iter, converged = _kmeans_once(x, k, _generator(seed, restart), max_iter)
        runs.append((objective, labels, n_iter, converged, {}))
    return _best_of(runs, started)


def summarize(clustering: Clustering, labels_true: Sequence[Any]) -> dict[str, Any]:
    """NMI and ARI of the chosen restart, the range of NMI over restarts, and the fit's statistics (JSON-able)."""
    row: dict[str, Any] = {
        "nmi": nmi(labels_true, clustering.labels.tolist()),
        "ari": ari(labels_true, clustering.labels.tolist()),
        "score": clustering.score,
        "n_iter": clustering.n_iter,
        "converged": clustering.converged,
        "seconds": clustering.seconds,
        "clusters_used": int(clustering.labels.unique().numel()),
        "restart_scores": clustering.restart_scores,
        "restart_nmi": [nmi(labels_true, labels.tolist()) for labels in clustering.restart_labels],
    }
    row["nmi_min"], row["nmi_max"] = min(row["restart_nmi"]), max(row["restart_nmi"])
    if clustering.concentrations is not None:
        kappa = clustering.concentrations.double()
        row.update(
            kappa_min=float(kappa.min()),
            kappa_median=float(kappa.median()),
            kappa_max=float(kappa.max()),
            kappas=kappa.tolist(),
            weights=clustering.weights.double().tolist(),
        )
    if not math.isfinite(row["score"]):
        raise FloatingPointError(f"non-finite clustering score {row['score']}")
    return row
