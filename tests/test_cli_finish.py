"""The command line, finished (issue 15, section 4): negative relative
times without '=', the errors for a log name that names nothing, config log
names for retain and migrate, a partition log read with its family, stats
for the whole log, repeats as '=' only on a terminal, config check in TOML,
shell completion and the man page made from the argument definitions."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

import logkit
from logkit.cli import build_parser, join_negative_values

from test_cli_print import _run_on_terminal  # noqa: E402


def cli(*args, cwd=None, env=None, timeout=60):
    e = dict(os.environ)
    e.pop("LOGKIT_CONFIG", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "logkit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=e)


def _family(d, texts, family="app", segment_size="64KiB"):
    w = logkit.open_writer(str(d), family=family, segment_size=segment_size)
    seqs = [w.write(t) for t in texts]
    w.close()
    return seqs


# ---------------------------------------------------------------- --from -2h

def test_from_minus_two_hours_without_equals_sign_selects_like_the_joined_form(tmp_path):
    _family(tmp_path, ["old", "new"])
    joined = cli("print", "--no-header", "--from=-2h", str(tmp_path))
    spaced = cli("print", "--no-header", "--from", "-2h", str(tmp_path))
    assert spaced.returncode == 0, spaced.stderr
    assert spaced.stdout == joined.stdout and "new" in spaced.stdout
    last = cli("print", "--no-header", "--last", "-1h", "--to", "now", str(tmp_path))
    assert last.returncode == 0 and "old" in last.stdout, last.stderr


def test_negative_values_of_list_options_are_joined_one_by_one():
    p = build_parser("print")
    got = join_negative_values(p, ["print", "--severity", "-5:0", "10", "--from", "-30m", "LOG"])
    assert got == ["print", "--severity=-5:0", "--severity=10", "--from=-30m", "LOG"]
    args = p.parse_args(got)
    assert args.severity == ["-5:0", "10"] and args.from_ == "-30m" and args.logs == ["LOG"]
    # Positive values, and what follows `--`, are left alone.
    assert join_negative_values(p, ["print", "--from", "now-2h", "--", "-x"]) == \
        ["print", "--from", "now-2h", "--", "-x"]


# ---------------------------------------------------------------- completion and man page

def test_completion_bash_is_a_script_that_completes_subcommands_and_choices(tmp_path):
    r = cli("completion", "bash")
    assert r.returncode == 0, r.stderr
    assert "complete -o default -F _logkit logkit" in r.stdout
    for name in ("print", "monitor", "stats", "retain", "completion", "man"):
        assert re.search(rf"^\s+{name}\)$", r.stdout, re.M), f"no case for {name}"
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash to source the script in")
    script = tmp_path / "logkit.bash"
    script.write_text(r.stdout)
    driver = (f'source {script}\n'
              'comp() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _logkit; '
              'echo "${COMPREPLY[*]}"; }\n'
              'comp logkit pri\n'
              'comp logkit print -o ""\n'
              'comp logkit print --abs\n'
              'comp logkit config ""\n')
    out = subprocess.run([bash, "--norc", "-c", driver], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == ["print", "text json short", "--absolute-pathname", "check -h --help"], lines


def test_completion_zsh_is_well_formed_and_names_every_option():
    r = cli("completion", "zsh")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith("#compdef logkit\n")
    for line in text.splitlines():
        assert line.count("'") % 2 == 0, f"unbalanced quotes: {line}"
    assert text.count("{") == text.count("}")
    funcs = re.findall(r"^(_logkit\w*)\(\) \{$", text, re.M)
    assert "_logkit_print" in funcs and "_logkit_config_check" in funcs
    for f in set(re.findall(r"\) (_logkit\w+) ;;", text)):
        assert f in funcs, f"{f} is called but not defined"
    # Every option of `logkit print`, as argparse defines it, is offered.
    p = build_parser("print")
    sub = next(a for a in p._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    body = text.split("_logkit_print() {", 1)[1].split("\n}\n", 1)[0]
    for a in sub.choices["print"]._actions:
        for s in a.option_strings:
            assert s in body, f"zsh completion of print lacks {s}"
    zsh = shutil.which("zsh")
    if zsh is not None:
        chk = subprocess.run([zsh, "-n"], input=text, capture_output=True, text=True, timeout=30)
        assert chk.returncode == 0, chk.stderr


def test_man_page_is_made_from_the_argument_definitions():
    r = cli("man", "--roff")
    assert r.returncode == 0, r.stderr
    page = r.stdout
    assert page.startswith(".\\\"") and "\n.TH LOGKIT 1 " in page
    p = build_parser()
    sub = next(a for a in p._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    for name, sp in sub.choices.items():
        assert f'.SS "logkit {name}"' in page, f"no section for {name}"
        for a in sp._actions:
            for s in a.option_strings:
                if s not in ("-h", "--help"):
                    assert f"\\fB{s.replace('-', chr(92) + '-')}\\fR" in page, f"{name} {s} not in the page"
    groff = shutil.which("groff")
    if groff is not None:
        out = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_man_page_is_installed_beside_the_package_and_matches_the_code():
    from logkit.cli import man_cmd
    r = cli("man", "--path")
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    assert path == man_cmd.INSTALLED and os.path.isfile(path)
    body = lambda text: text.split("\n", 2)[2]       # past the comment and the dated .TH line
    with open(path, encoding="utf-8") as f:
        assert body(f.read()) == body(man_cmd.page()), "the built page is stale: run `make build`"


# ---------------------------------------------------------------- log names that name nothing

def test_print_and_monitor_of_a_name_without_a_config_say_where_they_looked(tmp_path):
    for cmd in ("print", "monitor"):
        r = cli(cmd, "app", cwd=tmp_path, env={"HOME": str(tmp_path)})
        assert r.returncode == 2
        assert "no config file found" in r.stderr, r.stderr
        assert f"looked in {tmp_path / 'logkit.toml'}" in r.stderr, r.stderr


def test_print_monitor_and_stats_suggest_the_configured_name_closest_to_a_misspelt_one(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logkit.toml").write_text('[log.webapp]\ndirectory = "logs"\n\n[log.audit]\ndirectory = "logs"\n')
    for cmd in ("print", "monitor", "stats"):
        r = cli(cmd, "webap", cwd=tmp_path, env={"HOME": str(tmp_path)})
        assert r.returncode == 2, r.stdout + r.stderr
        assert "did you mean 'webapp'?" in r.stderr and "audit, webapp" in r.stderr, r.stderr


def _config_with_family(tmp_path, n=400):
    logs = tmp_path / "logs"
    logs.mkdir()
    _family(logs, [f"message {i} " + "x" * 60 for i in range(n)], family="web", segment_size="16KiB")
    (tmp_path / "logkit.toml").write_text('[log.app]\ndirectory = "logs"\nfamily = "web"\n')
    return logs


def test_retain_takes_a_configured_log_name(tmp_path):
    logs = _config_with_family(tmp_path)
    hist = [n for n in os.listdir(logs) if n.startswith("web.")]
    assert len(hist) > 2
    r = cli("retain", "app", "--max-count", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len([n for n in os.listdir(logs) if n.startswith("web.")]) == 1
    assert f"web: deleted {len(hist) - 1} history segment(s)" in r.stdout
    bad = cli("retain", "ap", "--max-count", "1", cwd=tmp_path)
    assert bad.returncode == 2 and "did you mean 'app'?" in bad.stderr, bad.stderr


def test_migrate_takes_a_configured_log_name_and_the_family_still_reads_whole(tmp_path):
    logs = _config_with_family(tmp_path)
    before = [m.text for m in logkit.open_reader(str(logs), "web")]
    r = cli("migrate", "app", str(tmp_path / "old"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not [n for n in os.listdir(logs) if n.startswith("web.")]
    assert [m.text for m in logkit.open_reader([str(logs), str(tmp_path / "old")], "web")] == before
    plain = tmp_path / "plain.toml"
    plain.write_text(f'[log.p]\nstorage = "plainfile"\npath = "{tmp_path / "p.log"}"\n')
    r = cli("migrate", "-c", str(plain), "p", str(tmp_path / "x"))
    assert r.returncode == 2 and "its storage is 'plainfile', not a family" in r.stderr, r.stderr


# ---------------------------------------------------------------- config check

def test_config_check_prints_toml_that_reads_back_as_the_same_configuration(tmp_path):
    (tmp_path / "logs").mkdir()
    src = tmp_path / "logkit.toml"
    src.write_text('[log.app]\ndirectory = "logs"\nsegment_size = 1048576\ncreate_directory = true\n'
                   f'[log.buf]\nstorage = "partition"\npath = "{tmp_path / "buf.part"}"\n'
                   'directory = "logs"\nsize = "64KiB"\nsegment_size = 100000\n')
    r = cli("config", "check", str(src))
    assert r.returncode == 0, r.stderr
    assert "create_directory = true" in r.stdout and "True" not in r.stdout
    assert 'segment_size = "1MiB"' in r.stdout and 'size = "64KiB"' in r.stdout
    assert "segment_size = 100000" in r.stdout          # not a whole number of KiB: bytes
    doc = tomllib.loads(r.stdout)
    assert doc["log"]["app"]["storage"]["create_directory"] is True
    assert doc["log"]["buf"]["storage"]["mode"] == 0o640
    again = tmp_path / "again.toml"
    again.write_text(r.stdout)
    r2 = cli("config", "check", str(again))
    assert r2.returncode == 0, r2.stderr
    assert tomllib.loads(r2.stdout) == doc


# ---------------------------------------------------------------- repeats

def _on_a_terminal(*args) -> str:
    """stdout of `logkit ARGS` run with its standard output a terminal (a pty)."""
    out = _run_on_terminal([sys.executable, "-m", "logkit", *args], dict(os.environ))
    return out.replace("\r\n", "\n")


def test_repeats_are_equals_signs_on_a_terminal_and_whole_lines_into_a_pipe(tmp_path):
    _family(tmp_path, ["first", "again", "again", "again", "last"])
    piped = cli("print", "--no-header", "--colour", "never", str(tmp_path))
    assert piped.returncode == 0, piped.stderr
    assert [ln.split()[-1] for ln in piped.stdout.splitlines()] == ["first", "again", "again", "again", "last"]
    asked = cli("print", "--no-header", "--no-duplicates", str(tmp_path))
    assert [ln.split()[-1] for ln in asked.stdout.splitlines()] == ["first", "again", "=", "=", "last"]
    tty = _on_a_terminal("print", "--no-header", "--colour", "never", str(tmp_path))
    assert [ln.split()[-1] for ln in tty.splitlines()] == ["first", "again", "=", "=", "last"]
    tty_all = _on_a_terminal("print", "--no-header", "--colour", "never", "--duplicates", str(tmp_path))
    assert [ln.split()[-1] for ln in tty_all.splitlines()] == ["first", "again", "again", "again", "last"]


def test_the_man_page_is_made_from_a_source_tree_before_anything_is_installed(tmp_path):
    """setup.py's build_ext runs `python -m logkit.cli.man_cmd` on the
    source tree before the package (and its logkit.backends mapping) is
    installed: no command module may import logkit.backends when the parser
    is built (a fresh clone's first build failed so)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "logkit.1"
    r = subprocess.run([sys.executable, "-S", "-m", "logkit.cli.man_cmd", str(out)], cwd=root,
                       env={"PYTHONPATH": root, "PATH": os.environ.get("PATH", "")},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "\n.TH LOGKIT 1 " in out.read_text()
