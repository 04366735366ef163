"""Progress bars: tqdm when it is installed and the bar is enabled, nothing otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    """A bar advanced by hand, with a postfix such as the running loss; a context manager that closes it."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, **postfix: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if self.bar.n % 10 == 0 or self.bar.n == self.bar.total:  # formatting every step costs time
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def track(items: Iterable[T], desc: str, enabled: bool) -> Iterator[T]:
    """``items`` with a bar over them (its total from ``len(items)`` where that exists)."""
    with Progress(enabled, len(items) if isinstance(items, Sized) else 0, 0, desc) as progress:
        for item in items:
            yield item
            progress.update()
