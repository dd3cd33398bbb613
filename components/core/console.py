"""What a person reads while a run goes, the same in a terminal, a log file and a ClearML console.

In a terminal a progress bar (ours, the Trainer's, transformers' GGUF conversion: all tqdm) redraws one
line in place with carriage returns. Anywhere else those redraws pile up into a single line thousands of
characters long. `configure_console`, called once by an entry point, wraps stdout and stderr: when a
stream is not a terminal every bar redraw becomes a line of its own, at most one per `LINE_INTERVAL`
seconds plus the bar's final state; and lines starting with one of the given prefixes (library chatter
the caller reports better itself) are dropped. tqdm stays the only progress code.
"""
from __future__ import annotations

import math
import sys
import time
from typing import TextIO

LINE_INTERVAL = 10.0  # seconds between two progress lines in a log (a ClearML console flushes as often)


class ConsoleStream:
    """A text stream in front of another one. `__slots__` also stops ClearML's stream patching from
    replacing `write` on the instance (as it cannot on a real file object): it wraps this stream instead."""

    __slots__ = ("_stream", "_drop", "_bars_as_lines", "_interval", "_dropping", "_pending", "_shown",
                 "_shown_at", "_after_bar")

    def __init__(self, stream: TextIO, drop: tuple[str, ...] = (), bars_as_lines: bool = False,
                 interval: float = LINE_INTERVAL):
        self._stream = stream
        self._drop = tuple(drop)
        self._bars_as_lines = bars_as_lines
        self._interval = interval
        self._dropping = False  # inside a dropped line, until its newline
        self._pending = ""  # the newest bar state not shown yet
        self._shown = ""  # the last one shown, and when
        self._shown_at = -math.inf
        self._after_bar = False  # the previous write redrew a bar

    def write(self, text: str) -> int:
        if self._dropping or (self._drop and text.startswith(self._drop)):
            self._dropping = "\n" not in text
            return len(text)
        if self._bars_as_lines and "\r" in text:
            self._redraw(text)
        elif self._after_bar and text == "\n":  # tqdm closing a bar: its final state is its last line
            self._end_bar()
        else:
            self._after_bar, self._pending = False, ""
            self._stream.write(text)
        return len(text)

    def _redraw(self, text: str) -> None:
        head, *states = text.split("\r")
        if head:
            self._stream.write(head if head.endswith("\n") else head + "\n")
        for state in states:
            state, newline, rest = state.partition("\n")
            if state.strip():
                self._pending = state.rstrip()
            if newline:
                self._end_bar()
                if rest:
                    self._stream.write(rest)
        if self._pending and time.monotonic() - self._shown_at >= self._interval:
            self._show()
        self._after_bar = True

    def _show(self) -> None:
        # tqdm redraws a finished bar once more on close: the same count with a new rate is no news
        if _progress_part(self._pending) != _progress_part(self._shown):
            self._stream.write(self._pending + "\n")
            self._stream.flush()
            self._shown, self._shown_at = self._pending, time.monotonic()
        self._pending = ""

    def _end_bar(self) -> None:
        if self._pending:
            self._show()
        self._shown, self._shown_at, self._after_bar = "", -math.inf, False  # the next bar shows at once

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def __getattr__(self, name: str):  # encoding, fileno, buffer, ...: the wrapped stream's
        return getattr(self._stream, name)


def _progress_part(state: str) -> str:
    """A tqdm state without its timing: `desc:  40%|####  | 4/10` of `... [00:02<00:03, 2.0it/s]`."""
    return state.rsplit(" [", 1)[0]


def configure_console(drop: tuple[str, ...] = ()) -> None:
    """Wrap sys.stdout and sys.stderr (once per process, before ClearML patches them in Task.init)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, ConsoleStream):
            continue
        terminal = stream.isatty()
        if not terminal and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)  # a log keeps stdout and stderr lines in order
        setattr(sys, name, ConsoleStream(stream, drop, bars_as_lines=not terminal))


def progress_bar(total: int, desc: str, unit: str = "question"):
    """One bar for one long phase: done/total, rate and ETA (a line every LINE_INTERVAL s in a log)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
