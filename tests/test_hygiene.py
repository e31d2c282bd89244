"""File hygiene (issue #13: defects 13, 15, 18, 21 and the "Disk full" and
"Permissions and input hygiene" items): planted links and FIFOs are refused
and their targets left alone, a world-writable directory is refused, created
files and directories get their modes whatever the umask, implausible pipe
journal words are a clear error (never a hang, a huge allocation or a raw
Python error), a full disk is a clear DiskFull that loses nothing and writing
resumes when space returns, and a read-only user reads and changes nothing.

logkit.safefs is the mechanism under test; these tests drive it through the
pipe journal, the server's status file, the plainfile backend, `logkit
salvage` and the key file loader.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import resource
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import logkit
import logkit.cli
from logkit import safefs
from logkit.backends.family import FamilyStorage
from logkit.backends.pipe import drain_pipe, encode_record
from logkit.backends.pipejournal import (HEADER_SIZE, W_BATCH, W_END, W_RESOLVE, W_STORED, W_BASE, W_APPLIED,
                                         JournalDamaged, read_journal_header)
from logkit.backends.plainfile import PlainFileReader, PlainFileStorage
from logkit.crypto import KeyFilePermissions, generate_key_file, load_key_file
from logkit.errors import DiskFull, LogkitError, ReadOnlyFileSystem, UnsafePath
from logkit.server import BufferWatch, read_status, status_path
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60


# ---------------------------------------------------------------- helpers

def record(i: int) -> bytes:
    return encode_record(f"record {i:05d}".encode(), 20, b"", b"", 1_700_000_000_000_000_000 + i, 4242, 7)


class Fifo:
    """A FIFO held open read-write by the test, so what it holds outlives readers."""

    def __init__(self, directory):
        self.path = str(Path(directory) / "p.fifo")
        os.mkfifo(self.path, 0o600)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    def send(self, frames):
        for f in frames:
            assert os.write(self.fd, f) == len(f)

    def pending(self) -> int:
        import fcntl
        import termios
        import array
        buf = array.array("i", [0])
        fcntl.ioctl(self.fd, termios.FIONREAD, buf)
        return buf[0]

    def close(self):
        os.close(self.fd)


def family(directory):
    return FamilyStorage("p", directory=str(directory), family="p", create_directory=True)


def texts(directory):
    s = family(directory)
    try:
        return [m.text for m in s.reader()]
    finally:
        s.close()


def drain(fifo, fam_dir, **kw):
    s = family(fam_dir)
    try:
        return drain_pipe(fifo.path, s, spill=False, idle_timeout=0.2, **kw)
    finally:
        s.close()


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_cli(capsys, *argv):
    capsys.readouterr()
    rc = logkit.cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def bounded_python(code: str, timeout: float = 30, memory: int = 1 << 30) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter limited to `memory` bytes of address
    space and `timeout` seconds; a TimeoutExpired is a test failure (a hang)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung: still running after {timeout} s")


def set_words(path: str, **words: int) -> None:
    offs = {"base": W_BASE, "end": W_END, "batch": W_BATCH, "resolve": W_RESOLVE, "stored": W_STORED,
            "applied": W_APPLIED}
    with open(path, "r+b") as f:
        for k, v in words.items():
            f.seek(offs[k])
            f.write(v.to_bytes(8, "little"))


@contextlib.contextmanager
def tmpfs(size: str = "2m"):
    """A small tmpfs of our own (root only); skipped with the reason elsewhere."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the disk-full tests fill a file system of their own)")
    d = tempfile.mkdtemp(prefix="logkit-tmpfs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", d],
                       capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"mount -t tmpfs is not permitted here ({r.stderr.strip()}): the disk-full tests need "
                    "a file system they can fill without filling the machine's")
    try:
        yield Path(d)
    finally:
        subprocess.run(["umount", "-l", d], check=False)
        os.rmdir(d)


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for n in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\xaa" * n)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def make_journal(tmp_path, n=5):
    fifo = Fifo(tmp_path)
    drain(fifo, tmp_path / "fam")                        # creates the journal
    fifo.send([record(i) for i in range(n)])             # and these wait in the FIFO
    return fifo, fifo.path + ".journal"


# ================================================================ #15: implausible journal words

IMPLAUSIBLE = {
    # end far past the file: 8 GiB of zeros to decode before the fix
    "end_past_the_file": dict(end=0x100000008),
    # end and batch at 2^40: the start-up loop never finishes before the fix
    "end_and_batch_2_40": dict(end=1 << 40, batch=1 << 40),
    # every position at 2^64-16: the next batch overflows a word
    "positions_near_2_64": dict(base=(1 << 64) - 16, end=(1 << 64) - 16, batch=(1 << 64) - 16,
                                resolve=(1 << 64) - 16, applied=(1 << 64) - 16),
}


@pytest.mark.parametrize("case", list(IMPLAUSIBLE))
def test_an_implausible_journal_word_is_a_clear_error_at_once_naming_the_file_and_word(tmp_path, case):
    fifo, path = make_journal(tmp_path)
    try:
        set_words(path, **IMPLAUSIBLE[case])
        r = bounded_python(f"""
            from logkit.backends.family import FamilyStorage
            from logkit.backends.pipe import drain_pipe
            from logkit.backends.pipejournal import JournalDamaged
            s = FamilyStorage("p", directory={str(tmp_path / "fam")!r}, family="p", create_directory=True)
            try:
                drain_pipe({fifo.path!r}, s, spill=False, idle_timeout=0)
            except JournalDamaged as e:
                print("DAMAGED", e)
            else:
                print("NO ERROR")
        """)
        assert r.returncode == 0 and r.stdout.startswith("DAMAGED"), (r.stdout, r.stderr[-2000:])
        assert path in r.stdout
        word = "base" if case == "positions_near_2_64" else "end"
        assert f"{word} " in r.stdout, r.stdout
        assert "move it aside" in r.stdout
        assert fifo.pending() == sum(len(record(i)) for i in range(5)), "nothing was taken from the FIFO"
    finally:
        fifo.close()


@pytest.mark.parametrize("case", list(IMPLAUSIBLE))
def test_logkit_display_shows_an_implausible_journal_without_crashing(tmp_path, case):
    fifo, path = make_journal(tmp_path)
    fifo.close()
    set_words(path, **IMPLAUSIBLE[case])
    r = bounded_python(f"""
        import sys, logkit.cli
        sys.exit(logkit.cli.main(["display", {path!r}]))
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert f"pipe journal {path}" in r.stdout
    assert "problem: " in r.stdout and "move it aside" in r.stdout, r.stdout


def test_a_torn_journal_at_the_bound_is_displayed_and_recovered_quickly(tmp_path):
    """An end word 16 MiB past the file is within the bound a machine crash
    can tear (TORN_LIMIT): not refused, so the missing bytes must cost
    nothing per byte (the fuzz reproducer journal_display-end-16MiB-past-file
    took 16-32 s in `logkit display`)."""
    import time
    fifo, path = make_journal(tmp_path)
    try:
        h = read_journal_header(path)
        set_words(path, end=h["end"] + (16 << 20))
        t0 = time.monotonic()
        r = bounded_python(f"""
            import sys, logkit.cli
            sys.exit(logkit.cli.main(["display", {path!r}]))
        """, timeout=30)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"{16 << 20} B  torn bytes (missing from the file, read as zeros)" in r.stdout, r.stdout
        assert took < 5, f"logkit display took {took:.1f} s"
        t0 = time.monotonic()
        drain(fifo, tmp_path / "fam")
        took = time.monotonic() - t0
        assert took < 10, f"the reader's start-up took {took:.1f} s"
    finally:
        fifo.close()
    assert texts(tmp_path / "fam") == [f"record {i:05d}" for i in range(5)]


def test_a_saturated_statistics_word_never_blocks_the_pipe(tmp_path):
    fifo, path = make_journal(tmp_path)
    try:
        set_words(path, stored=(1 << 64) - 1)
        drain(fifo, tmp_path / "fam")
        assert fifo.pending() == 0
    finally:
        fifo.close()
    assert texts(tmp_path / "fam") == [f"record {i:05d}" for i in range(5)]
    assert read_journal_header(path)["stored"] == (1 << 64) - 1      # saturated, not wrapped


# ================================================================ #18: planted links, modes

def test_a_planted_journal_link_is_refused_and_its_target_untouched(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"precious\n")
    fifo = Fifo(tmp_path)
    try:
        os.symlink(victim, fifo.path + ".journal")
        fifo.send([record(0)])
        with pytest.raises(UnsafePath, match=r"p\.fifo\.journal: it is a symbolic link"):
            drain(fifo, tmp_path / "fam")
        assert victim.read_bytes() == b"precious\n"
        os.unlink(fifo.path + ".journal")
        os.symlink(outside / "new", fifo.path + ".journal")    # dangling: must not be created
        with pytest.raises(UnsafePath):
            drain(fifo, tmp_path / "fam")
        assert not (outside / "new").exists()
        assert fifo.pending() > 0
    finally:
        fifo.close()


def test_a_journal_that_is_not_a_regular_file_is_refused(tmp_path):
    fifo = Fifo(tmp_path)
    try:
        os.mkfifo(fifo.path + ".journal")
        with pytest.raises(UnsafePath, match=r"p\.fifo\.journal is a named pipe, not a regular file"):
            drain(fifo, tmp_path / "fam")
    finally:
        fifo.close()


def test_the_servers_status_file_never_writes_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    buf = str(tmp_path / "b.part")
    # The old predictable temporary name, and the status name itself.
    os.symlink(victim, f"{status_path(buf)}.{os.getpid()}.tmp")
    w = BufferWatch(buf, (0.75, 0.9))
    w.save({"log": "x"})
    assert victim.read_text() == "precious\n"
    assert read_status(buf)["log"] == "x"
    assert not os.path.islink(status_path(buf))
    os.unlink(status_path(buf))
    os.symlink(victim, status_path(buf))
    assert read_status(buf) is None                # a link is not followed when read either
    w.save({"log": "y"})                           # replaced (rename), never written through
    assert victim.read_text() == "precious\n" and read_status(buf)["log"] == "y"


def test_a_plainfile_log_path_that_is_a_link_or_a_fifo_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    d = tmp_path / "logs"
    d.mkdir()
    os.symlink(victim, d / "app.log")
    with pytest.raises(UnsafePath, match=r"app\.log: it is a symbolic link"):
        PlainFileStorage("app", path=str(d / "app.log"))
    assert victim.read_text() == "precious\n"
    os.unlink(d / "app.log")
    os.symlink(tmp_path / "created", d / "app.log")             # dangling
    with pytest.raises(UnsafePath):
        PlainFileStorage("app", path=str(d / "app.log"))
    assert not (tmp_path / "created").exists()
    os.unlink(d / "app.log")
    os.mkfifo(d / "app.log")
    with pytest.raises(UnsafePath, match=r"app\.log is a named pipe, not a regular file"):
        PlainFileStorage("app", path=str(d / "app.log"))
    os.unlink(d / "app.log")
    os.symlink(victim, d / "app.log.lock")
    with pytest.raises(UnsafePath, match=r"app\.log\.lock: it is a symbolic link"):
        PlainFileStorage("app", path=str(d / "app.log"))
    assert victim.read_text() == "precious\n"


def test_a_world_writable_directory_without_the_sticky_bit_is_refused(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    with pytest.raises(UnsafePath, match=rf"log directory {d} is writable by every user \(mode 0777\) "
                                         "and has no sticky bit"):
        PlainFileStorage("app", path=str(d / "app.log"))
    fifo = Fifo(d)
    try:
        with pytest.raises(UnsafePath, match=f"log directory {d} is writable by every user"):
            drain(fifo, tmp_path / "fam")
    finally:
        fifo.close()
    os.chmod(d, 0o1777)                                          # like /tmp: accepted
    PlainFileStorage("app", path=str(d / "app.log")).close()
    if os.geteuid() == 0:
        # ... but there, a file someone else created first is not ours to write.
        (d / "theirs.log").write_text("")
        os.chown(d / "theirs.log", 65534, 65534)
        with pytest.raises(UnsafePath, match=r"theirs\.log belongs to uid 65534, in a directory every user "
                                             "can write"):
            PlainFileStorage("theirs", path=str(d / "theirs.log"))


def test_created_files_and_directories_get_their_modes_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        s = PlainFileStorage("app", path=str(tmp_path / "new" / "deeper" / "app.log"), create_directory=True)
        s.write("hello")
        s.close()
        w = BufferWatch(str(tmp_path / "b.part"), (0.75,))
        w.save({})
        fifo = Fifo(tmp_path)
        try:
            drain(fifo, tmp_path / "fam")
        finally:
            fifo.close()
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)       # noqa: E731
    assert mode(tmp_path / "new") == 0o750 and mode(tmp_path / "new" / "deeper") == 0o750
    assert mode(tmp_path / "new" / "deeper" / "app.log") == 0o640
    assert mode(tmp_path / "new" / "deeper" / "app.log.lock") == 0o640
    assert mode(status_path(str(tmp_path / "b.part"))) == 0o640
    assert mode(fifo.path + ".journal") == 0o600


# ================================================================ #13: salvage, key file owner

def test_salvage_of_a_directory_never_writes_through_a_planted_history_link(tmp_path, capsys):
    d = tmp_path / "logs"
    w = logkit.open_writer(str(d), "app", segment_size="16KiB")
    for i in range(400):
        w.write(f"message {i:03d}")
    w.close()
    history = logkit.open_reader(str(d), "app").segment_paths()[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    buf = bytearray(Path(history).read_bytes())
    buf[100] ^= 0x01                       # a damaged identity: salvage would rebuild the header
    victim.write_bytes(buf)
    os.unlink(history)
    os.symlink(victim, history)
    before = digest(victim)
    rc, out, err = run_cli(capsys, "salvage", d)
    assert digest(victim) == before, "salvage wrote through the link"
    assert "symbolic link" in out + err, (out, err)
    rc, out, err = run_cli(capsys, "salvage", history)
    assert rc == 2 and "symbolic link" in err and digest(victim) == before
    os.unlink(history)
    os.mkfifo(history)
    rc, out, err = run_cli(capsys, "salvage", "--force", history)
    assert rc == 2 and "is a named pipe, not a regular file" in err


def test_a_key_file_owned_by_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user (chown)")
    kf = tmp_path / "log.key"
    generate_key_file(kf)
    load_key_file(kf)                                    # ours: accepted
    os.chown(kf, 65534, 65534)
    with pytest.raises(KeyFilePermissions, match=rf"key file {kf} is owned by uid 65534, not by uid 0"):
        load_key_file(kf)


def test_a_key_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    kf = tmp_path / "log.key"
    os.mkfifo(kf, 0o600)
    r = bounded_python(f"""
        from logkit.crypto import KeyFileError, load_key_file
        try:
            load_key_file({str(kf)!r})
        except KeyFileError as e:
            print("REFUSED", e)
    """, timeout=20)
    assert r.stdout.startswith("REFUSED") and "is not a regular file" in r.stdout, (r.stdout, r.stderr)


# ================================================================ #21 and "Disk full"

def test_a_plainfile_on_a_full_disk_is_diskfull_loses_nothing_and_resumes():
    with tmpfs() as fs:
        s = PlainFileStorage("app", path=str(fs / "app.log"), max_size="200KiB")
        for i in range(10):
            s.write(f"before {i}")
        filler = fill(fs)
        with pytest.raises(DiskFull, match=rf"{fs / 'app.log'}.*no space left on the device"):
            for i in range(100_000):
                s.write(f"during {i} " + "x" * 200)
        os.unlink(filler)
        s.write("after")
        s.close()
        got = [m.text for m in PlainFileReader(str(fs / "app.log"))]
        assert got[:10] == [f"before {i}" for i in range(10)] and got[-1] == "after"
        assert not [n for n in os.listdir(fs) if n.endswith(".new") or n.endswith(".tmp")]


def test_creating_a_plainfile_on_a_full_disk_is_diskfull_and_leaves_nothing_behind():
    with tmpfs() as fs:
        filler = fill(fs)
        with pytest.raises(DiskFull, match=rf"{fs}.*no space left on the device"):
            PlainFileStorage("app", path=str(fs / "app.log"))
        assert sorted(os.listdir(fs)) == sorted(["filler"] + [n for n in os.listdir(fs) if n == "app.log.lock"])
        os.unlink(filler)
        s = PlainFileStorage("app", path=str(fs / "app.log"))
        s.write("now it works")
        s.close()
        assert [m.text for m in PlainFileReader(str(fs / "app.log"))] == ["now it works"]


def test_a_plainfile_on_a_read_only_file_system_names_the_directory():
    with tmpfs() as fs:
        d = fs / "logs"
        d.mkdir()
        s = PlainFileStorage("old", path=str(d / "old.log"))
        s.write("written before")
        s.close()
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        with pytest.raises(ReadOnlyFileSystem, match=rf"its directory {d} is on a read-only file system"):
            PlainFileStorage("app", path=str(d / "app.log"))
        with pytest.raises(ReadOnlyFileSystem, match=rf"old\.log: its directory {d} is on a read-only file "
                                                    "system"):
            PlainFileStorage("old", path=str(d / "old.log"))
        assert [m.text for m in PlainFileReader(str(d / "old.log"))] == ["written before"]


def test_the_pipe_journal_on_a_full_disk_is_diskfull_loses_nothing_and_resumes(tmp_path):
    with tmpfs() as fs:
        fifo = Fifo(fs)
        try:
            fifo.send([record(i) for i in range(10)])
            drain(fifo, tmp_path / "fam")                       # the journal exists, on the tmpfs
            fifo.send([record(i) for i in range(10, 160)])    # more than the journal's page holds
            filler = fill(fs)
            with pytest.raises(DiskFull, match=r"p\.fifo\.journal.*no space left on the device"):
                drain(fifo, tmp_path / "fam")
            assert fifo.pending() > 0                           # still in the FIFO
            os.unlink(filler)
            drain(fifo, tmp_path / "fam")
        finally:
            fifo.close()
        assert texts(tmp_path / "fam") == [f"record {i:05d}" for i in range(160)]


def test_a_new_pipe_journal_on_a_full_disk_is_diskfull_not_a_crash(tmp_path):
    with tmpfs() as fs:
        fifo = Fifo(fs)
        try:
            fifo.send([record(0)])
            filler = fill(fs)
            r = bounded_python(f"""
                from logkit.backends.family import FamilyStorage
                from logkit.backends.pipe import drain_pipe
                from logkit.errors import DiskFull
                s = FamilyStorage("p", directory={str(tmp_path / "fam")!r}, family="p", create_directory=True)
                try:
                    drain_pipe({fifo.path!r}, s, spill=False, idle_timeout=0)
                except DiskFull as e:
                    print("FULL", e)
            """)
            assert r.returncode == 0 and r.stdout.startswith("FULL"), (r.returncode, r.stdout, r.stderr[-1500:])
            os.unlink(filler)
            drain(fifo, tmp_path / "fam")
        finally:
            fifo.close()
        assert texts(tmp_path / "fam") == ["record 00000"]


def test_the_server_waits_out_a_full_disk_under_its_pipe_journal_and_resumes(tmp_path):
    import threading

    from logkit.server import Server
    with tmpfs() as fs:
        fifo = Fifo(fs)
        cfg = tmp_path / "logkit.toml"
        cfg.write_text(f'[log.p]\nstorage = "family"\ndirectory = "{tmp_path / "fam"}"\nfamily = "p"\n'
                       f'create_directory = true\ntransport = "pipe"\nfifo = "{fifo.path}"\n')
        said: list[str] = []
        runs: list = []

        def start():
            """A server in a thread: (stop event, thread, result list)."""
            stop, result = threading.Event(), []
            srv = Server(str(cfg), interval=0.05, say=said.append)

            def serve():
                try:
                    result.append(srv.serve(stop))
                except BaseException as e:
                    result.append(e)
            t = threading.Thread(target=serve)
            t.start()
            runs.append((stop, t, result))
            return result

        def halt():
            stop, t, result = runs[-1]
            stop.set()
            t.join(TIMEOUT)
            assert not t.is_alive() and not isinstance(result[0], BaseException), result

        def count():
            try:
                return len(texts(tmp_path / "fam"))
            except LogkitError:
                return 0
        try:
            start()
            fifo.send([record(i) for i in range(10)])
            wait_until(lambda: count() == 10, "the first 10 records")
            # The 200 records wait in the FIFO while no server runs, so the next
            # one peeks them in one batch, more than the journal's page holds
            # (a running server could take them a few at a time, each batch
            # fitting the page it gives back, and never meet the full disk).
            halt()
            filler = fill(fs)
            fifo.send([record(i) for i in range(10, 210)])
            result = start()
            wait_until(lambda: any("no space left on the device" in m for m in said) or result,
                       "the server to say the disk is full")
            assert not result, f"the server stopped: {result}"
            os.unlink(filler)
            wait_until(lambda: count() == 210, "the records sent while the disk was full")
        finally:
            if runs:
                halt()
            fifo.close()
        assert texts(tmp_path / "fam") == [f"record {i:05d}" for i in range(210)]


def test_the_servers_status_on_a_full_disk_is_diskfull_keeps_the_old_one_and_resumes():
    with tmpfs() as fs:
        buf = str(fs / "b.part")
        w = BufferWatch(buf, (0.75,))
        w.save({"round": 1})
        filler = fill(fs)
        with pytest.raises(DiskFull, match=r"b\.part\.status.*no space left on the device"):
            w.save({"round": 2, "padding": "x" * 8192})
        assert read_status(buf)["round"] == 1
        assert sorted(os.listdir(fs)) == ["b.part.status", "filler"]
        os.unlink(filler)
        w.save({"round": 3})
        assert read_status(buf)["round"] == 3


# ================================================================ a read-only user

def test_a_read_only_user_reads_a_log_and_changes_nothing():
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the user nobody in a child")
    d = Path(tempfile.mkdtemp(prefix="logkit-ro-"))
    try:
        os.chmod(d, 0o755)
        s = PlainFileStorage("app", path=str(d / "app.log"), mode=0o644)
        for i in range(20):
            s.write(f"line {i}")
        s.close()
        fifo = Fifo(d)
        try:
            fifo.send([record(i) for i in range(3)])
            drain(fifo, d / "fam")
        finally:
            fifo.close()
        os.chmod(fifo.path + ".journal", 0o644)
        BufferWatch(str(d / "b.part"), (0.75,)).save({"x": 1})
        os.chmod(status_path(str(d / "b.part")), 0o644)         # 0640 by default: let others read it

        def snapshot():
            out = {}
            for p in sorted(d.rglob("*")):
                st = os.lstat(p)
                out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns,
                               digest(p) if stat.S_ISREG(st.st_mode) else None)
            return out
        before = snapshot()
        # The child cannot read this interpreter's library (it lives under
        # /root): import what it will need while still root.
        import _strptime  # noqa: F401
        import logkit.cli.display_cmd  # noqa: F401
        import logkit.backends.pipejournal  # noqa: F401
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                import traceback
                os.close(r)
                os.setgid(65534)
                os.setgroups([])
                os.setuid(65534)
                got = [m.text for m in PlainFileReader(str(d / "app.log"))]
                rc = logkit.cli.main(["display", fifo.path + ".journal"])
                status = read_status(str(d / "b.part"))
                try:
                    PlainFileStorage("app", path=str(d / "app.log"))
                    wrote = "opened for writing"
                except LogkitError as e:
                    wrote = str(e)
                os.write(w, json.dumps([got, rc, status["x"], wrote]).encode())
            except BaseException:
                os.write(w, json.dumps(["child failed", traceback.format_exc()]).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            answer = json.loads(f.read())
        assert answer[0] != "child failed", answer[1]
        got, rc, x, wrote = answer
        os.waitpid(pid, 0)
        assert got == [f"line {i}" for i in range(20)] and rc == 0 and x == 1
        assert "permission denied" in wrote.lower() or "Permission denied" in wrote, wrote
        assert snapshot() == before
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.mark.parametrize("command", [["server", "--once"], ["drain", "--pipe", "--once", "p"]])
def test_the_cli_reports_an_implausible_journal_at_once_without_a_traceback(tmp_path, command):
    fifo, path = make_journal(tmp_path)
    fifo.close()
    set_words(path, end=1 << 40, batch=1 << 40)
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.p]\nstorage = "family"\ndirectory = "{tmp_path / "fam"}"\nfamily = "p"\n'
                   f'create_directory = true\ntransport = "pipe"\nfifo = "{fifo.path}"\n')
    r = bounded_python(f"""
        import sys, logkit.cli
        sys.exit(logkit.cli.main({[*command, "-c", str(cfg)]!r}))
    """)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.returncode != 0
    assert f"pipe journal {path} is damaged: word end at offset 24 is {1 << 40}" in r.stderr, r.stderr


# ================================================================ logkit.safefs itself

def test_safefs_refuses_names_that_leave_the_directory_and_makes_unguessable_temporaries(tmp_path):
    dfd = safefs.open_directory(str(tmp_path))
    try:
        for bad in ("../escape", "a/b", "..", ".", ""):
            with pytest.raises(UnsafePath, match="is not a plain file name inside the log directory"):
                safefs.open_in(dfd, bad, os.O_RDONLY)
        names = set()
        for _ in range(3):
            fd, name = safefs.create_temporary(dfd, "x.status", 0o640)
            os.close(fd)
            assert name.startswith(f".x.status.{os.getpid()}.") and name.endswith(".tmp")
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640
            names.add(name)
        assert len(names) == 3
        made: list = []
        fd = safefs.open_in(dfd, "new", os.O_RDWR | os.O_CREAT, 0o600, created=made)
        os.close(fd)
        fd = safefs.open_in(dfd, "new", os.O_RDWR | os.O_CREAT, 0o644, created=made)   # exists: mode kept
        os.close(fd)
        assert made == [True] and stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o600
    finally:
        os.close(dfd)


def test_safefs_errors_name_the_file_and_say_what_is_wrong(tmp_path):
    p = str(tmp_path / "f")
    full = safefs.translate_error(OSError(errno.ENOSPC, "x"), p, "append to")
    assert isinstance(full, DiskFull) and isinstance(full, OSError) and full.errno == errno.ENOSPC
    assert str(full) == f"cannot append to {p}: no space left on the device; nothing was lost, retry when " \
                        "space returns"
    ro = safefs.translate_error(OSError(errno.EROFS, "x"), p, "create")
    assert isinstance(ro, ReadOnlyFileSystem) and str(ro) == \
        f"cannot create {p}: its directory {tmp_path} is on a read-only file system"
    with pytest.raises(UnsafePath, match=f"{tmp_path / 'file'} is not a directory"):
        (tmp_path / "file").write_text("")
        safefs.check_directory(str(tmp_path / "file"))
