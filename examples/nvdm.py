"""Document VAE (NVDM) on 20 Newsgroups with a Gaussian or a von Mises-Fisher latent: Table 2 of Xu & Durrett (2018).

Quick start (G-NVDM and v-NVDM side by side, a few minutes on 2 CPU cores)::

    python examples/nvdm.py compare

One model, any setting (every setting has a flag; see --help)::

    python examples/nvdm.py train --preset v-nvdm-25 --kappa 50
    python examples/nvdm.py train --latent gaussian --latent-dim 50 --lr 2e-3 --run-dir examples/runs/g50
    python examples/nvdm.py train --preset g-nvdm-50 --data-dir /path/to/rcv1-v2   # RCV1 in Miao's format

Full reproduction (the 20NG rows of Table 2, a kappa sweep, plots; writes examples/results/nvdm/)::

    python examples/nvdm.py reproduce

Interrupted runs continue with ``--resume`` (same command plus the flag). See examples/README.md for the
protocol and the exact definitions of the metrics.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from textvae import config as cfg
from textvae.bow import BowDataConfig, BowSplits, load_splits
from textvae.data import Batches
from textvae.evaluation import EvalConfig, evaluate
from textvae.nvdm_model import NVDM, NVDMConfig
from textvae.results import markdown_table, plot_lines, run_metadata, write_json
from textvae.training import NonFiniteLossError, TrainConfig, Trainer, seed_everything, select_device

EXAMPLES = Path(__file__).resolve().parent
RUNS = EXAMPLES / "runs" / "nvdm"
RESULTS = EXAMPLES / "results" / "nvdm"


@dataclass(frozen=True)
class Experiment:
    """Everything that defines one document-model run."""

    data: BowDataConfig = BowDataConfig()
    model: NVDMConfig = NVDMConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


# Published 20NG test perplexities (Table 2 of Xu & Durrett 2018; the Gaussian rows are Miao et al. 2016).
PAPER_20NG = {("gaussian", 50): 836, ("gaussian", 200): 852, ("vmf", 25): 793, ("vmf", 50): 830, ("vmf", 200): 851}

# Settings shared by every preset: the protocol of examples/README.md. The learning rates were chosen on
# the validation split only (examples/results/nvdm/tuning.md).
_PROTOCOL: dict[str, Any] = {"hidden": 500, "encoder_layers": 2, "batch_size": 64, "max_epochs": 200, "patience": 10}
_GAUSSIAN = {**_PROTOCOL, "latent": "gaussian", "lr": 1e-3}
_VMF = {**_PROTOCOL, "latent": "vmf", "kappa": 100.0, "lr": 2e-3}

PRESETS: dict[str, dict[str, Any]] = {
    "g-nvdm-50": {**_GAUSSIAN, "latent_dim": 50},
    "g-nvdm-200": {**_GAUSSIAN, "latent_dim": 200},
    "v-nvdm-25": {**_VMF, "latent_dim": 25},
    "v-nvdm-50": {**_VMF, "latent_dim": 50},
    "v-nvdm-200": {**_VMF, "latent_dim": 200},
    "v-nvdm-50-learned-kappa": {**_VMF, "latent_dim": 50, "learn_kappa": True},
}
TABLE2_ROWS = ("g-nvdm-50", "g-nvdm-200", "v-nvdm-25", "v-nvdm-50", "v-nvdm-200")
# The quick start: the paper's headline pair under a fixed small budget.
QUICK = {"max_epochs": 25, "iw_samples": 100}
QUICK_ROWS = ("g-nvdm-50", "v-nvdm-25")
SWEEP_KAPPAS = (10.0, 20.0, 50.0, 100.0, 150.0, 200.0, 300.0)
SWEEP_BASE = "v-nvdm-50"

_EVAL_BATCH = 500


# ------------------------------------------------------------------------------------------- running
@cache
def _splits(data: BowDataConfig) -> BowSplits:
    return load_splits(data)


def _label(flat: dict[str, Any]) -> str:
    """A short name of a configuration: model family, latent size, kappa."""
    if flat["latent"] == "gaussian":
        return f"G-NVDM d={flat['latent_dim']}"
    kappa = "learned" if flat["learn_kappa"] else f"{flat['kappa']:g}"
    return f"v-NVDM d={flat['latent_dim']} kappa={kappa}"


def run_one(experiment: Experiment, run_dir: Path, resume: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train one model (or continue it), evaluate it on the test set, and write ``run_dir/result.json``.

    With ``resume`` and a finished ``result.json`` for the same configuration, that result is returned as is.
    """
    flat = cfg.to_flat(experiment)
    result_path = run_dir / "result.json"
    if resume and result_path.exists():
        import json

        previous = json.loads(result_path.read_text())
        if previous["config"] == flat:
            log(f"{_label(flat)}: already finished in {run_dir}")
            return previous
    started = time.perf_counter()
    if experiment.train.threads:
        torch.set_num_threads(experiment.train.threads)
    seed_everything(experiment.train.seed)
    splits = _splits(experiment.data)
    totals = splits.train.word_totals()
    word_log_freq = (totals + 0.5).log() - (totals + 0.5).sum().log()  # smoothed: no word has -inf bias
    model = NVDM(experiment.model, splits.train.vocab_size, word_log_freq.float())
    trainer = Trainer(
        model,
        Batches(splits.train, experiment.train.batch_size, shuffle=True, seed=experiment.train.seed),
        Batches(splits.valid, _EVAL_BATCH, shuffle=False),
        experiment.train,
        run_dir,
        run_config=flat,
        log=log,
    )
    log(
        f"{_label(flat)}: {len(splits.train)} train / {len(splits.valid)} valid / {len(splits.test)} test docs "
        f"({splits.name}), device {trainer.device}, {torch.get_num_threads()} threads, run dir {run_dir}"
    )
    fit = trainer.fit(resume=resume)
    log(f"{_label(flat)}: best epoch {fit.best_epoch} of {fit.epochs} ({fit.stop_reason}); evaluating on test...")
    eval_started = time.perf_counter()
    test = evaluate(model, lambda: Batches(splits.test, _EVAL_BATCH, shuffle=False), experiment.eval, log)
    result = {
        "label": _label(flat),
        "config": flat,
        "data": {"name": splits.name, "train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test)},
        "best_epoch": fit.best_epoch,
        "epochs": fit.epochs,
        "stop_reason": fit.stop_reason,
        "train_seconds": fit.train_seconds,
        "eval_seconds": time.perf_counter() - eval_started,
        "valid": fit.best_valid,
        "test": test,
        "session_seconds": time.perf_counter() - started,
    }
    write_json(result_path, result)
    log(_summary(result))
    return result


def _summary(result: dict[str, Any]) -> str:
    t = result["test"]
    iw = f", IW {t['iw_ppl_corpus']:.0f} / {t['iw_ppl_per_doc']:.0f}" if "iw_ppl_corpus" in t else ""
    return (
        f"{result['label']}: test perplexity {t['ppl_corpus']:.0f} corpus / {t['ppl_per_doc']:.0f} per doc (ELBO){iw}; "
        f"KL {t['kl']:.1f} nats/doc, {t['active_units']} active units"
    )


# -------------------------------------------------------------------------------------------- tables
_COLUMNS = [
    ("label", "model", ""),
    ("paper", "paper 20NG", ""),
    ("ppl_corpus", "ELBO ppl, corpus", ".0f"),
    ("ppl_per_doc", "ELBO ppl, per doc", ".0f"),
    ("iw_ppl_corpus", "IW ppl, corpus", ".0f"),
    ("iw_ppl_per_doc", "IW ppl, per doc", ".0f"),
    ("kl", "KL (nats/doc)", ".1f"),
    ("active_units", "active units", "d"),
    ("best_epoch", "best epoch", "d"),
    ("train_seconds", "train time (s)", ".0f"),
]


def table_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten run results into table rows, with the published number beside each where there is one."""
    rows = []
    for r in results:
        c = r["config"]
        paper = None if c["learn_kappa"] else PAPER_20NG.get((c["latent"], c["latent_dim"]))
        if paper is not None and (c["latent"] == "gaussian" or c["kappa"] == 100.0) and r["data"]["name"] == "20ng":
            paper = str(paper)
        else:
            paper = None
        rows.append(
            {**r["test"], "label": r["label"], "paper": paper, **{k: r[k] for k in ("best_epoch", "train_seconds")}}
        )
    return rows


def print_table(results: Sequence[dict[str, Any]]) -> str:
    table = markdown_table(table_rows(results), _COLUMNS)
    print("\n" + table + "\n")
    print(
        "Paper numbers: v-NVDM from Xu & Durrett (2018), G-NVDM from Miao et al. (2016), as quoted in Table 2.\n"
        "corpus = exp(sum of bounds / sum of tokens); per doc = exp(mean over documents of bound / tokens);\n"
        "IW = importance-weighted bound. See examples/README.md for which definition each paper used."
    )
    return table


# ------------------------------------------------------------------------------------------ commands
def _experiment(preset: str | None, args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Experiment:
    base = dict(PRESETS[preset]) if preset else {}
    base.update(extra or {})
    return cfg.from_args(Experiment, args, base)


def _run_many(
    names: Sequence[str], experiments: Sequence[Experiment], root: Path, resume: bool
) -> list[dict[str, Any]]:
    return [run_one(e, root / name, resume) for name, e in zip(names, experiments)]


def cmd_train(args: argparse.Namespace) -> None:
    experiment = _experiment(args.preset, args)
    flat = cfg.to_flat(experiment)
    default_name = args.preset or f"{flat['latent']}-{flat['latent_dim']}"
    run_dir = Path(args.run_dir) if args.run_dir else RUNS / "train" / default_name
    print(cfg.describe(experiment))
    result = run_one(experiment, run_dir, args.resume)
    print_table([result])


def cmd_compare(args: argparse.Namespace) -> None:
    experiments = [_experiment(name, args, QUICK) for name in QUICK_ROWS]
    root = Path(args.run_dir) if args.run_dir else RUNS / "compare"
    started = time.perf_counter()
    results = _run_many(QUICK_ROWS, experiments, root, args.resume)
    print_table(results)
    print(f"total wall time {time.perf_counter() - started:.0f} s (this session)")


def cmd_reproduce(args: argparse.Namespace) -> None:
    root = Path(args.run_dir) if args.run_dir else RUNS / "reproduce"
    out = Path(args.out)
    meta = run_metadata(select_device(getattr(args, "device", "auto")))
    parts = {"table2", "sweep"} if args.part == "all" else {args.part}
    if "table2" in parts:
        started = time.perf_counter()
        results = _run_many(TABLE2_ROWS, [_experiment(n, args) for n in TABLE2_ROWS], root / "table2", args.resume)
        wall = time.perf_counter() - started
        table = print_table(results)
        print(f"Table 2 rows: wall time {wall:.0f} s")
        write_json(out / "table2.json", {**meta, "wall_seconds": wall, "rows": results})
        _write_markdown(out / "table2.md", "20NG document models (Table 2 rows)", meta, wall, table)
        curves = {
            r["label"]: (
                [h["epoch"] for h in _history(root / "table2" / n)],
                [h["valid_ppl_corpus"] for h in _history(root / "table2" / n)],
            )
            for n, r in zip(TABLE2_ROWS, results)
        }
        plot_lines(
            out / "training_curves.png",
            curves,
            xlabel="epoch",
            ylabel="validation perplexity (ELBO, corpus)",
            title="NVDM on 20NG: validation perplexity during training",
        )
    if "sweep" in parts:
        started = time.perf_counter()
        names = [f"kappa-{k:g}" for k in SWEEP_KAPPAS]
        experiments = [_experiment(SWEEP_BASE, args, {"kappa": k}) for k in SWEEP_KAPPAS]
        results = _run_many(names, experiments, root / "sweep", args.resume)
        learned = run_one(_experiment("v-nvdm-50-learned-kappa", args), root / "sweep" / "learned", args.resume)
        wall = time.perf_counter() - started
        table = print_table([*results, learned])
        print(f"kappa sweep: wall time {wall:.0f} s")
        write_json(out / "kappa_sweep.json", {**meta, "wall_seconds": wall, "rows": [*results, learned]})
        _write_markdown(
            out / "kappa_sweep.md", "v-NVDM on 20NG, latent 50: perplexity against kappa", meta, wall, table
        )
        series = {
            name: (list(SWEEP_KAPPAS), [r["test"][key] for r in results])
            for name, key in (
                ("ELBO, corpus", "ppl_corpus"),
                ("ELBO, per doc", "ppl_per_doc"),
                ("IW, corpus", "iw_ppl_corpus"),
                ("IW, per doc", "iw_ppl_per_doc"),
            )
        }
        plot_lines(
            out / "kappa_sweep.png",
            series,
            xlabel="kappa (fixed)",
            ylabel="test perplexity",
            title="v-NVDM, 20NG, latent 50",
            logx=True,
            hlines={"paper v-NVDM d=50: 830": PAPER_20NG[("vmf", 50)]},
        )


def _history(run_dir: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def _write_markdown(path: Path, title: str, meta: dict[str, Any], wall: float, table: str) -> None:
    m = meta["machine"]
    text = (
        f"# {title}\n\n{table}\n\n"
        f"- command: `{meta['command']}`\n- commit: `{meta['commit']}`\n"
        f"- machine: {m['cpu']}, {m['cpu_count']} CPUs, {m['torch_threads']} torch threads, device {m['device']}; "
        f"torch {m['torch']}, Python {m['python']}\n- date: {meta['date']}\n- wall time: {wall:.0f} s\n\n"
        "Test perplexities of the best-validation checkpoint. corpus = exp(sum_d bound_d / sum_d N_d); per doc = "
        "exp(mean_d bound_d / N_d); ELBO bound with 20 samples of z per document; IW = importance-weighted bound "
        "(100 samples). KL in nats per document; active units: Var_x(E_q[z_i]) > 0.01 x prior variance.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--run-dir", help="where checkpoints, metrics.jsonl and result.json go (default under examples/runs/nvdm/)"
        )
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
        cfg.add_flags(p, Experiment)

    p = commands.add_parser("train", help="train and evaluate one model")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named configuration")
    common(p)
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("compare", help="quick start: G-NVDM (d=50) and v-NVDM (d=25) on 20NG, short budget")
    common(p)
    p.set_defaults(func=cmd_compare)

    p = commands.add_parser("reproduce", help="Table 2 rows for 20NG, kappa sweep, plots")
    p.add_argument("--part", choices=("all", "table2", "sweep"), default="all")
    p.add_argument("--out", default=str(RESULTS), help="where the results tables and plots go")
    common(p)
    p.set_defaults(func=cmd_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command with --resume to continue", file=sys.stderr)
        return 130
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
