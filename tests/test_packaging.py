"""logkit installs from its sdist the way a user installs it (issue #14).

The sdist carries the Cython sources and the C headers and none of the C that
Cython generates; pip builds it in a new venv, where the package, the `logkit`
command and the entry points work, logkit._bench is absent, and a Cython
extension from outside the project cimports the core through
logkit.get_include().  And setup.py alone sets the optimisation level, so
`make debug` really builds at -O0.  One module fixture makes the sdist, the
venv and the outside extension (about a minute on two cores); the tests look
at what it made.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What the copy of the source tree leaves out: version control, venvs, build
# output, caches and compiled modules.  The C that Cython generated in
# pyx/logkit/ is copied on purpose: the sdist must leave it out.
_SKIP_NAMES = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis",
               "demo-logs"}
_SKIP_PATHS = {"bench/results"}

# The outside extension: reserve, fill and finish one message at C level.
_OUTSIDE_PYX = '''\
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from logkit._segment cimport Segment, lk_reserve, lk_finish, lk_now_ns, LK_OK, LK_MSG_HEADER


def reserve_and_finish(Segment seg not None, bytes text not None, int severity):
    """Write `text` with lk_reserve + memcpy + lk_finish; return its sequence number."""
    cdef uint64_t n = len(text)
    cdef uint64_t off, seq
    cdef int rc
    if seg.base == NULL or seg.readonly:
        raise ValueError("segment is closed or read-only")
    rc = lk_reserve(seg.base, seg.size, n, 0, NULL, 0, &off, &seq)
    if rc != LK_OK:
        raise RuntimeError(f"lk_reserve returned {rc}")
    memcpy(seg.base + off + LK_MSG_HEADER, <const char *>text, n)
    rc = lk_finish(seg.base, off, severity, lk_now_ns())
    if rc != LK_OK:
        raise RuntimeError(f"lk_finish returned {rc}")
    return seq
'''

# Only logkit.get_include(): Cython finds logkit/_segment.pxd on sys.path, in
# the installed package.
_OUTSIDE_SETUP = '''\
import logkit
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    name="outside",
    ext_modules=cythonize(
        [Extension("outside", ["outside.pyx"], include_dirs=[logkit.get_include()])],
        compiler_directives={"language_level": 3},
    ),
)
'''


def _ignore(directory: str, names: list[str]) -> set[str]:
    rel = Path(directory).relative_to(ROOT)
    return {n for n in names
            if n in _SKIP_NAMES or (rel / n).as_posix() in _SKIP_PATHS
            or n.endswith((".egg-info", ".so", ".o"))}


def _env(**extra: str) -> dict[str, str]:
    """This environment without what would leak the development venv or our
    build switches into a scratch build."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LOGKIT_DEBUG", "LOGKIT_BUILD_BENCH")}
    env.update(extra)
    return env


def _run(cmd: list, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run cmd; return its stdout and stderr; fail with both if it fails."""
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or _env(), capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, (f"`{shlex.join(str(c) for c in cmd)}` exited {p.returncode}\n"
                               f"--- stdout\n{p.stdout[-6000:]}\n--- stderr\n{p.stderr[-6000:]}")
    return p.stdout + p.stderr


def _require_a_c_toolchain() -> None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"this machine has no C compiler ({cc}): the sdist builds C extensions")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        pytest.skip("this machine lacks the Python headers (Python.h): the sdist builds C extensions")


@dataclass
class Scratch:
    src: Path               # the copy of the working tree the sdist was made from
    sdist: Path
    sdist_log: str          # what building the sdist printed
    venv: Path
    python: Path
    site: Path              # the venv's site-packages
    install_log: str        # what `pip install -v sdist` printed
    outside: Path           # the outside extension's directory, built in place
    outside_log: str

    def run_python(self, code: str, cwd: Path | None = None) -> dict:
        """Run code in the scratch venv's interpreter, away from the checkout;
        return the JSON it prints last."""
        out = _run([self.python, "-c", textwrap.dedent(code)], cwd=cwd or self.venv)
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Scratch:
    _require_a_c_toolchain()
    work = tmp_path_factory.mktemp("packaging")

    # The sdist, from a copy of the working tree (setuptools writes
    # logkit.egg-info into the tree it packs).  The copy holds the C that
    # Cython generated, and an old SOURCES.txt naming it, as a developer's
    # checkout may: setuptools packs every file an existing SOURCES.txt names.
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    generated = src / "pyx" / "logkit" / "_segment.c"
    if not generated.exists():
        generated.write_text("/* generated by Cython */\n")
    (src / "logkit.egg-info").mkdir()
    (src / "logkit.egg-info" / "SOURCES.txt").write_text("pyx/logkit/_segment.c\nsetup.py\n")
    dist = work / "dist"
    if importlib.util.find_spec("build") is not None:
        sdist_log = _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", dist, src],
                         cwd=work)
    else:                   # `make build` installs build; a venv made otherwise may lack it
        sdist_log = _run([sys.executable, "setup.py", "sdist", "--dist-dir", dist], cwd=src)
    (sdist,) = dist.glob("logkit-*.tar.gz")

    # A new venv filled from PyPI.  Our pip installs into it (`pip --python`):
    # a pip of its own would take ensurepip a quarter of a minute on a busy
    # machine.  The build requirements go in first, so pip builds the sdist
    # without an isolated environment of its own to download them into.
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python]
    _run([*pip, "install", "--quiet", "setuptools>=77", "Cython>=3.0", "blake3"], cwd=work)
    # LOGKIT_DEBUG=1 (-O0): gcc builds the core in a fifth of the time it takes
    # at -O2, which is what keeps this file near a minute; the build is
    # otherwise a user's, and test_a_debug_install_is_compiled_at_O0 checks
    # that the flag reached the compiler.
    install_log = _run([*pip, "install", "-v", "--no-build-isolation", "--no-cache-dir", sdist],
                       cwd=work, env=_env(LOGKIT_DEBUG="1"))
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=work).strip())

    outside = work / "outside"
    outside.mkdir()
    (outside / "outside.pyx").write_text(_OUTSIDE_PYX)
    (outside / "setup.py").write_text(_OUTSIDE_SETUP)
    outside_log = _run([python, "setup.py", "build_ext", "--inplace"], cwd=outside)
    return Scratch(src, sdist, sdist_log, venv, python, site, install_log, outside, outside_log)


def _warnings(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r"warning", line, re.I)]


def test_sdist_carries_the_cython_sources_and_headers_and_no_generated_c(scratch):
    with tarfile.open(scratch.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    sources = {p.relative_to(scratch.src).as_posix()
               for pattern in ("pyx/logkit/*.pyx", "pyx/logkit/*.pxd", "pyx/logkit/*.pxi", "pyx/include/*.h")
               for p in scratch.src.glob(pattern)}
    assert "pyx/logkit/_segment.pyx" in sources and "pyx/include/lk_segment.h" in sources
    assert not sources - names, f"the sdist lacks {sorted(sources - names)}"
    assert not [n for n in names if n.endswith(".c")], "the sdist ships generated C"
    for needed in ("MANIFEST.in", "setup.py", "pyproject.toml", "backends/family.py", "docs/api.md",
                   "docs/format.md", "tests/test_docs.py", "bench/bench_segment.py", "logkit/_segment.pyi"):
        assert needed in names, f"the sdist lacks {needed}"
    assert not _warnings(scratch.sdist_log), "making the sdist warned"


def test_pip_install_of_the_sdist_prints_no_warning(scratch):
    # Setuptools' and Python's warnings (deprecations, license metadata,
    # package data) and the compiler's at -O0.  Not pip's own "WARNING:" lines
    # about this machine's configuration, nor distutils' note that
    # PYTHONDONTWRITEBYTECODE, when the environment sets it, turns off
    # byte-compiling.
    noisy = [line for line in scratch.install_log.splitlines()
             if re.search(r"\w+Warning\b|\bwarning:|deprecated", line)
             and "byte-compiling is disabled" not in line]
    assert not noisy, "pip install of the sdist warned:\n" + "\n".join(noisy)


def test_installed_package_has_its_c_api_and_no_bench_module(scratch):
    got = scratch.run_python("""
        import importlib.util, json, logkit
        print(json.dumps({"file": logkit.__file__, "include": logkit.get_include(),
                          "bench": importlib.util.find_spec("logkit._bench") is not None,
                          "crypto": importlib.util.find_spec("Crypto") is not None}))
    """)
    package = scratch.site / "logkit"
    assert Path(got["file"]) == package / "__init__.py"
    assert Path(got["include"]) == package / "include"
    headers = {p.name for p in (scratch.src / "pyx" / "include").glob("*.h")}
    assert headers <= {p.name for p in (package / "include").iterdir()}
    pxds = {p.name for p in (scratch.src / "pyx" / "logkit").glob("*.pxd")}
    assert {"__init__.pxd", "_segment.pxd"} <= pxds <= {p.name for p in package.glob("*.pxd")}
    assert not got["bench"] and not list(package.glob("_bench*")), "logkit._bench is installed"
    assert not got["crypto"], "pycryptodome came in as a dependency"


def test_get_include_in_a_source_checkout_is_pyx_include():
    import logkit
    if Path(logkit.__file__).resolve().parent != ROOT / "logkit":
        pytest.skip("logkit here is not the source checkout's (no editable install)")
    assert Path(logkit.get_include()) == ROOT / "pyx" / "include"


def test_sdist_install_writes_a_segment_and_reads_it_back(scratch, tmp_path):
    got = scratch.run_python(f"""
        import json, os
        from logkit import Segment
        seg = Segment.create({str(tmp_path / "one")!r}, size="1MiB", family="sdist")
        seq = seg.write("written from an sdist install", severity=30)
        with seg.reserve(5) as res:
            res.text[:] = b"hello"
        seg.close()
        seg = Segment.open({str(tmp_path / "one")!r}, readonly=True)
        print(json.dumps({{"seq": seq, "messages": [[m.sequence, m.severity, m.text] for m in seg]}}))
    """)
    assert got["messages"] == [[got["seq"], 30, "written from an sdist install"],
                               [got["seq"] + 1, 20, "hello"]]


def test_console_script_and_entry_points_are_registered(scratch):
    logkit = scratch.venv / "bin" / "logkit"
    assert "usage" in _run([logkit, "--help"], cwd=scratch.venv).lower()
    listed = _run([logkit, "backends"], cwd=scratch.venv)
    for name in ("family", "partition", "plainfile", "shm", "pipe"):
        assert re.search(rf"\b{name}\b", listed), f"`logkit backends` does not list {name}:\n{listed}"
    got = scratch.run_python("""
        import json
        from importlib.metadata import entry_points
        print(json.dumps({g: sorted(e.name for e in entry_points(group=g))
                          for g in ("logkit.storage", "logkit.transport", "logkit.formatters")}))
    """)
    assert got["logkit.storage"] == ["family", "partition", "plainfile"]
    assert got["logkit.transport"] == ["pipe", "shm"]
    assert {"json", "utf8", "hex"} <= set(got["logkit.formatters"])


def test_outside_extension_cimports_the_core_and_writes_at_c_level(scratch, tmp_path):
    assert list(scratch.outside.glob("outside*.so")), scratch.outside_log
    # Our headers compile without a warning in someone else's module too.
    assert not [line for line in scratch.outside_log.splitlines() if "warning" in line.lower()], \
        scratch.outside_log
    got = scratch.run_python(f"""
        import json
        import logkit, outside
        with logkit.Segment.create({str(tmp_path / "c")!r}, size="1MiB") as seg:
            first = seg.write("from Python")
            seq = outside.reserve_and_finish(seg, b"reserved and finished in C", 40)
            messages = [[m.sequence, m.severity, m.text] for m in seg]
            damaged = seg.scan()["damaged"]
        print(json.dumps({{"first": first, "seq": seq, "messages": messages, "damaged": damaged,
                          "outside": outside.__file__}}))
    """, cwd=scratch.outside)
    assert got["seq"] == got["first"] + 1
    assert got["messages"] == [[got["first"], 20, "from Python"], [got["seq"], 40, "reserved and finished in C"]]
    assert got["damaged"] == []


def test_a_debug_install_is_compiled_at_O0(scratch):
    """LOGKIT_DEBUG=1 reached the compiler through pip: gcc records its
    options in the debug information, and the last -O is the one in force."""
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("this machine has no readelf (binutils) to read the module's debug information")
    (module,) = (scratch.site / "logkit").glob("_segment*.so")
    info = _run([readelf, "--debug-dump=info", module], cwd=scratch.venv)
    producers = [p for p in re.findall(r"DW_AT_producer\s*:(.*)$", info, re.M) if " -O" in p]
    if not producers:
        pytest.skip("the compiler did not record its options in the debug information (gcc does)")
    for producer in producers:
        assert re.findall(r" (-O\w*)", producer)[-1] == "-O0", producer


# ---------------------------------------------------------------- setup.py's flags, without a build

def _compile_args(**env: str) -> list[str]:
    code = "import json, runpy; print(json.dumps(runpy.run_path('setup.py', run_name='flags')['compile_args']()))"
    return json.loads(_run([sys.executable, "-c", code], cwd=ROOT, env=_env(**env)))


def _compiler_macros(args: list[str], tmp_path: Path, env_cflags: str) -> set[str]:
    """The macros gcc defines for a module compiled with `args`, on the command
    line setuptools builds: CC, Python's CFLAGS, $CFLAGS and CCSHARED, then the
    extension's extra_compile_args."""
    probe = tmp_path / "probe.c"
    probe.write_text("int probe;\n")
    cv = sysconfig.get_config_var
    cmd = [*shlex.split(cv("CC")), *shlex.split(cv("CFLAGS") or ""), *shlex.split(env_cflags),
           *shlex.split(cv("CCSHARED") or ""), *args, "-dM", "-E", probe]
    return set(re.findall(r"^#define (\w+)", _run(cmd, cwd=tmp_path), re.M))


def test_debug_flags_turn_optimisation_off_and_assertions_on(tmp_path):
    if shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None:
        pytest.skip("this machine has no C compiler")
    normal = _compile_args()
    debug = _compile_args(LOGKIT_DEBUG="1")
    assert [a for a in normal if a.startswith("-O")] == ["-O2"]
    assert [a for a in debug if a.startswith("-O")] == ["-O0"] and "-g" in debug
    # Even after an -O3 in $CFLAGS and Python's own -O and -DNDEBUG:
    assert "__OPTIMIZE__" in _compiler_macros(normal, tmp_path, "-O3")
    debug_macros = _compiler_macros(debug, tmp_path, "-O3")
    assert "__OPTIMIZE__" not in debug_macros and "NDEBUG" not in debug_macros
