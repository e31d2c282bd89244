"""The `logkit` command: --help everywhere, `drain` of partitions and of a
pipe's spill through the CLI, and its errors and exit codes."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import logkit


def cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "logkit", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args", [[], ["config"], ["config", "check"], ["backends"], ["drain"], ["server"], ["stats"]])
def test_every_command_has_help(args):
    r = cli(*args, "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: logkit"), r.stderr
    assert len(r.stdout.splitlines()) > 4


def test_no_command_is_a_usage_error():
    r = cli()
    assert r.returncode == 2 and "usage: logkit" in r.stderr


def _log(handler, name, texts):
    lg = logging.getLogger(name)
    lg.handlers[:] = [handler]
    lg.propagate = False
    lg.setLevel(logging.INFO)
    for t in texts:
        lg.info(t)
    handler.close()


def test_drain_copies_a_partition_into_its_family_once(tmp_path):
    cfg = tmp_path / "logkit.toml"
    fam = tmp_path / "family"
    cfg.write_text(f'[log.buf]\nstorage = "partition"\npath = "{tmp_path / "buf.part"}"\nsize = "64KiB"\n'
                   f'directory = "{fam}"\nfamily = "buf"\n')
    texts = [f"buffered {i}" for i in range(300)]
    _log(logkit.Handler("buf", str(cfg)), "drain-part", texts)
    r = cli("drain", "--all", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("buf: 300 messages drained into ")
    assert [m.text for m in logkit.open_reader(str(fam), "buf")] == texts
    r = cli("drain", "--all", "-c", str(cfg), "buf")
    assert r.returncode == 0 and r.stdout.startswith("buf: 0 messages drained"), r.stdout + r.stderr
    assert logkit.open_reader(str(fam), "buf").count() == 300


def test_drain_pipe_once_collects_what_went_to_the_spill(tmp_path):
    cfg = tmp_path / "logkit.toml"
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg.write_text(f'[log.p]\nstorage = "family"\ndirectory = "{logs}"\ntransport = "pipe"\n'
                   f'fifo = "{tmp_path / "p.fifo"}"\n')
    texts = [f"piped {i}" for i in range(50)]
    _log(logkit.Handler("p", str(cfg)), "drain-pipe", texts)    # no reader: all spilled
    r = cli("drain", "--pipe", "--once", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("p: 50 records from ")
    assert [m.text for m in logkit.open_reader(str(logs), "p")] == texts


def test_drain_errors_name_the_problem(tmp_path):
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.app]\ndirectory = "{tmp_path}"\n')
    r = cli("drain", "-c", str(cfg), "nosuch")
    assert r.returncode == 2 and "logkit drain: " in r.stderr and "[log.nosuch]: no such log" in r.stderr
    r = cli("drain", "-c", str(cfg), "app")
    assert r.returncode == 2 and "log app: storage is 'family', not 'partition'" in r.stderr
    r = cli("drain", "--pipe", "-c", str(cfg))
    assert r.returncode == 2 and "no log in the configuration uses transport 'pipe'" in r.stderr
    r = cli("drain", "-c", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "missing.toml: config file does not exist" in r.stderr


def test_every_built_in_option_is_documented():
    """Each option of each built-in backend appears, as `name`, in its guide."""
    from logkit import registry
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
    guides = {"family": "backends.md", "shm": "backends.md", "partition": "backend-partition.md",
              "plainfile": "backend-plainfile.md", "pipe": "backend-pipe.md"}
    for kind in ("storage", "transport"):
        for b in registry.available(kind):
            if b.name not in guides:
                continue
            text = open(os.path.join(root, guides[b.name]), encoding="utf-8").read()
            for opt in registry.load(kind, b.name).options:
                assert f"`{opt.name}`" in text, f"docs/{guides[b.name]} does not document {b.name}'s {opt.name}"
