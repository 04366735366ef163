r"""Sentence corpora for the language-model VAE: vocabulary, readers of three formats, padded batches.

A sentence of :math:`n` words is scored on :math:`n + 1` tokens, its words followed by ``<eos>``; the
decoder reads ``<bos>`` followed by the words, and ``<pad>`` fills a batch to its longest sentence but is
never scored (no ``<bos>`` and no padding in the token count).

Formats, one example per line, tokens separated by spaces:

* ``ptb``: the words (Mikolov's Penn Treebank: lower-cased, ``<unk>`` and ``N`` already substituted);
* ``yelp``: a rating ``0..4`` first, then the words (Xu & Durrett's Yelp 2013 files). The rating is kept as
  the example's label, not as a word;
* ``yahoo``: the words, with ``_UNK`` for unknown words (Yang et al. 2017's Yahoo Answers files), read as
  ``<unk>``.

The vocabulary is built from the training split (every word type in it, most frequent first); words of the
other splits that it lacks become ``<unk>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from .config import ConfigError, Settings, at_least, setting
from .data import DataFormatError, find_data_file, read_lines
from .report import portable_path

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
_SPECIALS = (PAD, BOS, EOS, UNK)
FORMATS = ("ptb", "yelp", "yahoo")
_UNK_ALIASES = {"yahoo": "_UNK"}
_RATINGS = {str(r): r for r in range(5)}
EMBEDDED_PTB = Path(__file__).resolve().parents[1] / "data" / "ptb"


@dataclass(frozen=True)
class SentenceDataConfig(Settings):
    """Which sentences to read."""

    data_dir: str = setting("", "directory with train.txt, valid.txt, test.txt (or .gz); empty: the embedded PTB")
    data_format: Literal["ptb", "yelp", "yahoo"] = setting(
        "ptb", "yelp: a rating 0..4 first on each line; yahoo: _UNK for unknown words"
    )
    min_words: int = setting(2, "skip sentences with fewer words (2, as Xu & Durrett's loader)", at_least(0))
    limit_sentences: int = setting(0, "train on the first N sentences only (0: all)", at_least(0))
    limit_eval_sentences: int = setting(0, "validate and test on the first N sentences only (0: all)", at_least(0))


class Vocabulary:
    """Word types and their ids; the four special tokens come first (``<pad>`` is 0)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(_SPECIALS) + [w for w in words if w not in _SPECIALS]
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("duplicate word types in the vocabulary")
        self.pad, self.bos, self.eos, self.unk = (self.index[t] for t in _SPECIALS)

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]]) -> Vocabulary:
        """Every word type of ``sentences``, most frequent first (ties alphabetical, so the ids are reproducible)."""
        counts = Counter(w for s in sentences for w in s)
        return cls(sorted(counts, key=lambda w: (-counts[w], w)))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Sequence[str]) -> list[int]:
        """Word ids, ``<unk>`` for unknown words."""
        return [self.index.get(w, self.unk) for w in words]

    def decode(self, ids: Sequence[int]) -> str:
        """The words of ``ids`` up to the first ``<eos>``, without padding and ``<bos>``."""
        out = []
        for i in ids:
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(self.words[i])
        return " ".join(out)


def read_sentences(path: str | Path, data_format: str = "ptb") -> tuple[list[list[str]], list[int] | None]:
    """The sentences (lists of words) of a file, and their labels for the ``yelp`` format (else ``None``).
    DataFormatError, with file and line, for text that is not UTF-8, a reserved token (``<pad>``, ``<bos>``,
    ``<eos>``), a yelp line without a rating 0..4 first, or a file without any sentence."""
    if data_format not in FORMATS:
        raise ValueError(f"unknown data format {data_format!r}; choose one of {FORMATS}")
    unk_alias = _UNK_ALIASES.get(data_format)
    sentences: list[list[str]] = []
    labels: list[int] = []
    for line_number, line in read_lines(path):
        words = line.split()
        if data_format == "yelp":
            if not words or words[0] not in _RATINGS:
                raise DataFormatError(path, line_number, "a yelp line starts with a rating 0..4")
            labels.append(_RATINGS[words[0]])
            words = words[1:]
        reserved = sorted({PAD, BOS, EOS} & set(words))
        if reserved:
            raise DataFormatError(path, line_number, f"reserved token(s) {reserved} in the text")
        if unk_alias is not None:
            words = [UNK if w == unk_alias else w for w in words]
        sentences.append(words)
    if not sentences:
        raise DataFormatError(path, None, "no sentences")
    return sentences, (labels if data_format == "yelp" else None)


class SentenceBatch(NamedTuple):
    """A padded batch: ``tokens`` ``(B, T)``, each sentence's words, ``<eos>``, then ``<pad>`` up to the longest;
    ``lengths`` ``(B,)``, words + 1, the tokens each sentence is scored on; ``labels`` ``(B,)``, the rating of a
    yelp sentence, -1 for unlabelled formats (all int64)."""

    tokens: Tensor
    lengths: Tensor
    labels: Tensor


class SentenceCorpus:
    """Sentences as word ids, stored flat (one ``int64`` tensor and offsets), batched by :meth:`collate`."""

    def __init__(self, sentences: Sequence[Sequence[str]], vocab: Vocabulary, labels: Sequence[int] | None = None):
        self.vocab = vocab
        ids = [vocab.encode(s) + [vocab.eos] for s in sentences]
        self.lengths = torch.tensor([len(s) for s in ids], dtype=torch.int64)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), self.lengths.cumsum(0)])
        self.ids = torch.tensor([i for s in ids for i in s], dtype=torch.int64)
        self.labels = torch.tensor(labels if labels is not None else [-1] * len(ids), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    def sentence(self, i: int) -> Tensor:
        """Word ids of sentence ``i``, ending in ``<eos>``."""
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def collate(self, indices: Tensor) -> SentenceBatch:
        lengths = self.lengths[indices]
        tokens = torch.full((len(indices), int(lengths.max())), self.vocab.pad, dtype=torch.int64)
        # One gather for the whole batch: position t of row b is ids[offset_b + t] where t < length_b.
        position = torch.arange(tokens.shape[1])
        inside = position < lengths[:, None]
        tokens[inside] = self.ids[(self.offsets[indices][:, None] + position)[inside]]
        return SentenceBatch(tokens, lengths, self.labels[indices])

    def n_tokens(self) -> int:
        """Tokens scored over the corpus: words + one ``<eos>`` per sentence."""
        return int(self.lengths.sum())


@dataclass
class SentenceSplits:
    """Train, validation and test corpora over one vocabulary; ``name`` is ``ptb`` for the embedded Penn
    Treebank, ``format:directory`` for data read from a directory."""

    name: str
    vocab: Vocabulary
    train: SentenceCorpus
    valid: SentenceCorpus
    test: SentenceCorpus


def _keep(
    sentences: list[list[str]], labels: list[int] | None, min_words: int, limit: int
) -> tuple[list[list[str]], list[int] | None]:
    """The sentences with at least ``min_words`` words (the first ``limit`` of them when ``limit``), with labels."""
    kept = [i for i, s in enumerate(sentences) if len(s) >= min_words]
    if limit:
        kept = kept[:limit]
    return [sentences[i] for i in kept], None if labels is None else [labels[i] for i in kept]


def load_sentence_splits(config: SentenceDataConfig) -> SentenceSplits:
    """Read the three splits of ``config.data_dir`` (the embedded PTB when empty) in ``config.data_format``."""
    directory = Path(config.data_dir) if config.data_dir else EMBEDDED_PTB
    if not config.data_dir and config.data_format != "ptb":
        raise ConfigError(f"--data-format {config.data_format} needs --data-dir: the embedded data set is PTB")
    paths = {split: find_data_file(directory, f"{split}.txt") for split in ("train", "valid", "test")}
    raw = {split: read_sentences(path, config.data_format) for split, path in paths.items()}
    limits = {
        "train": config.limit_sentences,
        "valid": config.limit_eval_sentences,
        "test": config.limit_eval_sentences,
    }
    kept = {split: _keep(*raw[split], config.min_words, limits[split]) for split in raw}
    for split, (sentences, _) in kept.items():
        if not sentences:
            reason = f"no sentence has at least {config.min_words} words (--min-words); nothing is left to use"
            raise DataFormatError(paths[split], None, reason)
    vocab = Vocabulary.build(kept["train"][0])
    corpora = (SentenceCorpus(kept[split][0], vocab, kept[split][1]) for split in ("train", "valid", "test"))
    name = f"{config.data_format}:{portable_path(directory)}" if config.data_dir else "ptb"
    return SentenceSplits(name, vocab, *corpora)
