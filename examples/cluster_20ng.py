"""Cluster the 20 Newsgroups test documents by their NVDM embeddings with a mixture of von Mises-Fisher distributions.

Each document of the test set is encoded to a unit vector, the mean direction of its posterior q(z|x) (for a
Gaussian NVDM: its normalised posterior mean), and the vectors are clustered into 20 groups by
``spherical_dists.mixture.fit_vmf_mixture`` (movMF, Banerjee et al. 2005; several k-means++ restarts, the
highest log-likelihood kept). Baselines in the same run: spherical k-means on the same vectors, and both
methods on the tf-idf bag of words (unit rows, p = vocabulary size). The clusters are scored against the
newsgroup labels (NMI, ARI), which no model has seen.

Models: run directories of ``nvdm.py`` (``--runs``), or presets of ``nvdm.py`` (by default v-NVDM, latent 50,
kappa 100, and G-NVDM, latent 50), whose models live in examples/runs/nvdm/train/<preset>: each is brought
up to date there first by ``nvdm.py train --preset <preset> --resume`` in a child process, which returns
at once for a finished model and otherwise trains it (a few minutes per model on 2 CPU cores)::

    python examples/cluster_20ng.py
    python examples/cluster_20ng.py --presets v-nvdm-25 v-nvdm-50 v-nvdm-200 g-nvdm-50 g-nvdm-200
    python examples/cluster_20ng.py --runs examples/runs/nvdm/reproduce/table2/v-nvdm-50 --restarts 20 --seed 1
    python examples/cluster_20ng.py --json examples/results/nvdm/clustering.json   # also writes clustering.md

Spherical k-means (Dhillon & Modha 2001) is the hard-assignment, equal-concentration limit of the same
mixture; restart ``r`` of both methods starts from the same k-means++ seeds, drawn from a generator seeded by
``(seed, r)``, so the result is a function of the models and ``--seed`` (on the CPU). NMI is normalised by
the arithmetic mean of the entropies (scikit-learn's default); ARI is Hubert & Arabie's (1985).
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from textvae import config as cfg
from textvae import runs
from textvae.bow import BowCorpus, BowDataConfig, load_splits
from textvae.checkpoint import load_checkpoint
from textvae.data import Batches, derive_seed
from textvae.environment import die_with_parent
from textvae.evaluation import encode
from textvae.nvdm_model import NVDM, NVDMConfig
from textvae.report import Report, markdown_table, portable_path
from torch import Tensor

from spherical_dists.mixture import fit_vmf_mixture, kmeans_plus_plus

EXAMPLES = Path(__file__).resolve().parent
DEFAULT_PRESETS = ("v-nvdm-50", "g-nvdm-50")
EVAL_BATCH = 500  # documents encoded at once


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
    """The chosen restart of a clustering method: the cluster of each example, the score that chose it (mean
    log-likelihood per example for movMF, mean cosine to the centre for k-means), its iterations and
    convergence, the wall time of all restarts, the fitted kappas and weights (movMF), and the scores and
    labels of every restart (to see how much the choice of restart matters)."""

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
    runs: list[tuple[float, Tensor, int, bool, dict[str, Tensor]]] = []
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
            weights=clustering.weights.double().tolist() if clustering.weights is not None else None,
        )
    if not math.isfinite(row["score"]):
        raise FloatingPointError(f"non-finite clustering score {row['score']}")
    return row


METHODS: dict[str, Callable[..., Clustering]] = {"movMF": fit_movmf, "spherical k-means": spherical_kmeans}


# ------------------------------------------------------------------------------------------ models
def train_presets(presets: Sequence[str], root: Path) -> list[Path]:
    """``root/<preset>`` for each preset, after ``nvdm.py train --preset <preset> --resume`` there."""
    for preset in presets:
        command = [sys.executable, str(EXAMPLES / "nvdm.py"), "train", "--preset", preset]
        process = subprocess.Popen([*command, "--run-dir", str(root / preset), "--resume"], preexec_fn=die_with_parent)
        try:
            code = process.wait()
        except KeyboardInterrupt:  # the child saves its checkpoint first
            process.send_signal(signal.SIGTERM)
            process.wait()
            raise
        if code != 0:
            raise runs.RunError(f"`nvdm.py train --preset {preset}` failed (exit code {code}); see its message above")
    return [root / preset for preset in presets]


def load_run(run_dir: Path) -> tuple[NVDM, dict[str, Any], BowCorpus]:
    """The best-validation model of a run directory of ``nvdm.py`` (on the CPU), its ``result.json`` and the
    test corpus of its data settings."""
    result = runs.read_result(run_dir)
    config = result["config"]
    if not {f.name for f in fields(NVDMConfig) + fields(BowDataConfig)} <= config.keys():
        raise runs.RunError(f"{run_dir / 'result.json'} is not a finished run of nvdm.py")
    splits = load_splits(cfg.section(BowDataConfig, config))
    model = NVDM(cfg.section(NVDMConfig, config), splits.train.vocab_size)
    model.load_state_dict(load_checkpoint(run_dir / "best.pt", torch.device("cpu")))
    return model, result, splits.test


# ---------------------------------------------------------------------------------------- clustering
def cluster_all(
    embeddings: dict[str, tuple[torch.Tensor, dict[str, Any]]],
    labels: Sequence[str],
    args: argparse.Namespace,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Every method on every embedding: one row (scores, fit statistics, provenance of the embedding) each."""
    rows = []
    for name, (x, info) in embeddings.items():
        for method, fit in METHODS.items():
            clustering = fit(x, args.components, restarts=args.restarts, seed=args.seed, max_iter=args.max_iter)
            row = {"embedding": name, "dim": x.shape[-1], "method": method, **info, **summarize(clustering, labels)}
            row["score_name"] = "mean log-likelihood per document" if method == "movMF" else "mean cosine to centre"
            row["converged_mark"] = "yes" if row["converged"] else "no"
            row["nmi_range"] = f"{row['nmi_min']:.3f}–{row['nmi_max']:.3f}"
            if "kappa_min" in row:
                row["kappas_summary"] = f"{row['kappa_min']:.0f} / {row['kappa_median']:.0f} / {row['kappa_max']:.0f}"
            log(
                f"{name}, {method}: NMI {row['nmi']:.3f}, ARI {row['ari']:.3f} "
                f"({row['n_iter']} iterations, {row['seconds']:.1f} s for {args.restarts} restarts)"
            )
            rows.append(row)
    return rows


COLUMNS = [
    ("embedding", "embedding", ""),
    ("dim", "p", "d"),
    ("method", "method", ""),
    ("nmi", "NMI", ".3f"),
    ("ari", "ARI", ".3f"),
    ("nmi_range", "NMI over restarts", ""),
    ("kappas_summary", "kappa min / median / max", ""),
    ("score", "log-lik / doc (movMF) or mean cos (k-means)", ".2f"),
    ("n_iter", "iterations", "d"),
    ("converged_mark", "converged", ""),
    ("clusters_used", "clusters", "d"),
    ("seconds", "seconds", ".1f"),
]


def _note(args: argparse.Namespace, n_docs: int, rows: Sequence[dict[str, Any]]) -> str:
    """What the table's columns mean, and which models made the embeddings."""
    models = {r["embedding"]: r for r in rows if "run_dir" in r}
    listed = "; ".join(
        f"{name}: `{r['run_dir']}` (test perplexity {r['model_test_ppl_corpus'] or float('nan'):.0f}, ELBO, corpus)"
        for name, r in models.items()
    )
    return (
        f"{n_docs} test documents of 20 newsgroups, {args.components} clusters. NVDM embeddings: the mean direction "
        "of q(z|x) (v-NVDM: loc; G-NVDM: normalised posterior mean). tf-idf: raw counts x (1 + log((1 + D) / "
        "(1 + df))) over the test documents, rows of unit length. movMF: `spherical_dists.mixture."
        "fit_vmf_mixture` (soft EM, a kappa per component, tol 1e-6), a document's cluster is its most "
        "responsible component; spherical k-means: cosine assignments until they stop changing. Each method: "
        f"{args.restarts} k-means++ restarts (restart r of both methods from the same seeds, seed {args.seed}), "
        "the one of the highest log-likelihood (movMF) or mean cosine (k-means) reported, with its iterations; "
        "'NMI over restarts' is the range over all of them; 'seconds' is the time of all restarts. NMI: mutual "
        "information over the arithmetic mean of the entropies; ARI: adjusted Rand index. The labels are used "
        f"for scoring only.\n\nModels: {listed}."
    )


def _cluster_models(args: argparse.Namespace) -> tuple[list[dict[str, Any]], BowCorpus]:
    """Embed the test documents with every model (training the missing ones first) and cluster them."""
    presets = args.presets if args.presets is not None else ([] if args.runs else list(DEFAULT_PRESETS))
    run_dirs = [Path(d) for d in args.runs or []]
    run_dirs += train_presets(presets, Path(args.run_dir or EXAMPLES / "runs" / "nvdm" / "train"))
    torch.set_num_threads(args.threads)
    embeddings: dict[str, tuple[torch.Tensor, dict[str, Any]]] = {}
    test = None
    for run_dir in run_dirs:
        model, result, corpus = load_run(run_dir)
        if test is not None and corpus.labels != test.labels:
            raise runs.RunError(f"{run_dir} was trained on other data than {run_dirs[0]}: its test set differs")
        test = corpus
        test_ppl = (result.get("test") or {}).get("ppl_corpus")
        info = {"run_dir": portable_path(run_dir), "model_test_ppl_corpus": test_ppl}
        name = result["label"] if result["label"] not in embeddings else f"{result['label']} ({run_dir})"
        embeddings[name] = (encode(model, Batches(corpus, EVAL_BATCH, shuffle=False)), info)
    if test is None:
        raise runs.RunError("no model: give --runs or --presets")
    if args.tfidf:
        embeddings["tf-idf bag of words"] = (tfidf(test), {})
    print(f"{len(test)} test documents; {len(embeddings)} embedding(s) x {len(METHODS)} methods", flush=True)
    return cluster_all(embeddings, test.labels, args), test


def run(args: argparse.Namespace) -> None:
    for name in ("components", "restarts", "max_iter", "threads"):
        if getattr(args, name) < 1:
            raise runs.RunError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    report = Report(argparse.Namespace(device="cpu"))  # clustering runs on the CPU
    rows, test = _cluster_models(args)
    table = markdown_table(rows, COLUMNS)
    note = _note(args, len(test), rows)
    print("\n" + table + "\n\n" + note)
    if args.json:
        out = Path(args.json)
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "func")}
        settings["runs"] = args.runs and [portable_path(run) for run in args.runs]  # no machine's folders
        settings["run_dir"] = args.run_dir and portable_path(args.run_dir)
        payload = {"settings": settings, "rows": rows}
        title = "Clustering the 20NG test documents: mixture of vMFs on NVDM embeddings"
        wall = report.write(out.parent, out.stem, title, table + "\n\n" + note, payload)
        print(f"\nwrote {out} and {out.with_suffix('.md')}; wall time {wall:.0f} s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=run)
    parser.add_argument("--runs", nargs="+", help="run directories of nvdm.py (result.json and best.pt) to use")
    parser.add_argument(
        "--presets",
        nargs="*",
        help=f"models of nvdm.py presets, trained first where missing (default: {' '.join(DEFAULT_PRESETS)} when "
        "no --runs are given)",
    )
    parser.add_argument("--run-dir", help="where the presets' models live (default: examples/runs/nvdm/train)")
    parser.add_argument("--components", type=int, default=20, help="clusters (default: 20, the newsgroups)")
    parser.add_argument("--restarts", type=int, default=10, help="k-means++ restarts per method (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the restarts (default: 0)")
    parser.add_argument("--max-iter", type=int, default=300, help="iterations per restart at most (default: 300)")
    parser.add_argument(
        "--tfidf", action=argparse.BooleanOptionalAction, default=True, help="tf-idf baseline (default: on)"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default: 1)")
    parser.add_argument("--json", help="write the rows and the provenance to this file, and the table beside it (.md)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return runs.main(build_parser(), argv, interrupted="run the same command to continue (finished models are kept)")


if __name__ == "__main__":
    sys.exit(main())
