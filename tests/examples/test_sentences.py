"""Sentence data: readers of the three formats, token counting, length-bucketed and sharded batches."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from textvae.data import Batches, DataFormatError
from textvae.sentences import (
    EMBEDDED_PTB,
    SentenceCorpus,
    SentenceDataConfig,
    Vocabulary,
    load_sentence_splits,
    read_sentences,
)

from .conftest import shared_data, write_sentence_corpus


def test_tokens_are_words_plus_eos_without_bos_or_padding(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("the cat sat\nit ran\n")
    sentences, labels = read_sentences(path)
    assert sentences == [["the", "cat", "sat"], ["it", "ran"]] and labels is None
    vocab = Vocabulary.build(sentences)
    corpus = SentenceCorpus(sentences, vocab)
    batch = corpus.collate(torch.tensor([1, 0]))
    assert batch.lengths.tolist() == [3, 4]  # 2 words + <eos>, 3 words + <eos>
    assert corpus.n_tokens() == 7
    eos, pad = vocab.eos, vocab.pad
    assert batch.tokens.tolist() == [
        [vocab.index["it"], vocab.index["ran"], eos, pad],
        [vocab.index["the"], vocab.index["cat"], vocab.index["sat"], eos],
    ]
    assert vocab.bos not in batch.tokens.tolist()[0] + batch.tokens.tolist()[1]
    assert vocab.decode(batch.tokens[0].tolist()) == "it ran"


def test_unknown_words_of_other_splits_become_unk() -> None:
    vocab = Vocabulary.build([["a", "b", "a"]])
    assert vocab.words[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and vocab.words[4:] == ["a", "b"]
    assert vocab.encode(["b", "zebra"]) == [vocab.index["b"], vocab.unk]


def test_embedded_ptb_counts_match_its_source_notes() -> None:
    """Token counts from examples/data/ptb/SOURCE.md: valid has 70,390 words in 3,370 lines; the paper's
    loader keeps 3,357 valid sentences of at least 2 words."""
    sentences, _ = read_sentences(EMBEDDED_PTB / "valid.txt.gz")
    vocab = Vocabulary.build(sentences)
    assert SentenceCorpus(sentences, vocab).n_tokens() == 70_390 + 3_370
    assert sum(len(s) >= 2 for s in sentences) == 3_357


def test_limits_and_minimum_length(tmp_path: Path) -> None:
    write_sentence_corpus(tmp_path, sizes=(30, 10, 10))
    (tmp_path / "valid.txt").write_text("x\n" + (tmp_path / "valid.txt").read_text())  # one word: skipped
    splits = load_sentence_splits(
        SentenceDataConfig(data_dir=str(tmp_path), limit_sentences=20, limit_eval_sentences=5, min_words=2)
    )
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (20, 5, 5)
    assert "x" not in splits.vocab.index


def test_yelp_rating_is_a_label_not_a_word(tmp_path: Path) -> None:
    path = tmp_path / "y.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("4 great food\n0 bad\n")
    sentences, labels = read_sentences(path, "yelp")
    assert sentences == [["great", "food"], ["bad"]] and labels == [4, 0]


@pytest.mark.parametrize(
    ("data_format", "text", "line", "reason"),
    [
        ("yelp", "3 fine\nfive stars\n", 2, "rating 0..4"),
        ("yelp", "3 fine\n7 stars\n", 2, "rating 0..4"),
        ("ptb", "a b\nc <eos> d\n", 2, "reserved token"),
        ("ptb", "", None, "no sentences"),
    ],
)
def test_malformed_files_name_the_file_and_line(
    tmp_path: Path, data_format: str, text: str, line: int | None, reason: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=reason) as error:
        read_sentences(path, data_format)
    assert error.value.path == str(path) and error.value.line_number == line


def test_invalid_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(DataFormatError, match="UTF-8") as error:
        read_sentences(path)
    assert error.value.line_number == 2


def test_yelp_valid_file_counts() -> None:
    """The published Yelp 2013 validation file (not shipped): counts from its SOURCE.md."""
    sentences, labels = read_sentences(shared_data("yelp13") / "valid.txt.gz", "yelp")
    assert len(sentences) == 7_773 and sum(map(len, sentences)) == 370_321
    assert [labels.count(r) for r in range(5)] == [246, 669, 1491, 3207, 2160]


def test_yahoo_valid_file_counts() -> None:
    sentences, _ = read_sentences(shared_data("yahoo") / "valid.txt.gz", "yahoo")
    assert len(sentences) == 10_000 and sum(map(len, sentences)) == 790_680
    assert not any("_UNK" in s for s in sentences) and any("<unk>" in s for s in sentences)


def _corpus(n: int = 103, seed: int = 0) -> SentenceCorpus:
    gen = torch.Generator().manual_seed(seed)
    sentences = [["w"] * int(torch.randint(1, 30, (), generator=gen)) for _ in range(n)]
    return SentenceCorpus(sentences, Vocabulary.build(sentences))


def test_length_buckets_cover_every_sentence_once_and_are_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Batches, "POOL_BATCHES", 4)  # several pools in 103 sentences
    corpus = _corpus()
    batches = Batches(corpus, 8, shuffle=True, seed=3, lengths=corpus.lengths)
    epoch = [b.lengths for b in batches.epoch(0)]
    assert len(epoch) == len(batches)
    assert sorted(torch.cat(epoch).tolist()) == sorted(corpus.lengths.tolist())
    again = [b.lengths for b in Batches(corpus, 8, shuffle=True, seed=3, lengths=corpus.lengths).epoch(0)]
    assert all(torch.equal(a, b) for a, b in zip(epoch, again, strict=True))
    tail = [b.lengths for b in batches.epoch(0, start=5)]  # a resumed epoch continues the same order
    assert all(torch.equal(a, b) for a, b in zip(epoch[5:], tail, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(epoch, [b.lengths for b in batches.epoch(1)], strict=True))
    spread = sum(int(b.max() - b.min()) for b in epoch) / len(epoch)
    assert spread < 10  # random batches of lengths 1..29 would spread about 20


def test_evaluation_batches_are_sorted_by_length() -> None:
    corpus = _corpus()
    lengths = torch.cat([b.lengths for b in Batches(corpus, 8, shuffle=False, lengths=corpus.lengths)])
    assert lengths.tolist() == sorted(corpus.lengths.tolist())


def test_shards_are_disjoint_equal_parts_of_the_epoch() -> None:
    corpus = _corpus(101)  # 11 batches of 10: 3 shards of 3, the last 2 batches left out of this epoch
    full = list(Batches(corpus, 10, shuffle=True, seed=1, lengths=corpus.lengths).epoch(2))
    for r in range(3):
        shard = Batches(corpus, 10, shuffle=True, seed=1, lengths=corpus.lengths, rank=r, world_size=3)
        batches = list(shard.epoch(2))
        assert len(batches) == len(shard) == 3
        assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(batches, full[r:9:3], strict=True))
