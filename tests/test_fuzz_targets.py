"""The fuzz targets (tests/fuzz/targets.py) in CI: every seed of the corpus,
every saved reproducer, and a brief seeded run of each target.

The rule each target checks: no crash, no hang (each input is bounded to
INPUT_TIMEOUT seconds by a watchdog in the child), no exception but a
LogkitError with a message.  The brief runs use the built-in mutator with a
fixed seed, so a failure here reproduces exactly (`python tests/fuzz/run.py
--engine builtin --seed 1 --runs N TARGET`); `make fuzz` runs atheris long.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fuzz import run as fuzzrun
from tests.fuzz.targets import TARGETS, check

RUNS = int(os.environ.get("LOGKIT_FUZZ_RUNS", "1000"))   # per target; ~4-7 s each on a loaded CI machine
# Bounded, not tight: a partition whose intent word names a half makes each
# read wait READ_PATIENCE (2 s; test_partition_reader_with_a_stale_intent_...).
INPUT_TIMEOUT = 15.0
CRASHES = fuzzrun.DEFAULT_CRASHES

# Saved reproducers of defects not fixed yet (file name -> the defect), and
# brief runs that meet one: xfail(strict=True), so a fix turns them into a
# failure that says to drop the mark.  Each file's .txt says more.
KNOWN_REPRODUCERS: dict[str, str] = {}
KNOWN_BRIEF: dict[str, str] = {}


def _seeds():
    out = []
    for target in TARGETS:
        d = os.path.join(fuzzrun.CORPUS, target)
        for name in sorted(os.listdir(d)):
            out.append(pytest.param(target, os.path.join(d, name), id=f"{target}/{name}"))
    return out


def test_every_target_has_seeds():
    for target in TARGETS:
        d = os.path.join(fuzzrun.CORPUS, target)
        assert os.path.isdir(d) and os.listdir(d), f"no corpus for fuzz target {target} in {d}"


@pytest.mark.parametrize("target,path", _seeds())
def test_corpus_seed_keeps_the_rule(target, path):
    with open(path, "rb") as f:
        check(target, f.read())


def _reproducers():
    if not os.path.isdir(CRASHES):
        return []
    out = []
    for name in sorted(os.listdir(CRASHES)):
        if name.endswith(".txt") or name.startswith(".") or not os.path.isfile(os.path.join(CRASHES, name)):
            continue                  # found/: inputs of defects other tests hold (each with its .txt)
        marks = ()
        if name in KNOWN_REPRODUCERS:
            marks = pytest.mark.xfail(strict=True, reason=KNOWN_REPRODUCERS[name])
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _reproducers())
def test_saved_reproducer_keeps_the_rule(name):
    """Each input a fuzzer once failed on, replayed in a child (it may hang or crash)."""
    p = subprocess.run([sys.executable, fuzzrun.__file__, "--replay", os.path.join(CRASHES, name),
                        "--timeout", str(INPUT_TIMEOUT)],
                       capture_output=True, text=True, timeout=120, cwd=fuzzrun.ROOT,
                       env=dict(os.environ, PYTHONPATH=fuzzrun.ROOT))
    assert p.returncode == 0, f"{name}: exit {p.returncode}\n{(p.stdout + p.stderr)[-3000:]}"


def _brief():
    return [pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BRIEF[t]) if t in KNOWN_BRIEF else (),
                         id=t) for t in TARGETS]


@pytest.mark.parametrize("target", _brief())
def test_brief_fuzz_run_keeps_the_rule(target, tmp_path, monkeypatch):
    monkeypatch.setenv("LOGKIT_FUZZ_CRASHES", str(tmp_path))
    r = fuzzrun.run_target(target, "builtin", RUNS, None, INPUT_TIMEOUT, 1, False, quiet=True)
    print(f"fuzz {target}: {r['executions']} executions in {r['seconds']:.1f} s")
    saved = sorted(os.listdir(tmp_path))
    assert r["ok"], (f"fuzz target {target} broke the rule (inputs saved: {saved}); "
                     f"replay with tests/fuzz/run.py --replay\n{r['output'][-4000:]}")
    assert r["executions"] >= RUNS, f"{target}: only {r['executions']} of {RUNS} executions ran"


def test_atheris_engine_runs_a_target(tmp_path, monkeypatch):
    """`make fuzz` uses atheris: check the coverage-guided engine starts, runs and counts."""
    if not fuzzrun.have_atheris():
        pytest.skip("atheris is not installed in this venv (pip install atheris); the built-in engine "
                    "ran every target above")
    monkeypatch.setenv("LOGKIT_FUZZ_CRASHES", str(tmp_path))
    r = fuzzrun.run_target("frames", "atheris", 500, None, INPUT_TIMEOUT, 1, False, quiet=True)
    assert r["ok"], r["output"][-3000:]
    assert r["executions"] >= 500


def test_partition_reader_with_a_stale_intent_answers_without_waiting(tmp_path):
    import mmap
    import time
    from logkit._segment import store_word
    from logkit.backends.partition import H_INTENT, open_reader
    from tests.fuzz import seeds
    path = str(tmp_path / "p.part")
    seeds.make_partition(path)
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 4096) as mm:
        store_word(mm, H_INTENT, 1)        # half 0 "being formatted" by a swapper that is gone
    r = open_reader(path)
    try:
        t = time.monotonic()
        list(r)
        r.limits()
        took = time.monotonic() - t
    finally:
        r.partition.close()
    assert took < 1.0, f"two reads of a partition with a stale intent took {took:.1f} s"
