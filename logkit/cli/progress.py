"""A one-line progress display for the long commands (verify, salvage, migrate).

On a terminal (stderr is a tty) it keeps one line up to date with ``\\r``:
``verify: 12/40 segments, 1.2 GB``; anywhere else (a pipe, a file, a test) it
writes nothing at all, so a command's output is the same with and without it.
"""
from __future__ import annotations

import sys
import time as _time
from typing import TextIO


def human_bytes(n: int | float) -> str:
    """'0 B', '512 B', '1.2 kB', '34.5 MB', '1.2 GB' (decimal units, as file managers show)."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop always returns


class Progress:
    """``label: done/total unit, bytes`` on one updating line of `stream`.

    `enabled` defaults to whether `stream` (default stderr) is a terminal.
    Redraws at most every `interval` seconds (the last state is always drawn
    by done()).  Use write() for output lines while the display is up: it
    clears the progress line first, so the two never run together.
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "segments",
                 stream: TextIO | None = None, enabled: bool | None = None, interval: float = 0.1):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = bool(enabled)
        self.interval = interval
        self.count = 0
        self.nbytes = 0
        self._shown = 0              # width of the line on screen now (0: none)
        self._last = 0.0

    def line(self) -> str:
        """The text of the progress line for the current state."""
        of = f"/{self.total}" if self.total is not None else ""
        text = f"{self.label}: {self.count}{of} {self.unit}"
        if self.nbytes:
            text += f", {human_bytes(self.nbytes)}"
        return text

    def update(self, count: int | None = None, nbytes: int | None = None, force: bool = False) -> None:
        """Set the counts (absolute values) and redraw if it is time to."""
        if count is not None:
            self.count = count
        if nbytes is not None:
            self.nbytes = nbytes
        self._draw(force)

    def step(self, nbytes: int = 0) -> None:
        """One more item done, of `nbytes` bytes."""
        self.count += 1
        self.nbytes += nbytes
        self._draw(False)

    def _draw(self, force: bool) -> None:
        if not self.enabled:
            return
        now = _time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        text = self.line()
        pad = max(0, self._shown - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._shown = len(text)

    def clear(self) -> None:
        """Remove the line from the screen (it comes back at the next update)."""
        if self.enabled and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0
            self._last = 0.0

    def write(self, text: str, file: TextIO | None = None) -> None:
        """Print a line of output (default: stdout) without mixing it into the progress line."""
        self.clear()
        out = file if file is not None else sys.stdout
        print(text, file=out)
        out.flush()

    def done(self) -> None:
        """The operation is over: remove the line."""
        self.clear()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.done()
