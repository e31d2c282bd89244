"""structlog into logkit: the last processor and the logger factory.

    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    logkit.structlog.to_logkit],
        logger_factory=logkit.structlog.LoggerFactory(config="logkit.toml", log="app"))

Sits beside logkit.handler: to_logkit turns structlog's event dict into the
parts of one record (text, severity, logger, source, fields, traceback,
time) and the loggers the factory makes write it with Handler.write_record.
This module never imports structlog (structlog calls it, not the reverse),
so importing it costs nothing where structlog is not installed.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import sys
import traceback as _tb
from typing import Any

from logkit.console import say
from logkit.handler import Handler

__all__ = ["to_logkit", "ToLogkit", "LoggerFactory", "Logger", "Event", "severity_of"]

# structlog's method names and level names (structlog.NAME_TO_LEVEL plus its
# aliases), as the stdlib numbers: "exception" is error(..., exc_info=True),
# level 40, as in structlog and in logging.Logger.exception.
LEVELS = {"notset": 0, "trace": 5, "debug": 10, "info": 20, "msg": 20, "success": 25, "warning": 30,
          "warn": 30, "error": 40, "err": 40, "exception": 40, "critical": 50, "fatal": 50}

# Keys of structlog.processors.CallsiteParameterAdder that are the record's
# source location; its other keys (filename, thread, process...) stay fields.
_SOURCE_KEYS = ("module", "func_name", "lineno", "pathname")

# Frames of these modules are structlog's machinery, not the caller: the
# source location is the first frame outside them.  The async methods
# (ainfo...) run the processors in an executor thread, whose frames are
# concurrent.futures' and threading's alone: there the source is left empty
# rather than wrong (CallsiteParameterAdder knows the caller of an async
# method).  A caller's own frame is always nearer than these.
_MACHINERY = ("structlog", "logkit.structlog", "concurrent.futures", "threading")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def severity_of(name_or_number: Any, default: int = 20) -> int:
    """The stdlib number of a structlog level: a method or level name
    ("warning", "exception", ...; any case), a number as it is, a name the
    logging module knows (logging.addLevelName) as its number, else
    `default`."""
    if isinstance(name_or_number, int) and not isinstance(name_or_number, bool):
        return name_or_number
    if isinstance(name_or_number, str):
        low = name_or_number.lower()
        if low in LEVELS:
            return LEVELS[low]
        n = logging.getLevelName(name_or_number.upper())
        if isinstance(n, int):
            return n
    return default


class Event:
    """One structlog event as the parts of a logkit record (what to_logkit
    returns and a Logger writes).  str() is the text, so a logger that is
    not logkit's still prints something sensible."""
    __slots__ = ("text", "severity", "logger", "module", "function", "line", "path", "fields",
                 "traceback", "time")

    def __init__(self, text: str, severity: int, logger: str, module: str, function: str, line: int,
                 path: str, fields: dict | None, traceback: str | None, time: int | None) -> None:
        self.text, self.severity, self.logger = text, severity, logger
        self.module, self.function, self.line, self.path = module, function, line, path
        self.fields, self.traceback, self.time = fields, traceback, time

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<logkit.structlog.Event {self.severity} {self.logger!r} {self.text!r} fields={self.fields!r}>"


def _caller(ignore: tuple[str, ...]):
    """The first frame outside structlog, this module and `ignore`, or None
    (an async method's processors run in an executor thread, where no frame
    is the caller's)."""
    f = sys._getframe(1)
    while f is not None:
        name = f.f_globals.get("__name__", "")
        if not any(name == i or name.startswith(i + ".") for i in ignore):
            return f
        f = f.f_back
    return None


def _time_ns(value: Any) -> int | None:
    """A `timestamp` value as ns since the epoch: a number of seconds, or an
    ISO 8601 string (structlog.processors.TimeStamper(fmt="iso"); without a
    zone it is local time); None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(value * 1_000_000_000) if value == value else None
    if isinstance(value, str):
        try:
            d = _dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if d.tzinfo is None:
            d = d.astimezone()
        return (d - _EPOCH) // _dt.timedelta(microseconds=1) * 1000
    return None


def _exc_tuple(exc_info: Any):
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        return (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[0] is not None:
        return exc_info
    return None


class ToLogkit:
    """The last structlog processor: the event dict as an Event.

    * ``event`` -> the text (str() of it; "" if missing)
    * ``level_number``, else ``level`` (structlog.processors.add_log_level),
      else the method name -> severity, as severity_of() maps it
    * ``logger_name``, else ``logger`` (structlog.stdlib.add_logger_name),
      else the wrapped logger's name (structlog.get_logger(name)) -> logger
    * ``module``, ``func_name``, ``lineno``, ``pathname``
      (CallsiteParameterAdder) -> the source location; what is missing comes
      from the calling frame
    * ``exception`` (format_exc_info's text) or ``exc_info`` (True, an
      exception, a sys.exc_info() tuple), then ``stack``
      (StackInfoRenderer) or ``stack_info=True`` -> the traceback; with the
      exception object at hand, ``exc_type`` and ``exc_message`` fields
    * ``timestamp`` as seconds or an ISO string -> the message's time (else
      now; a timestamp in another format stays a field)
    * every other key -> a field, with its JSON type (repr() where JSON has
      none).

    `ignore`: more module names whose frames are not the caller (a logging
    helper module of your own)."""

    def __init__(self, ignore: tuple[str, ...] | list[str] = ()) -> None:
        self.ignore = _MACHINERY + tuple(ignore)

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> tuple[tuple[Event], dict]:
        return (self.event(logger, method_name, event_dict),), {}

    def event(self, logger: Any, method_name: str, event_dict: dict) -> Event:
        """The Event of one event dict (left as it is)."""
        d = dict(event_dict)
        event = d.pop("event", "")
        text = event if isinstance(event, str) else ("" if event is None else str(event))

        sev = None
        if "level_number" in d and isinstance(d["level_number"], int):
            sev = d.pop("level_number")
            if severity_of(d.get("level"), None) is not None:
                del d["level"]          # the same level, named
        elif "level" in d:
            sev = severity_of(d["level"], None)
            if sev is not None:
                d.pop("level")
        if sev is None:
            sev = severity_of(method_name)

        name = d.pop("logger_name", None)
        if not isinstance(name, str):
            if isinstance(d.get("logger"), str):
                name = d.pop("logger")
            else:
                name = getattr(logger, "name", "")
                name = name if isinstance(name, str) else ""

        module, function, line, path = (d.pop(k, None) for k in _SOURCE_KEYS)
        stack_info = d.pop("stack_info", False)
        frame = None
        if None in (module, function, line, path) or stack_info is True:
            frame = _caller(self.ignore)
            if frame is not None:
                code = frame.f_code
                if path is None:
                    path = code.co_filename
                if module is None:
                    module = os.path.splitext(os.path.basename(code.co_filename))[0]
                if function is None:
                    function = code.co_name
                if line is None:
                    line = frame.f_lineno
        module = module if isinstance(module, str) else ("" if module is None else str(module))
        function = function if isinstance(function, str) else ("" if function is None else str(function))
        path = path if isinstance(path, str) else ("" if path is None else str(path))
        try:
            line = int(line or 0)
        except (TypeError, ValueError):
            line = 0

        tb = None
        exc = _exc_tuple(d.pop("exc_info", None))
        rendered = d.get("exception")
        if isinstance(rendered, str):
            tb = d.pop("exception")
            if exc is None:
                # format_exc_info took exc_info away; the exception being
                # handled is the one it rendered if the text ends with it.
                cur = sys.exc_info()
                if cur[1] is not None and tb.rstrip().endswith(
                        _tb.format_exception_only(cur[0], cur[1])[-1].rstrip()):
                    exc = cur
        elif exc is not None:
            tb = "".join(_tb.format_exception(*exc)).rstrip("\n")
        stack = d.pop("stack", None)
        if stack_info is True and not isinstance(stack, str) and frame is not None:
            stack = "Stack (most recent call last):\n" + "".join(_tb.format_stack(frame)).rstrip("\n")
        elif stack_info not in (False, None, True):
            d["stack_info"] = stack_info
        if isinstance(stack, str):
            tb = stack if tb is None else tb + "\n" + stack
        elif stack is not None:
            d["stack"] = stack
        if exc is not None:
            d.setdefault("exc_type", exc[0].__name__)
            d.setdefault("exc_message", str(exc[1]) if exc[1] is not None else "")

        when = None
        if "timestamp" in d:
            when = _time_ns(d["timestamp"])
            if when is not None:
                del d["timestamp"]
        return Event(text, sev, name, module, function, line, path, d or None, tb, when)


to_logkit = ToLogkit()
to_logkit.__doc__ = ToLogkit.__doc__


class Logger:
    """The logger a LoggerFactory makes: each method (debug, info, warning,
    error, exception, critical, msg, ...: any name) writes one record.  It
    takes what the last processor returned: an Event (to_logkit), a str (a
    renderer such as JSONRenderer: the text, with the method's severity), or
    keyword arguments (an event dict, converted as to_logkit does).  A write
    that fails (a closed handler, a message too big) is reported on stderr
    the way logging reports a failing handler, and never raises into the
    caller (unless logging.raiseExceptions is False, then it is silent)."""

    def __init__(self, handler: Handler, name: str = "") -> None:
        self.handler = handler
        self.name = name

    def write(self, method_name: str, *args: Any, **kw: Any) -> None:
        try:
            if len(args) == 1 and isinstance(args[0], Event) and not kw:
                e = args[0]
            elif kw or not args:
                e = to_logkit.event(self, method_name, kw)
            else:
                text = args[0] if isinstance(args[0], str) else (
                    args[0].decode("utf-8", "replace") if isinstance(args[0], bytes) else str(args[0]))
                e = Event(text, severity_of(method_name), self.name, "", "", 0, "", None, None, None)
            self.handler.write_record(e.text, e.severity, logger=e.logger, module=e.module,
                                      function=e.function, line=e.line, path=e.path, fields=e.fields,
                                      traceback=e.traceback, time=e.time)
        except Exception:
            if logging.raiseExceptions:
                say(f"--- Logging error in logkit.structlog ({self.handler!r}) ---\n"
                    + _tb.format_exc().rstrip("\n"))

    def __getattr__(self, method_name: str):
        if method_name.startswith("_"):
            raise AttributeError(method_name)
        return lambda *args, **kw: self.write(method_name, *args, **kw)

    def __repr__(self) -> str:
        return f"<logkit.structlog.Logger {self.name!r} {self.handler!r}>"


class LoggerFactory:
    """structlog's logger_factory writing into one logkit log.

    LoggerFactory(log=None, config=None, *, handler=None, **options) opens
    the log as logkit.Handler(log, config, **options) does (raises
    logkit.ConfigError, naming file, table and key, when the configuration
    is not valid), or writes through `handler`, a logkit.Handler you
    already have (the stdlib's records and structlog's then share it).
    structlog.get_logger(name) names the logger; close() closes a handler
    the factory opened."""

    def __init__(self, log: str | None = None, config: str | os.PathLike | None = None, *,
                 handler: Handler | None = None, **options: Any) -> None:
        if handler is not None:
            if log is not None or config is not None or options:
                raise TypeError("LoggerFactory: give either handler= or the log's options, not both")
            self.handler, self.owned = handler, False
        else:
            self.handler, self.owned = Handler(log, config, **options), True

    def __call__(self, *args: Any) -> Logger:
        name = args[0] if args and isinstance(args[0], str) else ""
        return Logger(self.handler, name)

    def close(self) -> None:
        """Flush and close the handler, if the factory opened it."""
        if self.owned:
            self.handler.close()

    def __repr__(self) -> str:
        return f"<logkit.structlog.LoggerFactory {self.handler!r}>"
