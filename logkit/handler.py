"""logkit.Handler: the stdlib logging handler that writes into a logkit log.

Sits on top of the config layer and the registry: the handler resolves its
log (a config file's [log.NAME] table, or keyword options), opens the
transport in front of the storage, and writes each record with the Cython hot
path in logkit._handler (no handler lock on the write path).
"""
from __future__ import annotations

import logging
import os
from typing import Any

import time as _time

from logkit import _handler, forking
from logkit._segment import RECORD_CLASS, SEVERITY_MAX, SEVERITY_MIN, record_encode
from logkit.contextfields import FIELDS as _FIELDS
from logkit.config import LogConfig, resolve
from logkit.errors import LogkitError

__all__ = ["Handler"]

class Handler(logging.Handler):
    """A logging.Handler writing into a logkit log.

    Handler(log=None, config=None, level=NOTSET, **options)

    * ``config``: a config file path; ``log``: the [log.NAME] table in it
      (optional if the file has one log).  Keyword options are laid over it.
    * options only, e.g. ``Handler(storage="family", directory="/var/log/app")``:
      the same keys a [log.NAME] table takes, checked the same way.
    * nothing: the first config file of $LOGKIT_CONFIG, ./logkit.toml,
      ~/.config/logkit/logkit.toml, /etc/logkit/logkit.toml.

    Raises logkit.config.ConfigError (naming file, table and key) when the
    configuration is not valid.  Records map as: levelno -> severity
    (clamped to -250..250), formatted message -> text, created -> time,
    process/thread -> the message's ids (the writing process's own), and
    one record payload (data class 'record', docs/format.md) with the
    logger's name, module, funcName, lineno and pathname, the fields
    (logkit.bind()/context() fields, then extra= attributes, then exc_type
    and exc_message for an exception) and the traceback (exc_info and
    stack_info).  Read them back as Message.logger / .fields / .traceback /
    .record.  A lone surrogate (a file name from os.fsdecode, say) cannot
    be UTF-8: it is written as its escape, ``\\udcXX``, as
    logging.basicConfig's default errors='backslashreplace' does (in a
    field the escape reads back as the same string); the record is never
    refused for it.

    close() may run while other threads log (dictConfig replacing the
    handler, logging.shutdown at exit): a record that races it is either
    written or reported through handleError as "closed"; records logged
    before close() began are all in the log.
    """

    def __init__(self, log: str | None = None, config: str | os.PathLike | None = None,
                 level: int | str = logging.NOTSET, **options: Any) -> None:
        super().__init__(level)
        self.transport = None            # until opened: flush()/close() at shutdown must work
        self.log_config: LogConfig = resolve(log, config, **options)
        self.transport = self.log_config.open()
        self._bind()
        forking.track(self, Handler._after_fork)   # after its transport, made above

    def _bind(self) -> None:
        """Choose the write path: the transport's fast sink when it offers one
        (TransportBackend.fast_sink: shm over family storage writes straight
        into the family's segment from C), else the transport's write().
        handle() and emit() become logkit._handler.Emitter objects holding
        that choice."""
        t = self.transport
        sink = t.fast_sink()
        self._emitters = (_handler.Emitter(self, sink, t.write),
                          _handler.Emitter(self, sink, t.write, emit_only=True))
        self.handle = self._emitters[0].handle
        self.emit = self._emitters[1].handle

    def setFormatter(self, fmt) -> None:
        super().setFormatter(fmt)
        for e in self.__dict__.get("_emitters", ()):
            e.formatter = fmt

    @property
    def storage(self):
        return self.transport.storage

    def write_record(self, text: str, severity: int = 20, *, logger: str = "", module: str = "",
                     function: str = "", line: int = 0, path: str = "", fields: dict | None = None,
                     traceback: str | None = None, time: int | None = None):
        """Write one record that is not a logging.LogRecord (what the
        structlog and loguru adapters call): `text` with its severity
        (clamped to -250..250), the logger's name, the source location, the
        fields and the traceback, as one record payload (data class
        "record", docs/format.md), the same the handler writes for a
        LogRecord.  Fields bound with logkit.bind()/context() come first;
        `fields` win over them.  `time`: ns since the epoch (default now).
        Returns the sequence number where the transport gives one; raises
        LogkitError (closed, a full disk...), never calls handleError."""
        t = self.transport
        if t is None:
            raise LogkitError("logkit.Handler is closed")
        bound = _FIELDS.get()
        merged = {**bound, **fields} if bound and fields else (fields or bound or None)
        data = record_encode(logger, module, function, line, path, merged, traceback)
        sev = max(SEVERITY_MIN, min(SEVERITY_MAX, int(severity)))
        when = _time.time_ns() if time is None else int(time)
        sink = self._emitters[0].sink
        if sink is not None:
            return sink.write(text, sev, data, RECORD_CLASS, when)
        return t.write(text, sev, data, RECORD_CLASS, when)

    def flush(self) -> None:
        """Make written records durable as the log's sync policy says."""
        t = self.transport               # once: close() may clear it from another thread
        if t is not None:
            t.flush()

    def close(self) -> None:
        """Flush and stop writing; records already written stay in the log."""
        t, self.transport = self.transport, None
        for e in self.__dict__.get("_emitters", ()):
            e.sink, e.write = None, _closed_write
        if t is not None:
            try:
                t.flush()
            finally:
                t.close()
        super().close()

    def _after_fork(self) -> None:
        if self.transport is not None:
            self.transport.after_fork()

    def __repr__(self) -> str:
        lc = self.log_config
        return f"<logkit.Handler log={lc.name!r} storage={lc.storage} transport={lc.transport} " \
               f"({logging.getLevelName(self.level)})>"


def _closed_write(*args):
    raise LogkitError("logkit.Handler is closed")
