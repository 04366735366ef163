"""Bag-of-words corpora in the NVDM format of Miao et al. (2016): 20 Newsgroups, RCV1-v2.

A corpus directory holds ``train.feat``, ``test.feat`` and ``vocab.new`` (each optionally gzipped):

* ``*.feat``: one document per line, ``LABEL id:count id:count ...``. ``LABEL`` is the class (not used by
  the document model, kept for analysis); ids are 1-based indices into ``vocab.new``; counts are positive
  integers; an id appears at most once per line.
* ``vocab.new``: one word per line, optionally followed by its corpus count (``who 6494``).

Documents are stored sparsely (CSR: ``row_ptr``, ``word_ids``, ``counts``) so that a large corpus such as
RCV1 (about 800k documents over a 10k vocabulary) fits in memory, and densified one batch at a time: the
model consumes a ``(batch, vocab)`` float matrix of counts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .config import ConfigError, Settings, at_least, setting
from .data import DataFormatError, find_data_file, holdout_split, read_lines

#: The 20 Newsgroups files shipped with the examples (Miao's preprocessing, 2,000 words).
EMBEDDED_20NG = Path(__file__).resolve().parent.parent / "data" / "20ng"


@dataclass(frozen=True)
class BowCorpus:
    """Documents as sparse count vectors over ``vocab_size`` words (CSR): the entries of document ``d`` are
    ``row_ptr[d]:row_ptr[d+1]`` (``int64``, ``(D + 1,)``) of ``word_ids`` (``int64``, 0-based) and ``counts``
    (``float32``, positive); ``labels`` holds the first field of each line."""

    row_ptr: Tensor
    word_ids: Tensor
    counts: Tensor
    labels: tuple[str, ...]
    vocab_size: int

    def __len__(self) -> int:
        return self.row_ptr.numel() - 1

    @property
    def doc_lengths(self) -> Tensor:
        """Tokens per document, ``N_d = sum_w count_{d,w}``, as a float64 tensor of shape ``(D,)``."""
        doc_of_entry = torch.repeat_interleave(torch.arange(len(self)), self.row_ptr.diff())
        return torch.zeros(len(self), dtype=torch.float64).index_add_(0, doc_of_entry, self.counts.double())

    def word_totals(self) -> Tensor:
        """Total count of each word over the corpus, float64 of shape ``(V,)``."""
        return torch.zeros(self.vocab_size, dtype=torch.float64).index_add_(0, self.word_ids, self.counts.double())

    def collate(self, indices: Tensor) -> Tensor:
        """The dense ``(len(indices), V)`` float32 count matrix of the given documents, in that order."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        starts = self.row_ptr[indices]
        lengths = self.row_ptr[indices + 1] - starts
        row = torch.repeat_interleave(torch.arange(indices.numel()), lengths)
        # Position of each gathered entry inside its own document, then in the flat entry arrays.
        first_of_row = torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        entry = starts[row] + torch.arange(row.numel()) - first_of_row
        dense = torch.zeros(indices.numel(), self.vocab_size)
        dense[row, self.word_ids[entry]] = self.counts[entry]
        return dense

    def subset(self, indices: Tensor) -> BowCorpus:
        """A new corpus made of the given documents, in that order."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        starts = self.row_ptr[indices]
        lengths = self.row_ptr[indices + 1] - starts
        row_ptr = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        first_of_row = torch.repeat_interleave(row_ptr[:-1], lengths)
        entry = torch.repeat_interleave(starts, lengths) + torch.arange(int(row_ptr[-1])) - first_of_row
        labels = tuple(self.labels[i] for i in indices.tolist())
        return BowCorpus(row_ptr, self.word_ids[entry], self.counts[entry], labels, self.vocab_size)


@dataclass(frozen=True)
class BowDataset:
    """The train and test corpora of one data set and its vocabulary."""

    name: str
    train: BowCorpus
    test: BowCorpus
    vocab: tuple[str, ...]


def read_vocab(path: str | Path) -> tuple[str, ...]:
    """The words of a ``vocab.new`` file, one per line, optionally followed by a count (DataFormatError for a
    blank line or a count that is not an integer)."""
    words = []
    for line_number, line in read_lines(path):
        fields = line.split()
        if not fields:
            raise DataFormatError(path, line_number, "blank line in a vocabulary file")
        if len(fields) > 2 or (len(fields) == 2 and not fields[1].isdigit()):
            raise DataFormatError(path, line_number, f"expected 'word [count]', got {line.rstrip()!r}")
        words.append(fields[0])
    if not words:
        raise DataFormatError(path, None, "empty vocabulary file")
    return tuple(words)


def _parse_feat_line(fields: list[str], vocab_size: int) -> tuple[list[int], list[int]]:
    """0-based ids and counts of the ``id:count`` fields of one line; raises ValueError with the reason."""
    ids, counts = [], []
    for field in fields:
        word, sep, count = field.partition(":")
        if not sep or not word.isdigit() or not count.isdigit():
            raise ValueError(f"expected 'id:count' with non-negative integers, got {field!r}")
        word_id, n = int(word), int(count)
        if not 1 <= word_id <= vocab_size:
            raise ValueError(f"word id {word_id} outside the vocabulary 1..{vocab_size}")
        if n == 0:
            raise ValueError(f"zero count for word id {word_id}")
        ids.append(word_id - 1)
        counts.append(n)
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"word id {duplicate + 1} appears more than once")
    return ids, counts


def read_feat(path: str | Path, vocab_size: int) -> BowCorpus:
    """A ``*.feat`` file (``LABEL id:count ...`` per line) as a :class:`BowCorpus`; a malformed line raises a
    DataFormatError naming file, line and fault. Documents without a word are skipped with a warning, as in the
    reference implementations: a document of length 0 has no perplexity."""
    row_ptr, word_ids, counts, labels = [0], [], [], []
    empty = 0
    for line_number, line in read_lines(path):
        fields = line.split()
        if not fields:
            raise DataFormatError(path, line_number, "blank line (expected 'LABEL id:count ...')")
        if ":" in fields[0]:
            raise DataFormatError(path, line_number, f"missing label: the line starts with {fields[0]!r}")
        try:
            ids, cnts = _parse_feat_line(fields[1:], vocab_size)
        except ValueError as error:
            raise DataFormatError(path, line_number, str(error)) from None
        if not ids:
            empty += 1
            continue
        word_ids.extend(ids)
        counts.extend(cnts)
        row_ptr.append(len(word_ids))
        labels.append(fields[0])
    if empty:
        warnings.warn(f"{path}: skipped {empty} empty document(s)", stacklevel=2)
    if not labels:
        raise DataFormatError(path, None, "no documents")
    return BowCorpus(
        row_ptr=torch.tensor(row_ptr, dtype=torch.int64),
        word_ids=torch.tensor(word_ids, dtype=torch.int64),
        counts=torch.tensor(counts, dtype=torch.float32),
        labels=tuple(labels),
        vocab_size=vocab_size,
    )


def load_bow_dataset(directory: str | Path | None = None, name: str | None = None) -> BowDataset:
    """``train.feat``, ``test.feat`` and ``vocab.new`` (each optionally ``.gz``) of ``directory`` (``None``: the
    embedded 20 Newsgroups, :data:`EMBEDDED_20NG`); ``name`` labels it in logs and tables (default: the
    directory's name)."""
    directory = Path(directory) if directory is not None else EMBEDDED_20NG
    vocab = read_vocab(find_data_file(directory, "vocab.new"))
    train = read_feat(find_data_file(directory, "train.feat"), len(vocab))
    test = read_feat(find_data_file(directory, "test.feat"), len(vocab))
    return BowDataset(name or directory.name, train, test, vocab)


@dataclass(frozen=True)
class BowDataConfig(Settings):
    """Which corpus, and how the validation set is held out."""

    data_dir: str = setting(
        "", "directory with train.feat, test.feat, vocab.new (each optionally .gz); empty: the embedded 20NG"
    )
    valid_docs: int = setting(1000, "training documents held out for validation", at_least(1))
    split_seed: int = setting(0, "seed of the held-out split (independent of the training seed)")
    limit_docs: int = setting(0, "use only the first N documents of train and of test (0: all)", at_least(0))
    train_docs: int = setting(0, "train on N of the documents left after the hold-out (0: all)", at_least(0))


@dataclass(frozen=True)
class BowSplits:
    """Training, validation (held out from the training file) and test corpora, and the vocabulary."""

    name: str
    train: BowCorpus
    valid: BowCorpus
    test: BowCorpus
    vocab: tuple[str, ...]


def load_splits(config: BowDataConfig) -> BowSplits:
    """Load the corpus of ``config`` and hold out its validation documents from the training file."""
    dataset = load_bow_dataset(config.data_dir or None, None if config.data_dir else "20ng")
    train, test = dataset.train, dataset.test
    if config.limit_docs:
        train = train.subset(torch.arange(min(config.limit_docs, len(train))))
        test = test.subset(torch.arange(min(config.limit_docs, len(test))))
    if config.valid_docs >= len(train):
        raise ConfigError(f"--valid-docs must be below the {len(train)} training documents, got {config.valid_docs}")
    kept, held_out = holdout_split(len(train), config.valid_docs, config.split_seed)
    if config.train_docs:
        if config.train_docs > kept.numel():
            left = f"only {kept.numel()} training documents are left after the hold-out"
            raise ConfigError(f"--train-docs must be at most that: {left}, got {config.train_docs}")
        if config.train_docs < kept.numel():
            subset, _ = holdout_split(kept.numel(), kept.numel() - config.train_docs, config.split_seed)
            kept = kept[subset]
    return BowSplits(dataset.name, train.subset(kept), train.subset(held_out), test, dataset.vocab)


def npmi_coherence(topics: Tensor, corpus: BowCorpus) -> Tensor:
    r"""NPMI coherence of each topic, a row of ``topics`` (word ids, ``(T, k)``), over the documents of ``corpus``
    (Bouma 2009; Lau et al. 2014): the mean over its word pairs of :math:`\log\frac{P(i,j)}{P(i)P(j)} \big/
    -\log P(i,j)`, with :math:`P` the share of documents that contain the words. A pair that never occurs
    together counts -1, one that occurs in every document 1. Returns float64 of shape ``(T,)``, in [-1, 1]."""
    present = corpus.collate(torch.arange(len(corpus))) > 0  # (D, V) bool
    first, second = torch.triu_indices(topics.shape[1], topics.shape[1], 1)
    scores = []
    for words in topics:
        x = present[:, words].double()
        joint = x.T @ x / len(corpus)  # P(i, j), and P(i) on the diagonal
        p_ij, p_i, p_j = joint[first, second], joint.diagonal()[first], joint.diagonal()[second]
        npmi = torch.log(p_ij / (p_i * p_j)) / -torch.log(p_ij)
        scores.append(torch.where(p_ij == 0, -1.0, torch.where(p_ij == 1, 1.0, npmi)).mean())
    return torch.stack(scores)
