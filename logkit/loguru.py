"""loguru into logkit: a sink.

    from loguru import logger
    logger.add(logkit.loguru.Sink(config="logkit.toml", log="app"))

Sits beside logkit.handler: each loguru record becomes one logkit record
(Handler.write_record), so every process writing one family rotates it
together, without loguru's per-process file rotation.  This module never
imports loguru (loguru calls the sink), so importing it costs nothing where
loguru is not installed.
"""
from __future__ import annotations

import datetime as _dt
import os
import traceback as _tb
from typing import Any

from logkit.handler import Handler

__all__ = ["Sink"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class Sink:
    """A loguru sink writing into one logkit log: ``logger.add(Sink(...))``.

    Sink(log=None, config=None, *, handler=None, **options) opens the log
    as logkit.Handler(log, config, **options) does (raises
    logkit.ConfigError, naming file, table and key, when the configuration
    is not valid), or writes through `handler`, a logkit.Handler you
    already have.  Each record maps as:

    * record["message"] -> the text (loguru's format= is not used)
    * record["level"].no -> severity (TRACE 5, DEBUG 10, INFO 20, SUCCESS
      25, WARNING 30, ERROR 40, CRITICAL 50, a custom level its number)
    * record["name"] -> logger; module, function, line, file.path -> the
      source location; record["time"] -> the message's time
    * record["extra"] (bind(), contextualize()) -> fields, with their JSON
      types; for an exception also exc_type and exc_message (unless bound)
    * record["exception"] -> the traceback, formatted as Python does.

    loguru calls write() for each record (the sink is also callable) and
    stop() when the sink is removed (logger.remove(), and at exit): stop()
    flushes and closes a handler the sink opened.  A failing write raises
    LogkitError into loguru, which reports it on stderr (catch=True)."""

    def __init__(self, log: str | None = None, config: str | os.PathLike | None = None, *,
                 handler: Handler | None = None, **options: Any) -> None:
        if handler is not None:
            if log is not None or config is not None or options:
                raise TypeError("logkit.loguru.Sink: give either handler= or the log's options, not both")
            self.handler, self.owned = handler, False
        else:
            self.handler, self.owned = Handler(log, config, **options), True

    def write(self, message: Any) -> None:
        """Write one loguru Message (a str with its .record dict)."""
        r = message.record
        fields = dict(r["extra"]) if r["extra"] else None
        tb = None
        exc = r["exception"]
        if exc is not None and exc.type is not None:
            tb = "".join(_tb.format_exception(exc.type, exc.value, exc.traceback)).rstrip("\n")
            fields = fields or {}
            fields.setdefault("exc_type", exc.type.__name__)
            fields.setdefault("exc_message", str(exc.value) if exc.value is not None else "")
        when = r["time"]
        if isinstance(when, _dt.datetime):
            if when.tzinfo is None:
                when = when.astimezone()
            when = (when - _EPOCH) // _dt.timedelta(microseconds=1) * 1000
        else:
            when = None
        f = r["file"]
        self.handler.write_record(r["message"], r["level"].no, logger=r["name"] or "",
                                  module=r["module"] or "", function=r["function"] or "",
                                  line=r["line"] or 0, path=getattr(f, "path", "") or "",
                                  fields=fields, traceback=tb, time=when)

    __call__ = write

    def stop(self) -> None:
        """Flush and close the handler, if the sink opened it (loguru calls
        this when the sink is removed)."""
        if self.owned:
            self.handler.close()

    def __repr__(self) -> str:
        return f"<logkit.loguru.Sink {self.handler!r}>"
