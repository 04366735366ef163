"""Document VAE (NVDM) with a Gaussian or a von Mises-Fisher latent on 20 Newsgroups: Table 2 of Xu & Durrett (2018).

Quick start: G-NVDM (latent 50) and v-NVDM (latent 25, kappa 100) side by side for 25 epochs with the Adam
presets, then their table (about 2 minutes on 2 CPU cores; the paper's column stays empty, since 25 epochs
is a truncated budget, and a note gives the committed full runs)::

    python examples/nvdm.py compare

One model, any setting (every setting has a flag, see ``train --help``)::

    python examples/nvdm.py train --preset v-nvdm-25 --kappa 50
    python examples/nvdm.py train --latent vmf --learn-kappa --latent-dim 50
    python examples/nvdm.py train --preset g-nvdm-50 --data-dir /path/to/rcv1-v2   # RCV1 in Miao's format

Full reproduction: the 20NG rows of Table 2, a kappa sweep and plots, written to examples/results/nvdm/::

    python examples/nvdm.py reproduce --jobs 2

Learning-rate selection on the validation split (how the Adam presets' rates were chosen; each Table 2 row's
recipe was then chosen on validation by the rule of examples/results/nvdm/recipes.md)::

    python examples/nvdm.py tune --jobs 2

An interrupted command continues where it stopped when run again with ``--resume``. The protocol and the
exact definitions of the metrics are in examples/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from textvae import config as cfg
from textvae import runs
from textvae.bow import BowDataConfig, BowDataset, BowSplits, load_bow_dataset, load_splits, npmi_coherence
from textvae.checkpoint import load_checkpoint
from textvae.data import Batches
from textvae.environment import distributed_rank, process_group
from textvae.evaluation import EvalConfig
from textvae.nvdm_model import NVDM, NVDMConfig
from textvae.report import Report, markdown_table, plot_lines, portable_path, results_table
from textvae.training import TrainConfig

EXAMPLES = Path(__file__).resolve().parent
RUNS = EXAMPLES / "runs" / "nvdm"
RESULTS = EXAMPLES / "results" / "nvdm"
EVAL_BATCH = 500  # documents per evaluation batch (memory: iw_chunk x EVAL_BATCH x vocabulary floats)


@dataclass(frozen=True)
class Experiment:
    """Everything that defines one document-model run."""

    data: BowDataConfig = BowDataConfig()
    model: NVDMConfig = NVDMConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


# Published 20NG test perplexities, Table 2 of Xu & Durrett (2018): v-NVDM with kappa 100 from that paper,
# G-NVDM from Miao et al. (2016).
PAPER_20NG = {("gaussian", 50): 836, ("gaussian", 200): 852, ("vmf", 25): 793, ("vmf", 50): 830, ("vmf", 200): 851}
PAPER_KAPPA = 100.0

# The protocol of examples/README.md: lr / 1.1 after an epoch without validation improvement and a stop
# after 15 such epochs, as in Miao's and Xu & Durrett's NVDM code, with Adam at the learning rate selected on
# the validation split by `tune` (examples/results/nvdm/tuning.md). `tune` starts from these presets.
_PROTOCOL: dict[str, Any] = {
    "hidden": 500,
    "encoder_layers": 2,
    "batch_size": 64,
    "max_epochs": 200,
    "patience": 15,
    "lr_decay": 1.1,
}
ADAM_PRESETS: dict[str, dict[str, Any]] = {
    "g-nvdm-50": {**_PROTOCOL, "latent": "gaussian", "latent_dim": 50, "lr": 1e-3},
    "g-nvdm-200": {**_PROTOCOL, "latent": "gaussian", "latent_dim": 200, "lr": 5e-4},
    "v-nvdm-25": {**_PROTOCOL, "latent": "vmf", "latent_dim": 25, "kappa": PAPER_KAPPA, "lr": 2e-3},
    "v-nvdm-50": {**_PROTOCOL, "latent": "vmf", "latent_dim": 50, "kappa": PAPER_KAPPA, "lr": 2e-3},
    "v-nvdm-200": {**_PROTOCOL, "latent": "vmf", "latent_dim": 200, "kappa": PAPER_KAPPA, "lr": 1e-3},
}
ADAM_PRESETS["v-nvdm-50-learned-kappa"] = {**ADAM_PRESETS["v-nvdm-50"], "learn_kappa": True}
# Two recipes of Xu & Durrett's code (examples/results/nvdm/ablations.md, paper_era_validation.md): its SGD
# recipe, and its recipe of late April / early May 2018 (Adam 5e-3, clipping 2, batches of 50, 5 samples of
# z per step, a stop after 5 epochs without improvement, at most 80 epochs, no decay).
SGD_RECIPE: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 1.0,
    "batch_size": 50,
    "clip_grad": 1.0,
    "dropout": 0.1,
    "hidden": 400,
    "decoder_hidden": 400,
}
PAPER_ERA_RECIPE: dict[str, Any] = {
    "lr": 5e-3,
    "clip_grad": 2.0,
    "batch_size": 50,
    "train_samples": 5,
    "patience": 5,
    "max_epochs": 80,
    "lr_decay": 1.0,
    "dropout": 0.0,
}
# Each Table 2 row's recipe, chosen on validation only by the rule of examples/results/nvdm/recipes.md:
# the Adam preset unless another recipe is better by more than twice the run-to-run spread.
PRESETS: dict[str, dict[str, Any]] = {
    **ADAM_PRESETS,
    "g-nvdm-200": {**ADAM_PRESETS["g-nvdm-200"], **SGD_RECIPE},
    "v-nvdm-25": {**ADAM_PRESETS["v-nvdm-25"], **PAPER_ERA_RECIPE, "hidden": 800, "architecture": "paper-code"},
    "v-nvdm-200": {**ADAM_PRESETS["v-nvdm-200"], **PAPER_ERA_RECIPE, "hidden": 400},
}
TABLE2_ROWS = ("g-nvdm-50", "g-nvdm-200", "v-nvdm-25", "v-nvdm-50", "v-nvdm-200")
QUICK_ROWS = ("g-nvdm-50", "v-nvdm-25")  # the paper's headline pair
# The quick start's fixed budget and recipe, the same for both models: the Adam presets (the Table 2 rows may
# train with other recipes, recipes.md; the budget note points to their numbers).
QUICK_BUDGET = {"max_epochs": 25}
# One thread per quick-start run unless --threads says otherwise: these small products gain little from a
# second thread, and a second thread competing with other work on the machine doubles the wall time
# (examples/README.md has the measurements).
QUICK_THREADS = 1
SWEEP_BASE = "v-nvdm-50"
SWEEP_KAPPAS = (10.0, 20.0, 50.0, 100.0, 150.0, 200.0, 300.0)
# Learning rates tried by `tune`, per latent. A first exploration (lr / 1.2 schedule) found 5e-3 far worse
# than 1e-3 for the Gaussian (and unstable at latent 200), and the vMF best at 2e-3, worse at 5e-3.
TUNE_LRS = {"gaussian": (5e-4, 1e-3, 2e-3), "vmf": (1e-3, 2e-3, 5e-3)}


# ------------------------------------------------------------------------------------------- one run
@cache
def _splits(data: BowDataConfig) -> BowSplits:
    return load_splits(data)


@cache
def _dataset(data_dir: str) -> BowDataset:
    return load_bow_dataset(data_dir or None)


def label(flat: dict[str, Any]) -> str:
    """A short name of a configuration: model family, latent size, kappa."""
    if flat["latent"] == "gaussian":
        return f"G-NVDM d={flat['latent_dim']}"
    kappa = "learned" if flat["learn_kappa"] else f"{flat['kappa']:g}"
    return f"v-NVDM d={flat['latent_dim']} kappa={kappa}"


def setup(experiment: Experiment, rank: int = 0, world_size: int = 1) -> runs.RunSetup:
    """The model and batches of one run (see :class:`textvae.runs.Pipeline`)."""
    splits = _splits(experiment.data)
    totals = splits.train.word_totals()
    word_log_freq = ((totals + 0.5) / (totals + 0.5).sum()).log()  # smoothed, so no word starts at -inf
    model = NVDM(experiment.model, splits.train.vocab_size, word_log_freq.float())
    seed = experiment.train.seed
    return runs.RunSetup(
        model=model,
        train=Batches(
            splits.train, experiment.train.batch_size, shuffle=True, seed=seed, rank=rank, world_size=world_size
        ),
        valid=Batches(splits.valid, EVAL_BATCH, shuffle=False),
        test=lambda: Batches(splits.test, EVAL_BATCH, shuffle=False),
        data={"name": splits.name, "train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test)},
        description=(
            f"{len(splits.train)} train / {len(splits.valid)} valid / {len(splits.test)} test documents ({splits.name})"
        ),
    )


def summary(result: dict[str, Any]) -> str:
    """One line with the test metrics of a result."""
    t = result["test"]
    iw = f"; IW {t['iw_ppl_corpus']:.0f} / {t['iw_ppl_per_doc']:.0f}" if "iw_ppl_corpus" in t else ""
    return (
        f"{result['label']}: test perplexity {t['ppl_corpus']:.0f} corpus / {t['ppl_per_doc']:.0f} per doc "
        f"(ELBO){iw}; KL {t['kl']:.1f} nats/doc; {t['active_units']} active units"
    )


PIPELINE = runs.Pipeline(label=label, setup=setup, summary=summary)


# -------------------------------------------------------------------------------------------- tables
def recipe_max_epochs(config: dict[str, Any]) -> int:
    """The epoch budget of the Table 2 row of this latent and size (its recipe's), else the Adam protocol's."""
    rows = [
        PRESETS[r]
        for r in TABLE2_ROWS
        if (PRESETS[r]["latent"], PRESETS[r]["latent_dim"]) == (config["latent"], config["latent_dim"])
    ]
    return rows[0]["max_epochs"] if rows else _PROTOCOL["max_epochs"]


def truncated(result: dict[str, Any]) -> bool:
    """Whether training stopped at a budget below its recipe's (epochs, steps or time), before early
    stopping could."""
    reason = result.get("stop_reason")
    config = result["config"]
    return reason in ("max steps", "time budget") or (
        reason == "max epochs" and config["max_epochs"] < recipe_max_epochs(config)
    )


def paper_number(result: dict[str, Any]) -> int | None:
    """The published 20NG perplexity of the same configuration, if the paper has that row and the run is
    comparable with it: all of 20NG's training documents, and training not cut short by a smaller budget."""
    c = result["config"]
    if result["data"]["name"] != "20ng" or c["learn_kappa"] or (c["latent"] == "vmf" and c["kappa"] != PAPER_KAPPA):
        return None
    if c.get("limit_docs") or c.get("train_docs") or truncated(result):
        return None
    return PAPER_20NG.get((c["latent"], c["latent_dim"]))


def _budget(result: dict[str, Any]) -> str:
    c = result["config"]
    return {
        "max epochs": f"{c['max_epochs']} epochs",
        "max steps": f"{c.get('max_steps')} steps",
        "time budget": f"a time budget of {c.get('time_budget', 0):g} s",
    }[result["stop_reason"]]


def budget_note(results: Sequence[dict[str, Any]]) -> str:
    """For runs cut short by an epoch budget: say so, and give the committed numbers of the full recipes."""
    cut = [r for r in results if "error" not in r and truncated(r)]
    if not cut:
        return ""
    epochs = ", ".join(f"{r['label']} {r['best_epoch']} of {r['epochs']}" for r in cut)
    note = (
        f"Truncated budget: these runs stopped at {_budget(cut[0])}, before early stopping "
        f"(best epoch: {epochs}; a best epoch at the end means the model was still improving), so the paper "
        "column is left empty."
    )
    committed = RESULTS / "table2.json"
    if committed.exists():
        full = {r["label"]: r for r in json.loads(committed.read_text())["rows"]}
        rows = [full[r["label"]] for r in cut if r["label"] in full]
        numbers = "; ".join(
            f"{r['label']} {r['test']['ppl_corpus']:.0f} corpus (paper {paper_number(r)}, best epoch {r['best_epoch']})"
            for r in rows
        )
        if numbers:
            note += (
                " Each row's own recipe (recipes.md), trained to early stopping (`python examples/nvdm.py reproduce`), "
                f"gives, in the committed examples/results/nvdm/table2.md: {numbers}."
            )
    return note


_TEST_COLUMNS = [
    ("label", "model", ""),
    ("paper", "paper", ""),
    ("ppl_corpus", "ELBO ppl corpus", ".0f"),
    ("ppl_per_doc", "ELBO ppl per doc", ".0f"),
    ("iw_ppl_corpus", "IW ppl corpus", ".0f"),
    ("iw_ppl_per_doc", "IW ppl per doc", ".0f"),
    ("kl", "KL", ".1f"),
    ("kappa", "kappa (mean)", ".1f"),
    ("active_units", "active units", "d"),
    ("best_epoch", "best epoch", "d"),
    ("train_seconds", "train s", ".0f"),
    ("cpu_seconds", "CPU s", ".0f"),
]

TABLE_NOTE = (
    "paper: Xu & Durrett (2018) Table 2 (v-NVDM, kappa 100; G-NVDM quoted from Miao et al. 2016). "
    "corpus = exp(sum_d bound_d / sum_d N_d); per doc = exp(mean_d bound_d / N_d); ELBO bound with 20 samples "
    "of z per document; IW = importance-weighted bound; KL in nats per document; active units: "
    "Var_x(E_q[z_i]) > 0.01 x prior variance of z_i. See examples/README.md."
)


def test_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table of test metrics, the published number beside each row that has one; failed runs
    are listed under the table with their error."""
    return results_table(results, _TEST_COLUMNS, paper_number)


# ------------------------------------------------------------------------------------------ commands
def expected_cost(experiment: Experiment) -> float:
    """A rough relative training time, so that parallel runs start with the longest: the latent dimension,
    a vMF run ahead of a Gaussian one of the same size. With two jobs the two d=200 rows of Table 2 start
    first, whichever is longer (at 42317cc, with each row's recipe: G-NVDM d=200 trained for 285 s, v-NVDM
    d=200 for 126 s, the other rows for 92-133 s)."""
    return experiment.model.latent_dim + (0.5 if experiment.model.latent == "vmf" else 0.0)


def configure(
    args: argparse.Namespace,
    preset: str | None,
    extra: dict[str, Any] | None = None,
    presets: dict[str, dict[str, Any]] = PRESETS,
) -> Experiment:
    """Defaults < preset (of ``presets``) < ``extra`` < flags given on the command line."""
    base = {**(presets[preset] if preset else {}), **(extra or {})}
    return cfg.from_args(Experiment, args, base)


def cmd_train(args: argparse.Namespace) -> None:
    config = configure(args, args.preset)
    flat = cfg.to_flat(config)
    run_dir = Path(args.run_dir or RUNS / "train" / (args.preset or f"{flat['latent']}-{flat['latent_dim']}"))
    with process_group():
        result = runs.run_one(PIPELINE, config, run_dir, args.resume)
        if distributed_rank()[0] == 0:
            print("\n" + test_table([result]) + "\n\n" + TABLE_NOTE)


def cmd_compare(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    quick = {**QUICK_BUDGET, "threads": QUICK_THREADS}
    jobs = [(name, configure(args, name, quick, ADAM_PRESETS)) for name in QUICK_ROWS]
    results = runs.run_many(PIPELINE, jobs, Path(args.run_dir or RUNS / "compare"), args.resume, args.jobs)
    print("\n" + test_table(results) + "\n\n" + budget_note(results) + "\n\n" + TABLE_NOTE)
    print(f"\nwall time {time.perf_counter() - started:.0f} s (this session)")


def cmd_tune(args: argparse.Namespace) -> None:
    report = Report(args)
    jobs = [
        (f"{p}/lr-{lr:g}", configure(args, p, {"lr": lr}, ADAM_PRESETS))
        for p in args.presets
        for lr in (args.lrs or TUNE_LRS[ADAM_PRESETS[p]["latent"]])
    ]
    run_dir = Path(args.run_dir or RUNS / "tune")
    results = runs.run_many(PIPELINE, jobs, run_dir, args.resume, args.jobs, test=False, cost=expected_cost)
    rows = []
    for (name, _), r in zip(jobs, results, strict=True):
        row = {"preset": name.split("/")[0], "lr": r["config"]["lr"]}
        if "error" in r:  # diverged: never chosen
            row.update(valid_ppl_corpus=math.inf, best_epoch=None, error=r["error"])
        else:
            row.update(best_epoch=r["best_epoch"], **r["valid"])
        rows.append(row)
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["preset"] not in best or row["valid_ppl_corpus"] < best[row["preset"]]["valid_ppl_corpus"]:
            best[row["preset"]] = row
    for row in rows:
        row["chosen"] = "yes" if best[row["preset"]] is row else ""
    columns = [
        ("preset", "preset", ""),
        ("lr", "lr", "g"),
        ("valid_ppl_corpus", "valid ppl corpus", ".1f"),
        ("valid_ppl_per_doc", "valid ppl per doc", ".1f"),
        ("valid_kl", "valid KL", ".1f"),
        ("best_epoch", "best epoch", "d"),
        ("chosen", "chosen", ""),
    ]
    table = markdown_table(rows, columns)
    print("\n" + table)
    note = (
        "Learning rate chosen per row by the validation ELBO (corpus-level perplexity, 1 sample of z) of the "
        "best epoch; 1,000 documents held out from the training file; the test set is not used."
    )
    title = "Learning-rate selection on validation (20NG)"
    payload = {"rows": rows, "chosen": {p: r["lr"] for p, r in best.items()}}
    wall = report.write(Path(args.out), "tuning", title, table + "\n\n" + note, payload)
    print(f"\nwall time {wall:.0f} s")


def cmd_reproduce(args: argparse.Namespace) -> None:
    root = Path(args.run_dir or RUNS / "reproduce")
    out = Path(args.out)
    report = Report(args)
    if args.part in ("all", "table2"):
        jobs = [(name, configure(args, name)) for name in TABLE2_ROWS]
        results = runs.run_many(PIPELINE, jobs, root / "table2", args.resume, args.jobs, cost=expected_cost)
        table = test_table(results)
        title = "NVDM on 20NG: Table 2 rows"
        wall = report.write(out, "table2", title, table + "\n\n" + TABLE_NOTE, {"rows": results})
        print("\n" + table + "\n\n" + TABLE_NOTE + f"\n\nTable 2 rows: wall time {wall:.0f} s")
        curves = {}
        for (name, _), r in zip(jobs, results, strict=True):
            history = runs.load_history(root / "table2" / name)
            curves[r["label"]] = ([h["epoch"] for h in history], [h["valid_ppl_corpus"] for h in history])
        plot_lines(
            out / "training_curves.png",
            curves,
            xlabel="epoch",
            ylabel="validation perplexity (ELBO, corpus-level)",
            title="NVDM on 20NG: validation perplexity during training",
        )
    if args.part in ("all", "sweep"):
        jobs = [(f"kappa-{k:g}", configure(args, SWEEP_BASE, {"kappa": k})) for k in SWEEP_KAPPAS]
        jobs.append(("learned-kappa", configure(args, "v-nvdm-50-learned-kappa")))
        results = runs.run_many(PIPELINE, jobs, root / "sweep", args.resume, args.jobs, cost=expected_cost)
        table = test_table(results)
        title = "v-NVDM on 20NG, latent 50: test perplexity against kappa"
        wall = report.write(out, "kappa_sweep", title, table + "\n\n" + TABLE_NOTE, {"rows": results})
        print("\n" + table + "\n\n" + TABLE_NOTE + f"\n\nkappa sweep: wall time {wall:.0f} s")
        fixed = [r for r in results[: len(SWEEP_KAPPAS)] if "error" not in r]
        kappas = [r["config"]["kappa"] for r in fixed]
        series = {
            title: (kappas, [r["test"][key] for r in fixed])
            for title, key in (
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
            title="v-NVDM on 20NG, latent 50",
            logx=True,
            hlines={"paper, kappa 100: 830": PAPER_20NG[("vmf", 50)]},
        )


def cmd_topics(args: argparse.Namespace) -> None:
    """Topic quality of trained models: the NPMI coherence of the decoder's top words per latent direction."""
    if args.top_words < 2:
        raise runs.RunError(f"--top-words must be >= 2 (NPMI scores pairs of words), got {args.top_words}")
    report, rows = Report(args), []
    for run_dir in map(Path, args.runs):
        result = runs.read_result(run_dir)
        experiment = cfg.from_flat(Experiment, result["config"])
        dataset = _dataset(experiment.data.data_dir)
        model = NVDM(experiment.model, len(dataset.vocab))
        model.load_state_dict(load_checkpoint(run_dir / "best.pt", torch.device("cpu")))
        # Topic k: the words whose output logit grows most from z = 0 to z = e_k, the unit vector of latent
        # direction k (a point of the vMF's sphere, one prior standard deviation of the Gaussian's); for a
        # linear decoder that is column k of its weight.
        with torch.no_grad():
            eye = torch.eye(experiment.model.latent_dim)
            change = model.decoder(eye) - model.decoder(torch.zeros_like(eye[:1]))  # (latent_dim, V)
        topics = change.topk(args.top_words, dim=-1).indices
        scores = npmi_coherence(topics, dataset.train)
        best = scores.argsort(descending=True)[:3].tolist()
        examples = "; ".join(" ".join(dataset.vocab[w] for w in topics[k].tolist()) for k in best)
        row = {"label": result["label"], "ppl_corpus": result["test"]["ppl_corpus"], "topics": len(scores)}
        row.update(
            npmi=float(scores.mean()), npmi_std=float(scores.std()), positive=float((scores > 0).double().mean())
        )
        rows.append({**row, "run_dir": portable_path(run_dir), "top_topics": examples})
        print(f"{row['label']}: NPMI {row['npmi']:.3f} over {row['topics']} topics; best: {examples}", flush=True)
    columns = [("label", "model", ""), ("ppl_corpus", "ELBO ppl corpus", ".0f"), ("topics", "topics", "d")]
    columns += [("npmi", "NPMI (mean)", ".3f"), ("npmi_std", "NPMI (std)", ".3f"), ("positive", "share > 0", ".2f")]
    note = (
        f"Topic k of a model: the {args.top_words} words whose output logit grows most from z = 0 to z = e_k, the "
        "unit vector of latent direction k; for a linear decoder, the words of largest weight in column k (Miao et "
        "al. 2017, Srivastava & Sutton 2017); for a decoder with a tanh layer (the SGD recipe's), our extension of "
        "that definition. NPMI: mean over the topic's word pairs of log(P(i,j) / P(i) P(j)) / -log P(i,j), P the "
        "share of documents containing the words, on the 20NG training file (11,268 documents, document "
        "co-occurrence; Lau et al. 2014); a pair that never co-occurs counts -1. Mean and standard deviation over "
        "the model's topics."
    )
    table = markdown_table(rows, columns)
    print("\n" + table + "\n\n" + note)
    if args.out:
        title = "Topic coherence (NPMI) of the NVDM decoders on 20NG"
        examples_lines = "\n".join(f"- {r['label']}: {r['top_topics']}" for r in rows)
        body = f"{table}\n\n{note}\n\nThe three most coherent topics of each model:\n\n{examples_lines}"
        report.write(Path(args.out), "topics", title, body, {"rows": rows, "top_words": args.top_words})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, func: Any, jobs: bool = True) -> argparse.ArgumentParser:
        return runs.add_command(commands, name, help_text, func, "examples/runs/nvdm", jobs)

    p = command("train", "train and evaluate one model", cmd_train, jobs=False)
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named configuration")
    cfg.add_flags(p, Experiment)
    p = command("compare", "quick start: G-NVDM (d=50) and v-NVDM (d=25, kappa 100), 25 epochs each", cmd_compare)
    cfg.add_flags(p, Experiment)
    p = command("tune", "select the learning rate of each Adam preset on the validation split", cmd_tune)
    p.add_argument("--presets", nargs="+", choices=sorted(ADAM_PRESETS), default=list(TABLE2_ROWS))
    p.add_argument("--lrs", nargs="+", type=float, help=f"learning rates to try (default, per latent: {TUNE_LRS})")
    p.add_argument("--out", default=str(RESULTS), help="where tuning.md / tuning.json go")
    cfg.add_flags(p, Experiment)
    p = command("reproduce", "Table 2 rows for 20NG, a kappa sweep at latent 50, plots", cmd_reproduce)
    p.add_argument("--part", choices=("all", "table2", "sweep"), default="all")
    p.add_argument("--out", default=str(RESULTS), help="where the tables and plots go")
    cfg.add_flags(p, Experiment)
    p = commands.add_parser("topics", help="NPMI topic coherence of trained models", description=cmd_topics.__doc__)
    p.set_defaults(func=cmd_topics)
    p.add_argument("--runs", nargs="+", required=True, help="run directories (result.json and best.pt)")
    p.add_argument("--top-words", type=int, default=10, help="words per topic (default: 10)")
    p.add_argument("--out", help="where topics.md / topics.json go (default: print only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return runs.main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
