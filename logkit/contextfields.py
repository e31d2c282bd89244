"""Fields that follow the code: logkit.bind() and logkit.context().

    logkit.bind(request_id="r-17", user="alice")     # from here on, in this context
    with logkit.context(job="nightly"):              # inside the block only
        log.info("started")                          # fields: request_id, user, job

The fields live in a contextvars.ContextVar, so each asyncio task and each
thread has its own: a task started while fields are bound inherits a copy of
them (asyncio copies the context into each task), and what one task binds
is never seen by another.  logkit.Handler puts the current fields on every
record it writes, for any stdlib logger; fields given with ``extra=`` win
over bound ones of the same name.  Values keep their JSON types when read
back (``Message.fields``); a value JSON cannot hold is stored as its repr().
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar, Token
from typing import Any, Iterator

__all__ = ["bind", "unbind", "context", "current", "clear", "FIELDS"]

# The fields bound in the current context: a dict never mutated once set
# (bind makes a new one), so a task's copy of the context cannot see another
# task's changes.  logkit._handler reads it from C.
FIELDS: ContextVar[dict[str, Any]] = ContextVar("logkit_fields", default={})


def _check(fields: dict[str, Any]) -> None:
    for k in fields:
        if not k:
            raise ValueError("a field name must not be empty")


def bind(**fields: Any) -> Token:
    """Add `fields` to those bound in the current context (a name bound
    again takes the new value).  Returns the contextvars Token, for
    FIELDS.reset(token) to undo exactly this bind."""
    _check(fields)
    return FIELDS.set({**FIELDS.get(), **fields})


def unbind(*names: str) -> None:
    """Remove these names from the fields of the current context."""
    cur = FIELDS.get()
    if any(n in cur for n in names):
        FIELDS.set({k: v for k, v in cur.items() if k not in names})


def clear() -> None:
    """No fields bound in the current context."""
    FIELDS.set({})


def current() -> dict[str, Any]:
    """A copy of the fields bound in the current context."""
    return dict(FIELDS.get())


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Bind `fields` inside the block only; what was bound before comes back
    at its end, even if the block raises.  Yields the fields now bound."""
    _check(fields)
    token = FIELDS.set({**FIELDS.get(), **fields})
    try:
        yield dict(FIELDS.get())
    finally:
        FIELDS.reset(token)
