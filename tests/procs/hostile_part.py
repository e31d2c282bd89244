"""Processes for the hostile partition tests (tests/test_partition_hostile.py).

A child is a fresh interpreter running a short script with injection points
armed from its environment (logkit.inject): the parent waits for the line
the child writes to the notify file when it reaches the point, then stops,
continues (``<notify>.go`` for a "wait" point), or kills that one pid.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from logkit import inject
from waiting import TIMEOUT

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Child:
    """One child interpreter running `script`, with `points` armed
    ("name=action@N,...") and its notify file in `workdir`."""

    def __init__(self, workdir, script: str, points: str = "", name: str = "child"):
        self.notify = os.path.join(os.fspath(workdir), f"{name}.notify")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.pop(inject.ENV, None)
        if points:
            env[inject.ENV] = points
            env[inject.ENV_NOTIFY] = self.notify
        self.out = os.path.join(os.fspath(workdir), f"{name}.out")
        self._out = open(self.out, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def wait_point(self, name: str, timeout: float = TIMEOUT) -> None:
        inject.wait_for_point(self.notify, name, timeout, proc=self.proc)

    def go(self) -> None:
        """Release a "wait" point."""
        open(self.notify + ".go", "w").close()

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def cont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(TIMEOUT)
        self._out.close()

    def finish(self, timeout: float = TIMEOUT) -> str:
        """Wait for a clean exit; return its output (AssertionError otherwise)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"child did not finish in {timeout} s: {self.output()}")
        self._out.close()
        out = self.output()
        assert code == 0, f"child exited {code}:\n{out}"
        return out

    def output(self) -> str:
        with open(self.out) as f:
            return f.read()
