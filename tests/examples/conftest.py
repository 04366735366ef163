"""Small synthetic corpora for the tests of the examples (pytest puts examples/ on the import path: see
``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from textvae.bow import BowCorpus


def random_corpus(n_docs: int, vocab_size: int, seed: int) -> BowCorpus:
    """A corpus of ``n_docs`` documents whose words come from one of two topics (so there is something
    for a latent variable to learn), built directly in CSR form with a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    half = vocab_size // 2
    row_ptr, ids, counts = [0], [], []
    for d in range(n_docs):
        topic = d % 2
        n_words = min(int(torch.randint(3, 9, (), generator=gen)), half)
        words = torch.randperm(half, generator=gen)[:n_words] + topic * half
        ids += words.tolist()
        counts += torch.randint(1, 4, (n_words,), generator=gen).tolist()
        row_ptr.append(len(ids))
    return BowCorpus(
        torch.tensor(row_ptr),
        torch.tensor(ids),
        torch.tensor(counts, dtype=torch.float32),
        tuple(str(d % 2) for d in range(n_docs)),
        vocab_size,
    )


@pytest.fixture(autouse=True)
def _restore_global_torch_state() -> Iterator[None]:
    """``seed_everything`` switches on deterministic algorithms for the whole process (and sets a cuBLAS
    variable); put both back so that the rest of the suite runs as it would without these tests."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


@pytest.fixture
def tiny_corpora() -> tuple[BowCorpus, BowCorpus]:
    """(train, valid): 96 and 32 two-topic documents over 40 words."""
    return random_corpus(96, 40, seed=1), random_corpus(32, 40, seed=2)


def write_sentence_corpus(directory: Path, seed: int = 0, sizes: tuple[int, int, int] = (160, 40, 40)) -> Path:
    """PTB-format ``train/valid/test.txt`` in ``directory``: sentences of 3 to 12 words, each drawn from one of
    two disjoint word sets (so that a latent code has something to carry), from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    words = [[f"a{i}" for i in range(12)], [f"b{i}" for i in range(12)]]
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), sizes):
        lines = []
        for s in range(n):
            length = int(torch.randint(3, 13, (), generator=gen))
            ids = torch.randint(0, 12, (length,), generator=gen).tolist()
            lines.append(" ".join(words[s % 2][i] for i in ids))
        (directory / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return directory


def shared_data(name: str) -> Path:
    """``shared/data/name`` beside the repository (or at /work/shared/data), or skip the test: the Yelp and
    Yahoo files are not shipped with the examples."""
    repository = Path(__file__).resolve().parents[2]
    for root in (repository.parent / "shared" / "data", Path("/work/shared/data")):
        if (root / name).is_dir():
            return root / name
    pytest.skip(f"data set {name} not found next to the repository")
