"""The backend registry: built-ins found by entry point, `logkit backends`,
clear errors for unknown or broken backends, and a third-party package
(tests/thirdparty/logkit-sqlite) installed for real and selected by name."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from procs import install_offline

from logkit import registry
from logkit.registry import BackendNotFound, StorageBackend, TransportBackend

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "thirdparty", "logkit-sqlite")


def test_every_built_in_backend_is_registered_and_loads():
    assert {b.name for b in registry.available("storage")} >= {"family", "partition", "plainfile"}
    assert {b.name for b in registry.available("transport")} >= {"shm", "pipe"}
    for kind, names in (("storage", ("family", "partition", "plainfile")), ("transport", ("shm", "pipe"))):
        base = StorageBackend if kind == "storage" else TransportBackend
        for name in names:
            cls = registry.load(kind, name)
            assert issubclass(cls, base) and cls.name == name
            assert all(o.kind in ("str", "int", "float", "bool", "size", "duration", "mode", "path", "dir", "choice")
                       for o in cls.options), cls


def test_unknown_backend_names_the_closest_and_lists_the_registered():
    with pytest.raises(BackendNotFound, match=r"no storage backend named 'familly' \(did you mean 'family'\?\); "
                                              r"registered: .*family.*partition.*plainfile"):
        registry.load("storage", "familly")
    with pytest.raises(ValueError, match="backend kind must be 'storage' or 'transport'"):
        registry.load("sink", "x")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "logkit", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_logkit_backends_lists_each_backend_and_its_package():
    r = _cli("backends", "-v")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for name, value in (("family", "logkit.backends.family:FamilyStorage"),
                        ("partition", "logkit.backends.partition:PartitionStorage"),
                        ("plainfile", "logkit.backends.plainfile:PlainFileStorage"),
                        ("shm", "logkit.backends.shm:ShmTransport"),
                        ("pipe", "logkit.backends.pipe:PipeTransport")):
        line = next(l for l in out.splitlines() if l.split()[:1] == [name])
        assert value in line and line.rstrip().endswith("from logkit"), line
    assert "segment_size" in out and "required" in out


@pytest.fixture(scope="module")
def installed_thirdparty(tmp_path_factory):
    """pip-install the tiny third-party package into a scratch directory (no
    network: no dependencies, no build isolation) and return a PYTHONPATH."""
    return install_offline(tmp_path_factory, PACKAGE, "logkit_sqlite")


def test_a_third_party_backend_is_listed_once_installed(installed_thirdparty):
    r = _cli("backends", env={"PYTHONPATH": installed_thirdparty})
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.split()[:1] == ["sqlite"])
    assert "logkit_sqlite:SqliteStorage" in line and line.rstrip().endswith("from logkit-sqlite")
    assert "sqlite" not in {b.name for b in registry.available("storage")}   # this process: not installed


def test_a_third_party_backend_is_selected_from_the_config_with_no_change_to_logkit(installed_thirdparty, tmp_path):
    cfg = tmp_path / "logkit.toml"
    cfg.write_text(f'[log.app]\nstorage = "sqlite"\npath = "{tmp_path / "app.db"}"\n')
    script = textwrap.dedent(f"""
        import logging, logkit
        h = logkit.Handler("app", {str(cfg)!r})
        lg = logging.getLogger("tp"); lg.addHandler(h); lg.setLevel(logging.INFO); lg.propagate = False
        lg.warning("stored by %s", "sqlite")
        h.close()
        r = h.log_config.open_storage().reader()
        print([(m.severity, m.text) for m in r])
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": installed_thirdparty})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[(30, 'stored by sqlite')]"
    r = _cli("config", "check", str(cfg), env={"PYTHONPATH": installed_thirdparty})
    assert r.returncode == 0 and '[log.app.storage]\nbackend = "sqlite"' in r.stdout, r.stderr
    r = _cli("config", "check", str(cfg))                       # without the package: a clear error
    assert r.returncode == 1 and "no storage backend named 'sqlite'" in r.stderr


def test_the_conformance_suite_passes_on_the_third_party_backend(installed_thirdparty, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.join(PACKAGE, "test_sqlite_conformance.py"), "--rootdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                       env={**os.environ, "PYTHONPATH": installed_thirdparty})
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" in r.stdout and "failed" not in r.stdout
