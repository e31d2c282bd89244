"""One validation for `logkit config check` and logkit.Handler (issue #13,
defect 20): every config the Handler refuses, config check refuses too, with
the same problem naming the file, the table and the key; and the Handler's
error is that ConfigError, not a bare backend error."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import logkit
from logkit import config as lkconfig
from logkit.crypto import generate_key_file


def cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "logkit", *args], capture_output=True, text=True,
                          timeout=timeout)


def toml_value(v):
    return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def write_config(path, table):
    lines = ["[log.app]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def family(d, **kw):
    return {"storage": "family", "directory": str(d), **kw}


def partition(d, path, **kw):
    return {"storage": "partition", "path": str(path), "directory": str(d), **kw}


def pipe(d, fifo):
    return {"storage": "family", "directory": str(d), "transport": "pipe", "fifo": str(fifo)}


def plainfile(path):
    return {"storage": "plainfile", "path": str(path)}


def _five_byte_file(d):
    (d / "app.part").write_bytes(b"hello")
    return partition(d, d / "app.part")


def _regular_file_fifo(d):
    (d / "app.fifo").write_text("not a fifo")
    return pipe(d, d / "app.fifo")


def _loose_key(d):
    generate_key_file(str(d / "app.key"))
    os.chmod(d / "app.key", 0o644)
    return family(d, key_file=str(d / "app.key"))


# (case, make(tmp dir) -> table, the key named, words the message holds)
CASES = [
    ("segment_size 4 KiB", lambda d: family(d, segment_size="4KiB"), "segment_size", "below the minimum"),
    ("segment_size 10001", lambda d: family(d, segment_size=10001), "segment_size", "multiple of 8"),
    ("segment_size 64 GiB", lambda d: family(d, segment_size="64GiB"), "segment_size", "above the maximum"),
    ("family ../../etc/passwd", lambda d: family(d, family="../../etc/passwd"), "family", "'../../etc/passwd'"),
    ("family of 64 characters", lambda d: family(d, family="a" * 64), "family", "1-63 letters"),
    ("partition path a 5-byte file", _five_byte_file, "path", "not a partition file"),
    ("partition path in a missing directory", lambda d: partition(d, d / "missing" / "app.part"), "path",
     "does not exist"),
    ("fifo path a regular file", _regular_file_fifo, "fifo", "not a named pipe"),
    ("fifo path in a missing directory", lambda d: pipe(d, d / "missing" / "app.fifo"), "fifo", "does not exist"),
    ("missing key_file", lambda d: family(d, key_file=str(d / "no.key")), "key_file", "does not exist"),
    ("key_file mode 0644", _loose_key, "key_file", "0644"),
]


def check_both_refuse(cfg_file, key, words):
    """config check exits 1 naming file, table and key; the Handler raises
    ConfigError with exactly the same problems."""
    r = cli("config", "check", cfg_file)
    assert r.returncode == 1, f"config check said valid:\n{r.stdout}{r.stderr}"
    printed = [line[len("error: "):] for line in r.stderr.splitlines() if line.startswith("error: ")]
    head = f"{cfg_file} [log.app]: {key}: "
    assert any(p.startswith(head) and words in p for p in printed), (head, words, r.stderr)
    with pytest.raises(lkconfig.ConfigError) as e:
        logkit.Handler(config=cfg_file)
    assert [str(p) for p in e.value.problems] == printed
    return printed


@pytest.mark.parametrize("case,make,key,words", CASES, ids=[c[0] for c in CASES])
def test_config_check_and_the_handler_refuse_alike_naming_file_table_and_key(case, make, key, words, tmp_path):
    d = tmp_path / "logs"
    d.mkdir(mode=0o750)
    cfg = write_config(tmp_path / "logkit.toml", make(d))
    check_both_refuse(cfg, key, words)


def test_the_same_options_given_in_code_give_the_same_problem(tmp_path):
    with pytest.raises(lkconfig.ConfigError) as e:
        logkit.Handler(storage="family", directory=str(tmp_path), segment_size="4KiB")
    [p] = e.value.problems
    assert (p.file, p.table, p.key) == (None, "log.default", "segment_size")
    assert str(p) == "<options> [log.default]: segment_size: 4096 bytes is below the minimum segment size of 8192 bytes"


def test_a_valid_config_of_every_backend_passes_both(tmp_path):
    d = tmp_path / "logs"
    d.mkdir(mode=0o750)
    generate_key_file(str(d / "app.key"))
    for table in (family(d, segment_size="64KiB", key_file=str(d / "app.key")),
                  partition(d, d / "app.part", size="64KiB", family="drained"),
                  {**pipe(d, d / "app.fifo"), "family": "piped"},
                  plainfile(d / "app.log")):
        cfg = write_config(tmp_path / "logkit.toml", table)
        r = cli("config", "check", cfg)
        assert r.returncode == 0, r.stderr
        logkit.Handler(config=cfg).close()


def test_reading_through_the_config_skips_only_the_writers_checks(tmp_path):
    # Only writers are refused a read-only file system: load() (readers, print)
    # does not check for writing.
    d = tmp_path / "logs"
    d.mkdir(mode=0o750)
    cfg = write_config(tmp_path / "logkit.toml", family(d, family="../x"))
    with pytest.raises(lkconfig.ConfigError):
        lkconfig.load(cfg)                 # a bad name is bad for readers too
    cfg = write_config(tmp_path / "logkit.toml", family(d))
    assert lkconfig.load(cfg).get("app").storage_options["family"] == "app"
    # A fifo in a directory made only when the service starts (/run/app):
    # writers are refused, a reader of the storage is not.
    cfg = write_config(tmp_path / "logkit.toml", pipe(d, tmp_path / "run" / "app.fifo"))
    assert lkconfig.load(cfg).get("app").transport == "pipe"
    with pytest.raises(lkconfig.ConfigError, match="does not exist"):
        lkconfig.load(cfg, writing=True)


# ---------------------------------------------------------------- read-only file systems

@pytest.fixture
def read_only_dir(tmp_path):
    """A tmpfs, prepared writable, then remounted read-only; yields its path."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0750", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {r.stderr.strip()}")
    try:
        (mnt / "logs").mkdir(mode=0o750)
        yield mnt / "logs"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _remount_ro(path):
    mnt = path.parent
    r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


RO_CASES = [
    ("family directory", lambda d: family(d), "directory"),
    ("partition path", lambda d: partition(d, d / "app.part"), "path"),
    ("plainfile path", lambda d: plainfile(d / "app.log"), "path"),
    ("fifo path", lambda d: pipe(d.parent.parent, d / "app.fifo"), "fifo"),
]


@pytest.mark.parametrize("case,make,key", RO_CASES, ids=[c[0] for c in RO_CASES])
def test_paths_on_a_read_only_file_system_are_refused_by_both(case, make, key, read_only_dir, tmp_path):
    _remount_ro(read_only_dir)
    cfg = write_config(tmp_path / "logkit.toml", make(read_only_dir))
    check_both_refuse(cfg, key, "read-only file system")
