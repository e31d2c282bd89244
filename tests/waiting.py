"""Waiting on conditions: the one polling helper of the tests and of the
processes they start (imported as `waiting`, tests/ being on sys.path).

A test never sleeps to let something happen.  It waits, with a timeout,
until the condition it needs holds: a count, a file, a process state, a
header word, or the clock the code under test reads having passed a
deadline.  Spawned children, pipes and injection points have waits of their
own (procs.common, logkit.inject); this is for everything else.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

TIMEOUT = 60.0          # the longest any single wait may take before the test fails


class WaitTimeout(AssertionError):
    """What a test waited for did not come within its timeout."""


def wait_until(cond: Callable[[], T], what: str, timeout: float = TIMEOUT, *, interval: float = 0.005,
               detail: Callable[[], object] | None = None) -> T:
    """Call cond() until it returns a true value, and return that value.

    `what` names the awaited condition for the failure message ("the server
    to drain 10 records"); after `timeout` seconds WaitTimeout is raised,
    with detail()'s account of the state at that moment if given.  cond() is
    called every `interval` seconds (0: as fast as it returns, for a cond
    that blocks on something itself, such as a select)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            more = f"; {detail()}" if detail is not None else ""
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}{more}")
        if interval:
            time.sleep(interval)        # the poll interval, not a synchronisation


def never_within(cond: Callable[[], object], seconds: float, what: str, *, interval: float = 0.005,
                 detail: Callable[[], object] | None = None) -> None:
    """Check that cond() stays false for `seconds` (a window the behaviour
    under test must hold for, e.g. "held back far past its grace"); fail
    with AssertionError naming `what` the moment it turns true."""
    deadline = time.monotonic() + seconds
    while True:
        if cond():
            more = f"; {detail()}" if detail is not None else ""
            raise AssertionError(f"{what} within {seconds:g} s{more}")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)            # the poll interval of the window
