"""Model-independent data plumbing: reading text files, held-out splits and deterministic batching.

A dataset used with :class:`Batches` needs only ``len(dataset)`` and ``dataset.collate(indices)``, which
turns a 1-D ``int64`` tensor of example indices into one batch (a tensor or anything
:func:`move_to_device` understands).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DataFormatError",
    "read_lines",
    "find_data_file",
    "holdout_split",
    "Batches",
    "CollatingDataset",
    "move_to_device",
    "derive_seed",
]


class DataFormatError(ValueError):
    """A data file that does not follow its format. The message names the file and the (1-based) line,
    or only the file when the problem is the file as a whole (``line_number=None``)."""

    def __init__(self, path: str | Path, line_number: int | None, reason: str) -> None:
        self.path = str(path)
        self.line_number = line_number
        self.reason = reason
        where = self.path if line_number is None else f"{self.path}, line {line_number}"
        super().__init__(f"{where}: {reason}")


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` of every line of a UTF-8 file (gzipped when its name ends in ``.gz``), 1-based.

    Each line is decoded on its own, so that bytes that are not UTF-8 are reported with their line.
    """
    path = Path(path)
    line_number = 0
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
        try:
            for line_number, raw in enumerate(handle, 1):
                try:
                    yield line_number, raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise DataFormatError(path, line_number, f"not UTF-8 text ({error.reason})") from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            reason = f"the gzip data is truncated or damaged ({error}); fetch or unpack the file again"
            raise DataFormatError(path, line_number + 1, reason) from None


def find_data_file(directory: str | Path, name: str) -> Path:
    """``directory/name`` or, if that does not exist, ``directory/name.gz``.

    Raises
    ------
    FileNotFoundError
        Neither exists; the message lists both paths tried.
    """
    plain = Path(directory) / name
    for candidate in (plain, plain.with_name(name + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {name} or {name}.gz in {Path(directory).resolve()}")


def derive_seed(*key: int) -> int:
    """A 32-bit seed (valid for Python, numpy and torch) that is a well-mixed function of the integers in ``key``.

    Mixing through :class:`numpy.random.SeedSequence` keeps the streams of (seed, epoch) pairs distinct; a
    sum such as ``seed + epoch`` would give seed 1 / epoch 0 the same order as seed 0 / epoch 1.
    """
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint32)[0])


def _seeded_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded with :func:`derive_seed` of ``key``."""
    return torch.Generator().manual_seed(derive_seed(*key))


def holdout_split(n: int, n_holdout: int, seed: int) -> tuple[Tensor, Tensor]:
    """Split ``range(n)`` into a kept part and a held-out part of ``n_holdout`` examples.

    The split depends only on ``(n, n_holdout, seed)``, not on the global random state, so that every
    training seed sees the same validation set. Both parts are returned sorted.

    Returns
    -------
    kept, held_out : Tensor
        ``int64`` index tensors of lengths ``n - n_holdout`` and ``n_holdout``.
    """
    if not 0 < n_holdout < n:
        raise ValueError(f"cannot hold out {n_holdout} of {n} examples: need 0 < n_holdout < n")
    order = torch.randperm(n, generator=_seeded_generator(seed, n, n_holdout))
    return order[n_holdout:].sort().values, order[:n_holdout].sort().values


class CollatingDataset(Protocol):
    """What :class:`Batches` needs from a dataset."""

    def __len__(self) -> int: ...

    def collate(self, indices: Tensor) -> Any: ...


class Batches:
    """The batches of one dataset: a reshuffled order every epoch for training, a fixed order for evaluation.

    The order of epoch ``e`` is a pure function of ``(seed, e)``. That is what lets an interrupted run
    resume mid-epoch: :meth:`epoch` with ``start=k`` yields exactly the batches that an uninterrupted run
    would have seen after its first ``k``.

    Parameters
    ----------
    dataset
        Anything with ``len()`` and ``collate(indices)``.
    batch_size
        Examples per batch; the last batch of an epoch (or of a length pool) may be smaller (it is never
        dropped, so that an evaluation covers every example).
    shuffle
        Draw a new permutation every epoch (training) or keep the dataset order (evaluation).
    seed
        Seed of the permutations; ignored without ``shuffle``.
    lengths
        Optional length of every example. Batches then hold examples of similar length, so that padding
        costs little: with ``shuffle``, the permutation is cut into pools of :attr:`POOL_BATCHES` batches,
        each pool is sorted by length and cut into batches, and the order of all batches is shuffled;
        without ``shuffle``, the whole dataset is sorted by length (ties in dataset order).
    rank, world_size
        Keep only the batches ``rank, rank + world_size, ...`` of every epoch (data-parallel training, one
        shard per process). Every shard gets the same number of batches, so that the processes stay in
        step; the last ``len % world_size`` batches of an epoch are left out of it.
    """

    POOL_BATCHES = 50

    def __init__(
        self,
        dataset: CollatingDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        lengths: Tensor | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        if lengths is not None and len(lengths) != len(dataset):
            raise ValueError(f"{len(lengths)} lengths for {len(dataset)} examples")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.lengths = lengths
        self.rank = rank
        self.world_size = world_size

    def _all_batches(self, epoch: int) -> list[Tensor]:
        """Index tensors of every batch of ``epoch``, before sharding."""
        n = len(self.dataset)
        generator = _seeded_generator(self.seed, epoch) if self.shuffle else None
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if self.lengths is None:
            return list(order.split(self.batch_size))
        if not self.shuffle:
            order = torch.sort(self.lengths, stable=True).indices
            return list(order.split(self.batch_size))
        batches: list[Tensor] = []
        for pool in order.split(self.batch_size * self.POOL_BATCHES):
            by_length = torch.sort(self.lengths[pool], stable=True).indices
            batches += list(pool[by_length].split(self.batch_size))
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __len__(self) -> int:
        n, size = len(self.dataset), self.batch_size
        pool = size * self.POOL_BATCHES if self.lengths is not None and self.shuffle else n
        full, rest = divmod(n, pool) if n else (0, 0)
        total = full * -(-pool // size) + -(-rest // size)
        return total // self.world_size if self.world_size > 1 else total

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[Any]:
        """Yield the batches of ``epoch`` (this process's shard of them) from batch number ``start`` on."""
        batches = self._all_batches(epoch)
        if self.world_size > 1:
            batches = batches[: len(self) * self.world_size][self.rank :: self.world_size]
        for indices in batches[start:]:
            yield self.dataset.collate(indices)

    def __iter__(self) -> Iterator[Any]:
        return self.epoch(0)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch to ``device``: a tensor, an object with ``.to(device)``, or a tuple, list or dict of those."""
    if isinstance(batch, (tuple, list)):
        moved = [move_to_device(item, device) for item in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if hasattr(batch, "to"):
        return batch.to(device, non_blocking=True) if isinstance(batch, Tensor) else batch.to(device)
    return batch
