"""The config file: search order, the [log.NAME] shape, every validation
error (naming file, table and key, with the closest valid name), dictConfig
and fileConfig, and `logkit config check`."""
from __future__ import annotations

import logging
import logging.config
import os
import subprocess
import sys
import textwrap

import pytest

import logkit
from logkit import config as lkconfig
from logkit.config import ConfigError


def write_config(path, text):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def problems_of(path):
    with pytest.raises(ConfigError) as e:
        lkconfig.load(path)
    return [str(p) for p in e.value.problems]


@pytest.fixture
def logdir(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    return d


def test_a_valid_file_resolves_every_option_with_defaults(tmp_path, logdir):
    f = write_config(tmp_path / "logkit.toml", f"""
        [log.app]
        storage = "family"
        transport = "shm"
        directory = "{logdir}"
        family = "app"
        segment_size = "8MiB"
        retain_count = 10
        mode = "0600"
    """)
    lc = lkconfig.load(f).get("app")
    assert (lc.storage, lc.transport) == ("family", "shm")
    o = lc.storage_options
    assert (o["directory"], o["family"], o["segment_size"], o["retain_count"], o["mode"]) == \
        (str(logdir), "app", 8 << 20, 10, 0o600)
    assert o["sync"] == "close" and o["wait_timeout"] == 30.0      # defaults filled in


def test_relative_paths_are_taken_from_the_config_files_directory(tmp_path):
    (tmp_path / "rel").mkdir()
    f = write_config(tmp_path / "logkit.toml", """
        [log.app]
        directory = "rel"
    """)
    assert lkconfig.load(f).get("app").storage_options["directory"] == str(tmp_path / "rel")


def test_backend_options_in_their_own_tables(tmp_path, logdir):
    f = write_config(tmp_path / "logkit.toml", f"""
        [log.app.storage]
        backend = "family"
        directory = "{logdir}"
        segment_size = 65536
        [log.app.transport]
        backend = "shm"
    """)
    lc = lkconfig.load(f).get("app")
    assert lc.storage_options["segment_size"] == 65536 and lc.storage_options["family"] == "app"


@pytest.mark.parametrize("body, expected", [
    ('segmnt_size = "8MiB"',
     "[log.app]: segmnt_size: unknown key (did you mean 'segment_size'?); valid keys here: "
     "create_directory, directory, family, key_file, mode, prepare_at, retain_age, retain_count, retain_size, "
     "rotation_timeout, segment_size, storage, sync, transport, wait_timeout"),
    ('segment_size = "8MB?"',
     "[log.app]: segment_size: '8MB?' is not a size; use bytes or a number with KiB, MiB or GiB (e.g. '8MiB')"),
    ("segment_size = true",
     "[log.app]: segment_size: expected a number of bytes or a string like '8MiB', got True"),
    ("family = 3", "[log.app]: family: expected a string, got 3"),
    ('retain_count = "ten"', "[log.app]: retain_count: expected an integer, got 'ten'"),
    ('retain_age = "forever"',
     "[log.app]: retain_age: 'forever' is not a duration (use seconds or e.g. '15m', '12h', '7d')"),
    ('mode = "rw-r-----"', "[log.app]: mode: 'rw-r-----' is not octal digits (e.g. '0640')"),
    ('sync = "alwys"', "[log.app]: sync: 'alwys' is not one of 'never', 'close', 'always' (did you mean 'always'?)"),
    ('storage = "famly"',
     "[log.app]: storage: no storage backend named 'famly' (did you mean 'family'?); registered: "),
    ('transport = "shmm"',
     "[log.app]: transport: no transport backend named 'shmm' (did you mean 'shm'?); registered: "),
    ('key_file = 7', "[log.app]: key_file: expected a path (string), got 7"),
])
def test_each_bad_value_is_named_with_file_table_and_key(tmp_path, logdir, body, expected):
    f = write_config(tmp_path / "logkit.toml", f"""
        [log.app]
        directory = "{logdir}"
        {body}
    """)
    (problem,) = problems_of(f)
    assert problem.startswith(f"{f} {expected}"), problem


def test_a_missing_directory_is_an_error_unless_created(tmp_path):
    missing = tmp_path / "nope"
    f = write_config(tmp_path / "logkit.toml", f"""
        [log.app]
        directory = "{missing}"
    """)
    assert problems_of(f) == [f"{f} [log.app]: directory: directory {missing} does not exist "
                              "(create it, or set create_directory = true)"]
    f2 = write_config(tmp_path / "ok.toml", f"""
        [log.app]
        directory = "{missing}"
        create_directory = true
    """)
    h = logkit.Handler(config=f2)
    h.close()
    assert missing.is_dir()


def test_a_missing_required_key_says_which_backend_needs_it(tmp_path):
    f = write_config(tmp_path / "logkit.toml", """
        [log.app]
        storage = "family"
    """)
    assert problems_of(f) == [f"{f} [log.app]: directory: missing: storage backend 'family' needs "
                              "'directory' (the family's directory)"]


def test_every_problem_is_reported_at_once(tmp_path, logdir):
    f = write_config(tmp_path / "logkit.toml", f"""
        colour = "red"
        [log.a]
        directory = "{logdir}"
        segment_size = "big"
        [log.b]
        directory = "{logdir}"
        sink = 1
    """)
    probs = problems_of(f)
    assert len(probs) == 3
    assert probs[0] == f"{f}: colour: unknown top-level key; a config file holds [log.NAME] tables"
    assert probs[1].startswith(f"{f} [log.a]: segment_size:")
    assert probs[2].startswith(f"{f} [log.b]: sink: unknown key")


def test_toml_syntax_errors_name_the_file_and_line(tmp_path):
    f = write_config(tmp_path / "logkit.toml", "[log.app\ndirectory = 1\n")
    (p,) = problems_of(f)
    assert p.startswith(f"{f}: not valid TOML: ") and "line 1" in p


def test_choosing_a_log(tmp_path, logdir):
    f = write_config(tmp_path / "logkit.toml", f"""
        [log.app]
        directory = "{logdir}"
        [log.audit]
        directory = "{logdir}"
    """)
    cfg = lkconfig.load(f)
    with pytest.raises(ConfigError, match=r"defines 2 logs \(app, audit\): say which one"):
        cfg.get(None)
    with pytest.raises(ConfigError, match=r"\[log.aud\]: no such log \(did you mean 'audit'\?\)"):
        cfg.get("aud")
    assert cfg.get("audit").storage_options["family"] == "audit"


def test_search_order_env_then_cwd_then_user_config(tmp_path, logdir, monkeypatch):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    (home / ".config" / "logkit").mkdir(parents=True)
    cwd.mkdir()
    user = write_config(home / ".config" / "logkit" / "logkit.toml", f'[log.user]\ndirectory = "{logdir}"\n')
    here = write_config(cwd / "logkit.toml", f'[log.here]\ndirectory = "{logdir}"\n')
    env = write_config(tmp_path / "env.toml", f'[log.env]\ndirectory = "{logdir}"\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("LOGKIT_CONFIG", env)
    assert lkconfig.find_config() == env
    monkeypatch.delenv("LOGKIT_CONFIG")
    assert lkconfig.find_config() == here
    os.unlink(here)
    assert lkconfig.find_config() == user
    assert lkconfig.search_path()[-1] == "/etc/logkit/logkit.toml"
    monkeypatch.setenv("LOGKIT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="LOGKIT_CONFIG names .*missing.toml, which does not exist"):
        lkconfig.find_config()


def test_handler_from_options_reports_bad_options_like_a_file(logdir):
    with pytest.raises(ConfigError) as e:
        logkit.Handler(directory=str(logdir), segment_sise="1MiB")
    assert str(e.value).startswith("<options> [log.default]: segment_sise: unknown key (did you mean 'segment_size'?)")


def test_handler_options_lay_over_the_config_table(tmp_path, logdir):
    f = write_config(tmp_path / "logkit.toml", f'[log.app]\ndirectory = "{logdir}"\n')
    h = logkit.Handler("app", f, family="other", segment_size="64KiB")
    try:
        assert h.log_config.storage_options["family"] == "other"
        assert h.storage.writer.segment.size == 65536
    finally:
        h.close()


def _records(directory, family):
    return [(m.severity, m.text) for m in logkit.open_reader(str(directory), family)]


def test_dictconfig(tmp_path, logdir):
    f = write_config(tmp_path / "logkit.toml", f'[log.app]\ndirectory = "{logdir}"\n')
    logging.config.dictConfig({
        "version": 1,
        "formatters": {"plain": {"format": "%(name)s %(message)s"}},
        "handlers": {"lk": {"class": "logkit.Handler", "config": f, "log": "app",
                            "level": "INFO", "formatter": "plain"}},
        "loggers": {"dc": {"handlers": ["lk"], "level": "DEBUG", "propagate": False}},
    })
    lg = logging.getLogger("dc")
    lg.debug("below the handler's level")
    lg.warning("through dictConfig %d", 1)
    lg.handlers[0].close()
    lg.handlers.clear()
    assert _records(logdir, "app") == [(30, "dc through dictConfig 1")]


def test_dictconfig_with_a_bad_config_names_the_problem(tmp_path, logdir):
    f = write_config(tmp_path / "logkit.toml", f'[log.app]\ndirectory = "{logdir}"\nsegment_size = "8MB?"\n')
    with pytest.raises(ValueError, match="Unable to configure handler 'lk'") as e:
        logging.config.dictConfig({"version": 1, "handlers": {"lk": {"class": "logkit.Handler", "config": f}}})
    assert isinstance(e.value.__cause__, ConfigError)
    assert "[log.app]: segment_size: '8MB?' is not a size" in str(e.value.__cause__)


def test_fileconfig(tmp_path, logdir):
    f = write_config(tmp_path / "logkit.toml", f'[log.app]\ndirectory = "{logdir}"\n')
    ini = tmp_path / "logging.ini"
    ini.write_text(textwrap.dedent(f"""
        [loggers]
        keys=root,fc
        [handlers]
        keys=lk
        [formatters]
        keys=
        [logger_root]
        handlers=
        [logger_fc]
        handlers=lk
        level=INFO
        qualname=fc
        propagate=0
        [handler_lk]
        class=logkit.Handler
        level=NOTSET
        args=('app', {f!r})
    """))
    logging.config.fileConfig(str(ini), disable_existing_loggers=False)
    lg = logging.getLogger("fc")
    lg.info("through fileConfig")
    lg.handlers[0].close()
    lg.handlers.clear()
    assert _records(logdir, "app") == [(20, "through fileConfig")]


def _cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "logkit", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=60)


def test_config_check_prints_the_resolved_configuration(tmp_path, logdir):
    f = write_config(tmp_path / "logkit.toml", f'[log.app]\ndirectory = "{logdir}"\nsegment_size = "1MiB"\n')
    r = _cli("config", "check", f)
    assert r.returncode == 0, r.stderr
    assert f"# {f}: 1 log, valid" in r.stdout
    assert '[log.app.storage]\nbackend = "family"\n' in r.stdout and 'segment_size = "1MiB"' in r.stdout
    assert "mode = 0o640" in r.stdout and '[log.app.transport]\nbackend = "shm"' in r.stdout
    r = _cli("config", "check", cwd=tmp_path, env={"LOGKIT_CONFIG": ""})
    assert r.returncode == 0 and f"# {f}: 1 log, valid" in r.stdout     # found as ./logkit.toml


def test_config_check_lists_every_error_and_exits_1(tmp_path, logdir):
    f = write_config(tmp_path / "bad.toml", f'[log.app]\ndirectory = "{logdir}"\nsegment_size = "8MB?"\nfamly = "x"\n')
    r = _cli("config", "check", f)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0] == f"error: {f} [log.app]: famly: unknown key (did you mean 'family'?); valid keys here: " \
        "create_directory, directory, family, key_file, mode, prepare_at, retain_age, retain_count, retain_size, " \
        "rotation_timeout, segment_size, storage, sync, transport, wait_timeout"
    assert lines[1].startswith(f"error: {f} [log.app]: segment_size: '8MB?' is not a size")
    assert lines[2] == "2 problems found"
    r = _cli("config", "check", str(tmp_path / "absent.toml"))
    assert r.returncode == 1 and "absent.toml: config file does not exist" in r.stderr
