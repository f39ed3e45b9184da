"""A tiny progress line on stderr for long imports: `\r` updates with rows, % and rows/s."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`update(rows, done_fraction)` redraws at most every `interval` seconds; `close()` ends
    the line. Silent when the stream is not a terminal (unless `force`)."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        interval: float = 0.2,
        force: bool = False,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.interval = interval
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = enabled and (force or isatty)
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False
        self.rows = 0
        self.fraction: float | None = None

    def update(self, rows: int, fraction: float | None = None) -> None:
        self.rows, self.fraction = rows, fraction
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        pct = f" {self.fraction * 100:5.1f}%" if self.fraction is not None else ""
        self.stream.write(
            f"\r{self.label}: {self.rows:>12,} rows{pct}  {self.rows / elapsed:>10,.0f} rows/s"
        )
        self.stream.flush()
        self._drawn = True

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        self.stream.write(f"\r{self.label}: {text}" + " " * 30)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if not self.enabled:
            return
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()
