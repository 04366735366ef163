"""The bag-of-words reader (NVDM format), held-out splits and batching."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import pytest
import torch
from textvae.bow import BowDataConfig, load_bow_dataset, load_splits, read_feat, read_vocab
from textvae.data import Batches, DataFormatError, holdout_split

from .conftest import random_corpus

FEAT = "3 2:1 4:2\n1 1:5\n2 5:1 3:1 1:2\n"
# The same three documents as dense rows over a 5-word vocabulary, written out by hand.
DENSE = [
    [0, 1, 0, 2, 0],
    [5, 0, 0, 0, 0],
    [2, 0, 1, 0, 1],
]


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["train.feat", "train.feat.gz"])
def test_read_feat_plain_and_gzip(tmp_path: Path, name: str) -> None:
    corpus = read_feat(_write(tmp_path / name, FEAT), vocab_size=5)
    assert len(corpus) == 3
    assert corpus.labels == ("3", "1", "2")
    assert corpus.collate(torch.arange(3)).tolist() == DENSE
    assert corpus.doc_lengths.tolist() == [3, 5, 4]
    assert corpus.word_totals().tolist() == [7, 1, 1, 2, 1]


def test_collate_and_subset_follow_the_given_order(tmp_path: Path) -> None:
    corpus = read_feat(_write(tmp_path / "t.feat", FEAT), vocab_size=5)
    assert corpus.collate(torch.tensor([2, 0])).tolist() == [DENSE[2], DENSE[0]]
    sub = corpus.subset(torch.tensor([2, 1]))
    assert sub.labels == ("2", "1")
    assert sub.collate(torch.arange(2)).tolist() == [DENSE[2], DENSE[1]]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1 2:1 x:3", "'x:3'"),
        ("1 2:1 4", "'4'"),
        ("1 2:1 4:-1", "'4:-1'"),
        ("1 2:1 4:1.5", "'4:1.5'"),
        ("1 6:1", "word id 6 outside the vocabulary 1..5"),
        ("1 0:1", "word id 0 outside"),
        ("1 2:0", "zero count for word id 2"),
        ("1 2:1 2:3", "word id 2 appears more than once"),
        ("2:1 3:1", "missing label"),
        ("", "blank line"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = _write(tmp_path / "bad.feat", f"1 1:1\n2 2:2\n{line}\n3 3:3\n")
    with pytest.raises(DataFormatError) as info:
        read_feat(path, vocab_size=5)
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert reason in message
    assert info.value.line_number == 3


def test_empty_documents_are_skipped_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.feat", "1 1:1\n7\n2 2:2\n")
    with pytest.warns(UserWarning, match="skipped 1 empty"):
        corpus = read_feat(path, vocab_size=5)
    assert corpus.labels == ("1", "2")


def test_read_vocab(tmp_path: Path) -> None:
    assert read_vocab(_write(tmp_path / "v", "who 6494\nout 6114\nalone\n")) == ("who", "out", "alone")
    with pytest.raises(DataFormatError, match=r"line 2: expected 'word \[count\]'"):
        read_vocab(_write(tmp_path / "v2", "who 6494\nout many\n"))
    with pytest.raises(DataFormatError, match="line 2: blank"):
        read_vocab(_write(tmp_path / "v3", "who 1\n\nout 2\n"))
    with pytest.raises(DataFormatError, match="v4: empty vocabulary file"):
        read_vocab(_write(tmp_path / "v4", ""))


def test_load_bow_dataset_from_a_user_directory(tmp_path: Path) -> None:
    """The RCV1 path: any directory holding the three files, plain or gzipped."""
    _write(tmp_path / "vocab.new", "a 1\nb 1\nc 1\nd 1\ne 1\n")
    _write(tmp_path / "train.feat.gz", FEAT)
    _write(tmp_path / "test.feat", "9 5:4\n")
    data = load_bow_dataset(tmp_path, name="rcv1")
    assert (data.name, len(data.train), len(data.test), data.vocab[-1]) == ("rcv1", 3, 1, "e")
    with pytest.raises(FileNotFoundError, match="no vocab.new or vocab.new.gz"):
        load_bow_dataset(tmp_path / "missing")


def test_embedded_20ng_matches_its_documented_counts() -> None:
    """Counts from examples/data/20ng/SOURCE.md (computed independently of this reader)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 20NG has no empty documents
        data = load_bow_dataset()
    assert len(data.vocab) == 2000 and data.vocab[0] == "who"
    assert (len(data.train), len(data.test)) == (11268, 7505)
    assert int(data.train.doc_lengths.sum()) == 1_128_881
    assert int(data.test.doc_lengths.sum()) == 720_898
    assert data.train.collate(torch.tensor([0]))[0, 446] == 1  # first line starts "1 447:1 ..."


def test_load_splits_holds_out_validation_from_train_only() -> None:
    splits = load_splits(BowDataConfig(valid_docs=100, limit_docs=500))
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (400, 100, 500)


def test_train_docs_subsamples_training_only() -> None:
    full = load_splits(BowDataConfig(valid_docs=100, limit_docs=500))
    part = load_splits(BowDataConfig(valid_docs=100, limit_docs=500, train_docs=150))
    assert (len(part.train), len(part.valid), len(part.test)) == (150, 100, 500)
    assert torch.equal(part.valid.collate(torch.arange(100)), full.valid.collate(torch.arange(100)))
    # A subset of the full training documents, not just its first ones.
    full_docs = {tuple(full.train.collate(torch.tensor([i]))[0].nonzero().flatten().tolist()) for i in range(400)}
    part_docs = [tuple(part.train.collate(torch.tensor([i]))[0].nonzero().flatten().tolist()) for i in range(150)]
    assert all(d in full_docs for d in part_docs)
    assert part.train.labels != full.train.labels[:150]
    with pytest.raises(ValueError, match="only 400"):
        load_splits(BowDataConfig(valid_docs=100, limit_docs=500, train_docs=401))


def test_holdout_split_is_a_fixed_partition() -> None:
    kept, held = holdout_split(50, 10, seed=3)
    assert sorted(kept.tolist() + held.tolist()) == list(range(50))
    assert len(held) == 10
    again_kept, again_held = holdout_split(50, 10, seed=3)
    assert torch.equal(held, again_held) and torch.equal(kept, again_kept)
    assert not torch.equal(held, holdout_split(50, 10, seed=4)[1])
    torch.manual_seed(123)  # the global random state must not matter
    assert torch.equal(held, holdout_split(50, 10, seed=3)[1])
    with pytest.raises(ValueError, match="cannot hold out"):
        holdout_split(10, 10, seed=0)


def test_batches_cover_each_example_once_and_resume_mid_epoch() -> None:
    corpus = random_corpus(23, 10, seed=0)
    lengths = corpus.doc_lengths
    batches = Batches(corpus, 5, shuffle=True, seed=7)
    assert len(batches) == 5
    epoch0 = list(batches.epoch(0))
    assert [len(b) for b in epoch0] == [5, 5, 5, 5, 3]
    # Every document appears once: the multiset of document lengths is preserved.
    assert sorted(torch.cat([b.sum(1) for b in epoch0]).tolist()) == sorted(lengths.tolist())
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, batches.epoch(1), strict=True))  # reshuffled
    tail = list(Batches(corpus, 5, shuffle=True, seed=7).epoch(0, start=3))
    assert len(tail) == 2 and all(torch.equal(a, b) for a, b in zip(tail, epoch0[3:], strict=True))
    ordered = torch.cat(list(Batches(corpus, 5, shuffle=False).epoch(4)))
    assert torch.equal(ordered.sum(1), lengths.float())


@pytest.mark.parametrize("gz", [False, True])
def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path: Path, gz: bool) -> None:
    """A feature or vocabulary file with non-UTF-8 bytes used to fail with a bare UnicodeDecodeError."""
    data = b"a 1\nb\xff 1\nc 1\n"
    path = tmp_path / ("vocab.new.gz" if gz else "vocab.new")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataFormatError, match=r"vocab\.new(\.gz)?, line 2: not UTF-8"):
        read_vocab(path)


def test_a_truncated_gzip_file_names_file_and_line(tmp_path: Path) -> None:
    """A truncated .gz used to fail with a bare EOFError."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 6, (4000,), generator=gen).tolist()
    lines = "".join(f"1 {i}:{j % 7 + 1}\n" for j, i in enumerate(ids)).encode()
    compressed = gzip.compress(lines)
    path = tmp_path / "train.feat.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataFormatError, match=r"train\.feat\.gz, line \d+: the gzip data is truncated or damaged"):
        read_feat(path, 5)


def test_a_sentence_split_emptied_by_filtering_names_its_file(tmp_path: Path) -> None:
    """--min-words above every sentence's length used to fail inside max() of an empty sequence."""
    from textvae.sentences import SentenceDataConfig, load_sentence_splits

    from .conftest import write_sentence_corpus

    directory = write_sentence_corpus(tmp_path, sizes=(8, 4, 4))
    with pytest.raises(DataFormatError, match=r"train\.txt(\.gz)?: no sentence has at least 1000 words"):
        load_sentence_splits(SentenceDataConfig(data_dir=str(directory), min_words=1000))


def test_npmi_coherence_of_pairs_that_always_never_or_sometimes_co_occur() -> None:
    """Four documents: words 0 and 1 always together (NPMI 1), 0 and 2 never (-1), 0 and 3 independent (0)."""
    from textvae.bow import BowCorpus, npmi_coherence

    docs = [[0, 1, 3], [0, 1], [2, 3], [2]]
    row_ptr = torch.tensor([0, *torch.tensor([len(d) for d in docs]).cumsum(0).tolist()])
    ids = torch.tensor([w for d in docs for w in d])
    corpus = BowCorpus(row_ptr, ids, torch.ones(len(ids)), ("a",) * 4, 4)
    scores = npmi_coherence(torch.tensor([[0, 1], [0, 2], [0, 3]]), corpus)
    torch.testing.assert_close(scores, torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-12)
    three = npmi_coherence(torch.tensor([[0, 1, 2]]), corpus)  # the mean over its three pairs
    torch.testing.assert_close(three, torch.tensor([-1 / 3], dtype=torch.float64), rtol=0, atol=1e-12)
