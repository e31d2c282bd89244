#!/usr/bin/env python3
"""Run the fuzz targets (tests/fuzz/targets.py) and print executions per target.

    python tests/fuzz/run.py [TARGET ...] [--seconds N | --runs N]
                             [--engine atheris|builtin|auto] [--timeout S] [--seed N] [--grow]

Each target runs in its own child process (a crash or hang in one is
reported and the others still run).  Engines:

* atheris: coverage-guided (libFuzzer); the logkit Python modules are
  instrumented, the compiled core is not (it is exercised, not traced).
  `pip install atheris`.
* builtin: a seeded mutator over the corpus (bit flips, boundary words, cuts,
  splices); needs nothing beyond logkit, and with --seed it is repeatable,
  which is what CI runs (tests/test_fuzz_targets.py).

Inputs that break the rule are saved under tests/fuzz/crashes/ as
<target>-<sha1-prefix> (atheris: crash-/timeout-/oom- files with that prefix).
--grow lets atheris add the inputs it finds interesting to
tests/fuzz/corpus/<target>/ (otherwise it works on a temporary copy).
Exit status 1 if any target found a failing input.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
DEFAULT_CRASHES = os.path.join(HERE, "crashes")


def crashes_dir() -> str:
    """Where failing inputs go: $LOGKIT_FUZZ_CRASHES (read at each use, so a
    test can point parent and children elsewhere), else tests/fuzz/crashes."""
    return os.environ.get("LOGKIT_FUZZ_CRASHES") or DEFAULT_CRASHES
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MAX_LEN = 32768                   # larger than every seed (a 20 KiB partition)
MEMORY_LIMIT = 3 << 30            # address space of a worker: an allocation beyond is a MemoryError
FOUND = 3                         # a worker's exit status when it finished and found failing inputs
BOUNDARY = (0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 4096, 8192, 8191, 2**40)


def load_corpus(target: str) -> list[bytes]:
    d = os.path.join(CORPUS, target)
    out = []
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        with open(os.path.join(d, name), "rb") as f:
            out.append(f.read())
    return out or [b""]


# ---------------------------------------------------------------- the built-in mutator

def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """One to four random edits of `data` (structure-blind, but word-aware:
    header words and length fields are 8-byte or 4-byte little-endian)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(b)
        if op == 0 and n:                                      # flip a bit
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:                                    # set a byte
            b[rng.randrange(n)] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op in (2, 3) and n >= 8:                          # an aligned word to a boundary value
            size = 8 if op == 2 else 4
            # header words live in the first 4 KiB: aim there half the time
            lim = min(n, 4096) if rng.random() < 0.5 else n
            i = rng.randrange(0, max(1, lim - size + 1)) & ~(size - 1)
            v = rng.choice(BOUNDARY + (n, n + 8, n - 8, n - 4096, rng.getrandbits(size * 8)))
            b[i:i + size] = (v % (1 << (size * 8))).to_bytes(size, "little")
        elif op == 4 and n:                                    # truncate
            del b[rng.randrange(n):]
        elif op == 5 and n:                                    # zero a run (a lost page, a torn write)
            i = rng.randrange(n)
            k = rng.choice((8, 64, 512, 4096))
            b[i:i + k] = bytes(len(b[i:i + k]))
        elif op == 6 and n:                                    # delete or duplicate a run
            i = rng.randrange(n)
            k = rng.randint(1, 64)
            if rng.random() < 0.5:
                del b[i:i + k]
            else:
                b[i:i] = b[i:i + k]
        elif op == 7:                                          # splice another corpus input
            other = rng.choice(corpus)
            if other:
                i = rng.randrange(len(other))
                j = rng.randrange(len(b) + 1)
                b[j:j + len(other) - i] = other[i:]
        elif op == 8:                                          # insert random bytes
            j = rng.randrange(len(b) + 1)
            b[j:j] = rng.randbytes(rng.randint(1, 16))
        if len(b) > MAX_LEN:
            del b[MAX_LEN:]
    return bytes(b)


def _save(target: str, data: bytes, why: str) -> str:
    os.makedirs(crashes_dir(), exist_ok=True)
    path = os.path.join(crashes_dir(), f"{target}-{hashlib.sha1(data).hexdigest()[:12]}")
    with open(path, "wb") as f:
        f.write(data)
    with open(path + ".txt", "w") as f:
        f.write(why)
    return path


def worker_builtin(target: str, runs: int | None, seconds: float | None, timeout: float, seed: int) -> int:
    import faulthandler
    from tests.fuzz.targets import check
    corpus = load_corpus(target)
    rng = random.Random(seed)
    current = os.path.join(crashes_dir(), f".current-{target}-{os.getpid()}")
    os.makedirs(crashes_dir(), exist_ok=True)
    failures: dict[str, str] = {}
    n = 0
    deadline = time.monotonic() + seconds if seconds else None
    start = time.monotonic()
    try:
        while (runs is None or n < runs) and (deadline is None or time.monotonic() < deadline):
            data = corpus[n] if n < len(corpus) else mutate(rng, rng.choice(corpus), corpus)
            with open(current, "wb") as f:     # left behind if the input kills or hangs this process
                f.write(data)
            faulthandler.dump_traceback_later(timeout, exit=True)
            try:
                check(target, data)
            except BaseException as e:      # the rule: report it, keep fuzzing
                if isinstance(e, KeyboardInterrupt):
                    raise
                tb = traceback.extract_tb(e.__traceback__)
                where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
                sig = f"{type(e).__name__} at {where}"
                if sig not in failures:
                    why = f"{sig}: {e!s:.500}\n{''.join(traceback.format_exception(e))}"
                    failures[sig] = _save(target, data, why)
                    print(f"[{target}] FAILED: {sig}: {e!s:.300} -> {failures[sig]}", file=sys.stderr, flush=True)
            finally:
                faulthandler.cancel_dump_traceback_later()
            n += 1
            if n % 250 == 0:
                print(f"PROGRESS {n}", flush=True)
    finally:
        os.unlink(current) if os.path.exists(current) else None
    print(f"EXECUTIONS {n} SECONDS {time.monotonic() - start:.1f} FAILURES {len(failures)}", flush=True)
    return FOUND if failures else 0


def worker_atheris(target: str, runs: int | None, seconds: float | None, timeout: float, seed: int,
                   grow: bool) -> int:
    import atheris
    with atheris.instrument_imports(include=["logkit", "tests.fuzz"]):
        import logkit  # noqa: F401
        import logkit.backends.partition, logkit.backends.pipe, logkit.backends.pipejournal  # noqa: F401,E401
        import logkit.cli.display_cmd, logkit.cli.inspection, logkit.cli.inspection_files, logkit.cli.inspectors, logkit.cli.verify_cmd, logkit.config, logkit.select  # noqa: F401,E401
        import logkit.salvager  # noqa: F401
        from tests.fuzz.targets import check

    def one(data: bytes) -> None:
        check(target, data)

    src = os.path.join(CORPUS, target)
    work = src if grow else tempfile.mkdtemp(prefix=f"logkit-corpus-{target}-")
    if not grow and os.path.isdir(src):
        for name in os.listdir(src):
            shutil.copy(os.path.join(src, name), work)
    os.makedirs(crashes_dir(), exist_ok=True)
    argv = [sys.argv[0], work, f"-timeout={int(max(1, timeout))}", f"-max_len={MAX_LEN}",
            f"-seed={seed}", f"-rss_limit_mb={MEMORY_LIMIT >> 20}",
            f"-artifact_prefix={os.path.join(crashes_dir(), target)}-", "-print_final_stats=1"]
    if runs is not None:
        argv.append(f"-runs={runs}")
    if seconds:
        argv.append(f"-max_total_time={int(seconds)}")
    atheris.Setup(argv, one)
    atheris.Fuzz()                    # exits the process; the parent reads "Done N runs"
    return 0


# ---------------------------------------------------------------- the parent

def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
        return True
    except ImportError:
        return False


def _one_worker(target, engine, runs, seconds, timeout, seed, grow):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", target, "--engine", engine,
           "--timeout", str(timeout), "--seed", str(seed)]
    if runs is not None:
        cmd += ["--runs", str(runs)]
    if seconds:
        cmd += ["--seconds", str(seconds)]
    if grow:
        cmd.append("--grow")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    limit = (seconds or 0) + (runs or 0) * timeout + 120
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=limit, cwd=ROOT)
    out = p.stdout + p.stderr
    m = (re.search(r"EXECUTIONS (\d+)", p.stdout) or re.search(r"Done (\d+) runs", out)
         or re.search(r"stat::number_of_executed_units:\s*(\d+)", out))
    if m:
        execs = int(m.group(1))
    else:                              # died on an input: count what it reported so far
        progress = re.findall(r"PROGRESS (\d+)", p.stdout)
        execs = int(progress[-1]) if progress else 0
    return p.returncode, execs, out


def run_target(target: str, engine: str, runs, seconds, timeout, seed, grow, quiet=False,
               restarts: int = 20) -> dict:
    """Run one target in child processes: a child that dies on an input (a
    crash or a hang) has that input saved, and the builtin engine carries on
    in a new child with the next seed until the runs or seconds are spent."""
    t0 = time.monotonic()
    total, outs, code, saved = 0, [], 0, []
    for attempt in range(restarts + 1):
        left_runs = None if runs is None else runs - total
        left_secs = None if not seconds else seconds - (time.monotonic() - t0)
        if (left_runs is not None and left_runs <= 0) or (left_secs is not None and left_secs <= 1):
            break
        for stale in _currents(target):
            os.unlink(stale)
        rc, execs, out = _one_worker(target, engine, left_runs, left_secs, timeout, seed + attempt, grow)
        died = rc not in (0, FOUND) if engine == "builtin" else False
        total += execs + (1 if died else 0)
        outs.append(out)
        code = code or rc
        if not died:
            break
        # Killed by a signal or by the hang watchdog: keep the input it was on.
        for cur in _currents(target):
            with open(cur, "rb") as f:
                data = f.read()
            why = "hang" if "Timeout (" in out else f"exit {rc}"
            saved.append(_save(target, data, f"{why}\n{out[-4000:]}"))
            os.unlink(cur)
        if not quiet:
            sys.stderr.write(f"[{target}] child died ({'hang' if 'Timeout (' in out else f'exit {rc}'}), "
                             f"input saved: {saved[-1] if saved else '?'}; continuing\n")
    out = "\n".join(outs)
    ok = code == 0
    if not quiet and not ok:
        sys.stderr.write(f"--- {target}: exit {code}\n{out[-6000:]}\n")
    return {"target": target, "engine": engine, "executions": total, "seconds": time.monotonic() - t0,
            "returncode": code, "ok": ok, "output": out, "saved": saved}


def _currents(target: str) -> list[str]:
    d = crashes_dir()
    if not os.path.isdir(d):
        return []
    return [os.path.join(d, n) for n in os.listdir(d) if n.startswith(f".current-{target}-")]


def main(argv=None) -> int:
    from tests.fuzz.targets import TARGETS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    ap.add_argument("--seconds", type=float, default=None, help="per target")
    ap.add_argument("--runs", type=int, default=None, help="executions per target")
    ap.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take (a hang beyond)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--grow", action="store_true", help="atheris adds new inputs to the committed corpus")
    ap.add_argument("--replay", metavar="FILE", nargs="+",
                    help="run the (first) target on these saved inputs only (exit 0: each kept the rule)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.runs is None and a.seconds is None:
        a.runs = 2000
    engine = a.engine
    if engine == "auto":
        engine = "atheris" if have_atheris() else "builtin"
    if a.worker:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        if engine == "atheris":
            return worker_atheris(a.worker, a.runs, a.seconds, a.timeout, a.seed, a.grow)
        return worker_builtin(a.worker, a.runs, a.seconds, a.timeout, a.seed)
    if a.replay:
        import faulthandler
        from tests.fuzz.targets import check
        target = a.targets[0] if a.targets else None
        for path in a.replay:
            name = target or os.path.basename(path).split("-")[0]
            with open(path, "rb") as f:
                data = f.read()
            faulthandler.dump_traceback_later(a.timeout, exit=True)
            t = time.monotonic()
            check(name, data)            # raises (exit 1) if the rule is broken
            faulthandler.cancel_dump_traceback_later()
            print(f"{path}: {name}: kept the rule ({time.monotonic() - t:.2f} s)")
        return 0
    targets = a.targets or list(TARGETS)
    for t in targets:
        if t not in TARGETS:
            ap.error(f"no target {t!r} (there are: {', '.join(TARGETS)})")
    rows = []
    for t in targets:
        r = run_target(t, engine, a.runs, a.seconds, a.timeout, a.seed, a.grow)
        rows.append(r)
        print(f"{t:<10} {engine:<8} {r['executions']:>10} executions  {r['seconds']:7.1f} s  "
              f"{'ok' if r['ok'] else 'FAILED (exit %d)' % r['returncode']}", flush=True)
    total = sum(r["executions"] for r in rows)
    print(f"{'total':<10} {'':<8} {total:>10} executions; failing targets: "
          f"{', '.join(r['target'] for r in rows if not r['ok']) or 'none'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
