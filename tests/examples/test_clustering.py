"""Clustering of document embeddings (issue 8): encoder output, scores, clustering methods, the script end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cluster_20ng
import nvdm
import pytest
import torch
from cluster_20ng import ari, fit_movmf, nmi, spherical_kmeans, tfidf
from textvae.data import Batches
from textvae.evaluation import encode
from textvae.nvdm_model import NVDM, NVDMConfig

from spherical_dists import VonMisesFisher

from .conftest import random_corpus


@pytest.mark.parametrize("latent", ["vmf", "gaussian"])
def test_encode_gives_unit_vectors_in_document_order(latent: str) -> None:
    torch.manual_seed(0)
    corpus = random_corpus(37, 30, seed=3)
    model = NVDM(NVDMConfig(latent=latent, latent_dim=5, hidden=16, dropout=0.5), corpus.vocab_size)
    model.train()
    x = encode(model, Batches(corpus, 8, shuffle=False))
    assert x.shape == (37, 5) and x.dtype == torch.float64
    assert torch.allclose(x.norm(dim=-1), torch.ones(37, dtype=torch.float64))
    assert model.training  # the mode is given back
    with torch.no_grad():
        model.eval()
        q = model.posterior(corpus.collate(torch.arange(37)))
    direction = q.loc if latent == "vmf" else q.mean / q.mean.norm(dim=-1, keepdim=True)
    assert torch.allclose(x, direction.double(), atol=1e-6)  # eval mode: no dropout, the same in any batching


def test_nmi_and_ari_known_values_and_limits() -> None:
    # Values of scikit-learn's normalized_mutual_info_score and adjusted_rand_score.
    assert nmi([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(0.8)
    assert ari([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)
    truth = [str(i % 7) for i in range(700)]
    renamed = [chr(ord("a") + (int(t) * 3) % 7) for t in truth]  # the same partition, other names
    assert nmi(truth, renamed) == pytest.approx(1.0) and ari(truth, renamed) == pytest.approx(1.0)
    gen = torch.Generator().manual_seed(0)
    random = torch.randint(7, (700,), generator=gen).tolist()
    assert abs(nmi(truth, random)) < 0.03 and abs(ari(truth, random)) < 0.01
    assert nmi([1, 1, 1], [5, 5, 5]) == 1.0 and ari([1, 1, 1], [5, 5, 5]) == 1.0
    with pytest.raises(ValueError, match="3 reference labels for 2"):
        nmi([1, 2, 3], [1, 2])


def _separated_clusters() -> tuple[torch.Tensor, list[int]]:
    gen = torch.Generator().manual_seed(1)
    locs = torch.eye(6, dtype=torch.float64)[:4]
    x = VonMisesFisher(locs, torch.full((4,), 60.0, dtype=torch.float64)).sample((50,), generator=gen)
    return x.reshape(-1, 6), list(range(4)) * 50


@pytest.mark.parametrize("method", [fit_movmf, spherical_kmeans])
def test_clustering_recovers_separated_clusters_and_is_seeded(method) -> None:
    x, truth = _separated_clusters()
    first = method(x, 4, restarts=3, seed=5)
    assert nmi(truth, first.labels.tolist()) == pytest.approx(1.0)
    assert first.converged and len(first.restart_scores) == 3 and first.score == max(first.restart_scores)
    again = method(x, 4, restarts=3, seed=5)
    assert torch.equal(first.labels, again.labels) and first.restart_scores == again.restart_scores
    if method is fit_movmf:
        assert first.concentrations.shape == (4,) and (first.concentrations > 20).all()


def test_tfidf_rows_have_unit_length() -> None:
    corpus = random_corpus(20, 12, seed=4)
    x = tfidf(corpus)
    assert x.shape == (20, 12) and torch.allclose(x.norm(dim=-1), torch.ones(20, dtype=torch.float64))
    assert ((x > 0) == (corpus.collate(torch.arange(20)) > 0)).all()


TINY = [
    "--latent-dim", "4", "--kappa", "20", "--hidden", "32", "--batch-size", "32", "--max-epochs", "1",
    "--limit-docs", "200", "--valid-docs", "40", "--eval-samples", "2", "--iw-samples", "0", "--no-progress",
]  # fmt: skip


@pytest.mark.slow
def test_script_clusters_and_writes_a_deterministic_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = [tmp_path / "vmf", tmp_path / "gaussian"]
    for run, latent in zip(runs, ("vmf", "gaussian"), strict=True):
        assert nvdm.main(["train", "--run-dir", str(run), *TINY, "--latent", latent]) == 0
    common = ["--runs", *map(str, runs), "--components", "5", "--restarts", "2", "--max-iter", "50"]
    assert cluster_20ng.main([*common, "--json", str(tmp_path / "out" / "clustering.json")]) == 0
    report = json.loads((tmp_path / "out" / "clustering.json").read_text())
    assert report["settings"]["runs"] == ["<outside>/vmf", "<outside>/gaussian"]  # no folder of this machine
    rows = report["rows"]
    assert [(r["embedding"], r["method"]) for r in rows] == [
        (e, m)
        for e in ("v-NVDM d=4 kappa=20", "G-NVDM d=4", "tf-idf bag of words")
        for m in ("movMF", "spherical k-means")
    ]
    assert all(0 <= r["nmi"] <= 1 and len(r["restart_nmi"]) == 2 for r in rows)
    assert rows[0]["kappa_min"] > 0 and rows[4]["dim"] == 2000
    assert report["command"].startswith("python") and "wall_seconds" in report
    markdown = (tmp_path / "out" / "clustering.md").read_text()
    assert "| v-NVDM d=4 kappa=20 | 4 | movMF |" in markdown and "wall time" in markdown

    capsys.readouterr()  # the same seed gives the same clusters
    assert cluster_20ng.main([*common, "--no-tfidf"]) == 0
    assert f"| {rows[0]['nmi']:.3f} | {rows[0]['ari']:.3f} |" in capsys.readouterr().out


def test_script_reports_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cluster_20ng.main(["--runs", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nothing" in err[0]


def test_a_preset_is_trained_by_the_document_script_in_a_child_process(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The clustering script runs `nvdm.py train --preset ... --resume` as a program (it imports nothing of
    nvdm.py); a failure there is one error line here."""
    assert cluster_20ng.main(["--presets", "no-such-preset", "--run-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: `nvdm.py train --preset no-such-preset` failed (exit code 2)")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"config": {', "is damaged"),
        ('{"label": "RNNLM", "config": {"latent": "none"}, "test": {}}', "is not a finished run of nvdm.py"),
    ],
)
def test_a_damaged_or_foreign_run_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: str, says: str
) -> None:
    """A truncated result.json, or a run directory of sentence_vae.py, used to end in a traceback."""
    (tmp_path / "result.json").write_text(content)
    assert cluster_20ng.main(["--runs", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'result.json'} {says}")
