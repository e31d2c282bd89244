"""Named fault-injection points: the one test-only mechanism that stops or kills
a process at a named step, so crash and stall windows are deterministic.

Every layer (core, family, partition, pipe journal, server) calls
``inject.point("layer.step")`` at each step a crash could interrupt.  Unarmed
(the normal case) a point costs one dict lookup of a module global that is
empty, and nothing else.  The C hot path has no points of its own: its steps
are reached through ``write_stepwise`` below, which runs the same inline C
writer (``Segment.write_steps``) with the point ``core.write.<step>`` after
each step.

Arming, from the environment of a process before it imports logkit::

    LOGKIT_INJECT="partition.drain.appended=kill@3,family.rotate.linked=stop"
    LOGKIT_INJECT_NOTIFY=/path/to/file     # optional

or in-process with ``arm(name, action, hit=1)``.  ``name=action@N`` acts on
the N-th time the point is reached (default 1); ``*`` as the name arms every
point (with ``@N``: the N-th point reached, whatever its name: the random
instants of the crash matrix).  Actions:

- ``kill``: SIGKILL this process at once (no cleanup, no atexit, no flush);
- ``stop``: SIGSTOP this process (the test SIGCONTs or SIGKILLs it);
- ``exit``: ``os._exit(86)``;
- ``raise``: raise ``Injected`` (for in-process tests of cleanup paths);
- ``wait``: block until the notify file's sibling ``<notify>.go`` exists
  (polled every millisecond; a test that needs a live but paused process
  without SIGSTOP).

Before it acts, the process appends ``"<name> <pid>\\n"`` to the notify file
(if set) and fsyncs nothing: the parent waits for that line with
``wait_for_point``, then kills, continues or inspects the process.
"""
from __future__ import annotations

import os
import signal
import time

__all__ = ["Injected", "parse_spec", "point", "arm", "disarm", "armed", "hits", "wait_for_point",
           "write_stepwise", "ENV", "ENV_NOTIFY"]

ENV = "LOGKIT_INJECT"
ENV_NOTIFY = "LOGKIT_INJECT_NOTIFY"
ACTIONS = ("kill", "stop", "exit", "raise", "wait")


class Injected(BaseException):
    """Raised by an armed point with action ``raise``.  A BaseException, so the
    code under test cannot swallow it in an ``except Exception`` clause,
    exactly as it could not swallow a SIGKILL."""


# name -> [action, hit]; empty unless armed.  The only state of this module.
_armed: dict[str, list] = {}
_counts: dict[str, int] = {}
_notify: str | None = None


def parse_spec(spec: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, rest = item.partition("=")
        action, _, hit = rest.partition("@")
        if not sep or action not in ACTIONS or (hit and not hit.isdigit()):
            raise ValueError(f"{ENV}: bad item {item!r}: want NAME=ACTION[@N], ACTION one of {', '.join(ACTIONS)}")
        out[name] = [action, int(hit or 1)]
    return out


def arm(name: str, action: str = "kill", hit: int = 1, notify: str | None = None) -> None:
    """Arm `name` (or ``*``) to `action` on its `hit`-th visit from now."""
    global _notify
    if action not in ACTIONS:
        raise ValueError(f"unknown injection action {action!r}")
    _armed[name] = [action, int(hit)]
    _counts.pop(name, None)
    if notify is not None:
        _notify = notify


def disarm(name: str | None = None) -> None:
    """Disarm one point, or all of them."""
    if name is None:
        _armed.clear()
        _counts.clear()
    else:
        _armed.pop(name, None)


def armed() -> dict[str, tuple[str, int]]:
    return {k: (v[0], v[1]) for k, v in _armed.items()}


def hits() -> dict[str, int]:
    """How many times each armed point (and ``*``) has been reached."""
    return dict(_counts)


def point(name: str) -> None:
    """A named step.  Does nothing unless this name (or ``*``) is armed."""
    if not _armed:
        return
    for key in (name, "*"):
        spec = _armed.get(key)
        if spec is None:
            continue
        n = _counts.get(key, 0) + 1
        _counts[key] = n
        if n == spec[1]:
            _act(name, spec[0])


def _act(name: str, action: str) -> None:
    if _notify:
        fd = os.open(_notify, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{name} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action == "exit":
        os._exit(86)
    elif action == "raise":
        raise Injected(name)
    elif action == "wait":
        go = f"{_notify}.go" if _notify else None
        while go is None or not os.path.exists(go):
            time.sleep(0.001)


def wait_for_point(notify: str, name: str | None = None, timeout: float = 60.0,
                   proc=None) -> tuple[str, int]:
    """Wait until a process reports reaching a point in `notify` (any point, or
    `name`); return (name, pid).  Raises TimeoutError naming what it waited
    for, or RuntimeError if `proc` (a multiprocessing.Process or Popen) ended
    first without reaching it."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            with open(notify) as f:
                for line in f:
                    n, _, pid = line.strip().rpartition(" ")
                    if n and (name is None or n == name):
                        return n, int(pid)
        except FileNotFoundError:
            pass
        if proc is not None:
            code = proc.exitcode if hasattr(proc, "exitcode") else proc.poll()
            if code is not None:
                raise RuntimeError(f"the process ended (exit {code}) before reaching {name or 'a point'}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no process reached injection point {name or '(any)'} within {timeout} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


if os.environ.get(ENV):
    _armed.update(parse_spec(os.environ[ENV]))
    _notify = os.environ.get(ENV_NOTIFY) or None


def _core_step(name: str) -> None:
    point(f"core.write.{name}")


def write_stepwise(segment, text, severity=20, data=b"", data_class="", time=None, stop_at=None,
                   action="stop", notify=None, process_id=None, thread_id=None) -> int:
    """Write one message to `segment` through the core's inline C writer
    (``Segment.write_steps``) with the point ``core.write.<step>`` after
    each step ("claimed", "stub", "copied", "committed"), so those points
    can be armed from the environment; `stop_at` arms that step here with
    `action` and `notify` for this one write.  process_id/thread_id make it
    a write_as().  Returns the sequence number; raises as write()."""
    from logkit._segment import STEP_NAMES
    from logkit.errors import InvalidArgument
    if stop_at is not None and stop_at not in STEP_NAMES:
        raise InvalidArgument(f"stop_at must be one of {sorted(STEP_NAMES)}, not {stop_at!r}")
    if stop_at is not None:
        arm(f"core.write.{stop_at}", action, 1, notify)
    try:
        return segment.write_steps(text, severity, data, data_class, time, _core_step,
                                   process_id, thread_id)
    finally:
        if stop_at is not None:
            disarm(f"core.write.{stop_at}")
