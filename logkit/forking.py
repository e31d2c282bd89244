"""What a forked child must reset before it logs, in one place.

Sits below everything that holds per-process state (writers, storages,
transports, handlers): each registers here instead of calling
os.register_at_fork itself, and this module's one hook runs them all in the
child, in the order documented on `after_fork_in_child` and `track`.

Order in the child (why it matters: a fork taken while another thread held a
lock leaves that lock held forever in the child, and the objects' resets may
take module locks):

1. module callbacks (`after_fork_in_child`), in the order registered: module
   state such as a process-wide lock or table, which the objects' resets
   below may use;
2. tracked objects (`track`), in the order tracked, which is the order they
   were made: an object made inside another's constructor (a transport's
   storage, a storage's writer) is reset before the object holding it (the
   Handler), whose reset may call into it.

Every callback runs even if an earlier one raised; the first exception is
then raised from the hook, which Python reports as an ignored exception
(os.register_at_fork cannot fail the fork).
"""
from __future__ import annotations

import itertools
import os
import weakref
from typing import Any, Callable, TypeVar

__all__ = ["after_fork_in_child", "track"]

_F = TypeVar("_F", bound=Callable[[], Any])

_callbacks: list[Callable[[], Any]] = []
# order of tracking -> (weak reference to the object, its reset or None)
_tracked: dict[int, tuple[weakref.ref, Callable[[Any], Any] | None]] = {}
_order = itertools.count()


def after_fork_in_child(callback: _F) -> _F:
    """Call `callback()` in every child forked from now on, before any
    tracked object is reset (module state: locks, tables of this process).
    Returns `callback`, so it can be used as a decorator; registering the same
    callback twice runs it once."""
    if callback not in _callbacks:
        _callbacks.append(callback)
    return callback


def track(obj: Any, reset: Callable[[Any], Any] | None = None) -> None:
    """In every child forked while `obj` lives, call `reset(obj)` (or, with no
    `reset`, ``obj.after_fork()``), after the module callbacks and after the
    objects tracked before it.  `obj` is held weakly: tracking never keeps it
    alive.  `reset` must not hold `obj` (pass a function or an unbound method,
    not a bound one), or `obj` would never be freed."""
    key = next(_order)
    _tracked[key] = (weakref.ref(obj, lambda _ref, key=key: _tracked.pop(key, None)), reset)


def _run_in_child() -> None:
    first: BaseException | None = None
    for callback in list(_callbacks):
        try:
            callback()
        except BaseException as e:       # the others must still run
            first = first or e
    for ref, reset in list(_tracked.values()):
        obj = ref()
        if obj is None:
            continue
        try:
            if reset is None:
                obj.after_fork()
            else:
                reset(obj)
        except BaseException as e:
            first = first or e
    if first is not None:
        raise first


os.register_at_fork(after_in_child=_run_in_child)
