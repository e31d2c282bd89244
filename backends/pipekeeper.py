"""Keep a FIFO's unread records alive while no reader holds it.

A FIFO's buffer lives in the kernel only while some process has the FIFO
open.  Records a writer put there are acknowledged (PipeTransport.write
returned), so if the reader is gone (the server was killed, or is being
restarted) and the last writer closes, the kernel would drop them.  A
PipeTransport that closes while its FIFO holds bytes and has no reader
therefore hands its write end to this small process, started with
`python -m logkit.backends.pipekeeper FD SECONDS PATH` and the fd inherited:

* it holds the fd (it never writes nor reads), so the bytes stay;
* one keeper a FIFO is enough (any holder keeps the buffer): a keeper
  takes an flock on the FIFO and leaves at once if another holds it, so
  many writers closing together leave one keeper;
* once a reader holds the FIFO and the buffer is empty, or the buffer is
  empty and nobody reads, it exits: nothing left to keep;
* once PATH no longer names the FIFO (removed or replaced: no reader can
  open it again), it exits;
* after SECONDS (the transport's `keep_unread` option) it exits anyway,
  and what is still unread is lost, as it would have been without it.

It looks every POLL_INTERVAL seconds (poll(2) on the write end reports
POLLERR while no reader holds the FIFO; FIONREAD gives the bytes held).
"""
from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time

__all__ = ["held", "reader_present", "hand_over", "keep", "python_interpreter", "ForkedKeeper", "POLL_INTERVAL"]

POLL_INTERVAL = 0.1


def held(fd: int) -> int:
    """Bytes the pipe behind `fd` holds (0 if that cannot be asked)."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def reader_present(fd: int) -> bool:
    """Does some process hold the FIFO behind the write end `fd` for reading?"""
    p = select.poll()
    p.register(fd, select.POLLOUT)
    return not any(ev & select.POLLERR for _, ev in p.poll(0))


def python_interpreter() -> str | None:
    """sys.executable when it is a Python interpreter; None when it is not
    (an embedding program such as uWSGI puts its own binary there, which
    must not be started with our arguments)."""
    exe = sys.executable
    if exe and "python" in os.path.basename(os.path.realpath(exe)).lower():
        return exe
    return None


class ForkedKeeper:
    """A keeper forked without exec (no Python interpreter to start): pid,
    poll() and wait() as a Popen's."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pipekeeper {self.pid}", timeout)
            time.sleep(POLL_INTERVAL / 10)
        return self.returncode


def _fork_keeper(fd: int, seconds: float, path: str) -> ForkedKeeper | None:
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:                          # the keeper: nothing but `fd` and the loop
        try:
            os.setsid()
            os.closerange(0, fd)
            os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
            keep(fd, seconds, path)
        finally:
            os._exit(0)
    return ForkedKeeper(pid)


def hand_over(fd: int, seconds: float, path: str):
    """If the FIFO `path` behind write end `fd` holds bytes and no reader,
    start a keeper holding a copy of `fd` for at most `seconds`; the caller
    then closes its own fd as usual.  Returns the keeper, a Popen (or a
    ForkedKeeper where sys.executable is not a Python interpreter); None:
    nothing to keep."""
    if seconds <= 0 or held(fd) == 0 or reader_present(fd):
        return None
    exe = python_interpreter()
    if exe is None:
        return _fork_keeper(fd, seconds, path)
    try:
        return subprocess.Popen([exe, "-m", "logkit.backends.pipekeeper", str(fd), repr(float(seconds)),
                                 path],
                                pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except OSError:
        return None                      # no process to be had: as without a keeper


def _same_fifo(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def keep(fd: int, seconds: float, path: str) -> str:
    """Hold `fd` until the records in the pipe are read, `path` no longer
    names the FIFO, or `seconds` pass; returns why it stopped ("read",
    "empty", "removed", "timeout", or "another": a keeper holds it already)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return "another"
    deadline = time.monotonic() + seconds
    while True:
        if held(fd) == 0:
            return "read" if reader_present(fd) else "empty"
        if not _same_fifo(fd, path):
            return "removed"
        if time.monotonic() >= deadline:
            return "timeout"
        time.sleep(POLL_INTERVAL)


def main(argv: list[str]) -> int:
    fd, seconds, path = int(argv[0]), float(argv[1]), argv[2]
    os.set_inheritable(fd, False)
    keep(fd, seconds, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
