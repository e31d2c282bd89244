"""One line of diagnostics on stderr, written in one write().

print(msg, file=sys.stderr) writes the message and its newline separately
when the stream is unbuffered (python -u, PYTHONUNBUFFERED=1, what process
managers often set): a reader of the pipe can see the line without its end,
and the lines of several processes sharing one stderr (gunicorn workers, a
monitor per log) interleave mid-line.  Every logkit diagnostic goes through
say(), which hands the whole line, newline included, to one write and
flushes it.
"""
from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["say"]


def say(text: str, stream: TextIO | None = None) -> None:
    """Write `text` and a newline to `stream` (default sys.stderr) in one write, then flush."""
    out = sys.stderr if stream is None else stream
    if out is None:                      # pythonw, a daemon with stderr closed
        return
    out.write(text + "\n")
    out.flush()
