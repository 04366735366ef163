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

The result is a function of the models and ``--seed`` (on the CPU).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from textvae import config as cfg
from textvae import runs
from textvae.bow import BowCorpus, BowDataConfig, load_splits
from textvae.checkpoint import load_checkpoint
from textvae.clustering import fit_movmf, spherical_kmeans, summarize, tfidf
from textvae.data import Batches
from textvae.environment import die_with_parent
from textvae.evaluation import encode
from textvae.nvdm_model import NVDM, NVDMConfig
from textvae.report import Report, markdown_table, portable_path

EXAMPLES = Path(__file__).resolve().parent
DEFAULT_PRESETS = ("v-nvdm-50", "g-nvdm-50")
EVAL_BATCH = 500  # documents encoded at once
METHODS = {"movMF": fit_movmf, "spherical k-means": spherical_kmeans}


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
    result = json.loads((run_dir / "result.json").read_text())
    data = cfg.section(BowDataConfig, result["config"])
    splits = load_splits(data)
    model = NVDM(cfg.section(NVDMConfig, result["config"]), splits.train.vocab_size)
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
        payload = {"settings": {k: v for k, v in vars(args).items() if k not in ("json", "func")}, "rows": rows}
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
    return runs.main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
