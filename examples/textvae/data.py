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
    """``directory/name`` or, if that does not exist, ``directory/name.gz`` (FileNotFoundError if neither does)."""
    plain = Path(directory) / name
    for candidate in (plain, plain.with_name(name + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {name} or {name}.gz in {Path(directory).resolve()}")


def derive_seed(*key: int) -> int:
    """A 32-bit seed (for Python, numpy and torch), a well-mixed function of the integers in ``key``: through
    :class:`numpy.random.SeedSequence`, not a sum, which would give seed 1 / epoch 0 the order of seed 0 / epoch 1."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint32)[0])


def _seeded_generator(*key: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*key))


def holdout_split(n: int, n_holdout: int, seed: int) -> tuple[Tensor, Tensor]:
    """Split ``range(n)`` into sorted ``int64`` indices ``(kept, held_out)`` with ``n_holdout`` held out, as a
    function of ``(n, n_holdout, seed)`` alone (not of the global random state), so that every training seed
    sees the same validation set."""
    if not 0 < n_holdout < n:
        raise ValueError(f"cannot hold out {n_holdout} of {n} examples: need 0 < n_holdout < n")
    order = torch.randperm(n, generator=_seeded_generator(seed, n, n_holdout))
    return order[n_holdout:].sort().values, order[:n_holdout].sort().values


class CollatingDataset(Protocol):
    """What :class:`Batches` needs from a dataset."""

    def __len__(self) -> int: ...

    def collate(self, indices: Tensor) -> Any: ...


class Batches:
    """The batches of a dataset (anything with ``len()`` and ``collate(indices)``): a new permutation every
    epoch with ``shuffle`` (training), the dataset order without (evaluation). The last batch may be smaller
    (none is dropped, so an evaluation covers every example).

    The order of epoch ``e`` is a function of ``(seed, e)`` alone, which lets an interrupted run resume
    mid-epoch: :meth:`epoch` with ``start=k`` yields the batches an uninterrupted run saw after its first ``k``.

    With ``lengths`` (of every example), batches hold examples of similar length so that padding costs little:
    with ``shuffle`` the permutation is cut into pools of :attr:`POOL_BATCHES` batches, each sorted by length
    and cut, and the batches are shuffled; without, the dataset is sorted by length (ties in dataset order).
    ``rank, world_size`` keep batches ``rank, rank + world_size, ...`` of every epoch (one shard per process
    in data-parallel training); the last ``len % world_size`` batches are left out, so the shards stay in step.
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
