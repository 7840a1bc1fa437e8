"""Progress bars that suit where the output goes: tqdm's bar on a terminal; into a log file (a script's stage, CI)
one line when the loop ends instead of a stream of carriage-return redraws."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class _Line:
    """The part of tqdm's interface the loops use; prints 'desc: n/total in s (postfix)' once, on close, and
    write()'s messages as they come."""

    def __init__(self, iterable=None, total=None, desc="", initial=0):
        self.iterable, self.total, self.desc, self.n = iterable, total, desc, initial
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)
        self.start, self.closed, self.postfix = time.time(), False, ""

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    @staticmethod
    def write(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            of = f"/{self.total}" if self.total is not None else ""
            tail = f" ({self.postfix})" if self.postfix else ""
            print(f"{self.desc}: {self.n}{of} in {time.time() - self.start:.1f} s{tail}", file=sys.stderr, flush=True)


def progress(iterable=None, *, total=None, desc: str = "", enabled: bool = True, leave: bool = True, initial: int = 0):
    """tqdm(iterable, total, desc) when enabled and stderr is a terminal; one closing line when enabled and it is
    not; nothing when disabled."""
    if enabled and sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, leave=leave, initial=initial)
    if enabled:
        return _Line(iterable, total, desc, initial)
    return tqdm(iterable, total=total, desc=desc, disable=True, initial=initial)
