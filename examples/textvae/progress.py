"""Progress bars: tqdm when it is installed and the bar is enabled, nothing otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["Progress", "track"]

T = TypeVar("T")


def _tqdm(**kwargs: Any) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(leave=False, dynamic_ncols=True, **kwargs)


class Progress:
    """A bar advanced by hand, with a postfix (the training loop's running loss)."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.bar = _tqdm(total=total, initial=initial, desc=desc) if enabled else None

    def update(self, **postfix: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if self.bar.n % 10 == 0 or self.bar.n == self.bar.total:  # formatting every step costs time
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def track(items: Iterable[T], desc: str, enabled: bool) -> Iterator[T]:
    """``items`` with a bar over them (its total from ``len(items)`` where that exists)."""
    progress = Progress(enabled, len(items) if hasattr(items, "__len__") else 0, 0, desc)
    try:
        for item in items:
            yield item
            progress.update()
    finally:
        progress.close()
