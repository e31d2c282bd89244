"""Build logkit: the package, the built-in backends (installed as logkit.backends)
and the Cython core (pyx/ mirrors the package, so other Cython modules can
`cimport logkit._segment`).  Two environment variables change the build:
LOGKIT_DEBUG=1 compiles at -O0 with assertions on (`make debug`), and
LOGKIT_BUILD_BENCH=1 adds logkit._bench, the benchmarks' module, which is never
part of an installed package (`make build` sets it for the in-place build)."""
import glob
import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}

HEADERS = sorted(glob.glob("pyx/include/*.h"))
INCLUDED = sorted(glob.glob("pyx/logkit/*.pxi"))    # textually part of _segment.pyx


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def compile_args() -> list[str]:
    """The C flags of every module.  They come after Python's own CFLAGS and
    the CFLAGS of the environment on the compiler's command line, so this is
    the one place that sets the optimisation level: the last -O wins."""
    if _env_flag("LOGKIT_DEBUG"):
        level = ["-O0", "-g", "-UNDEBUG"]      # for gdb and sanitizers, assert() on
    else:
        level = ["-O2"]
    return ["-std=gnu11", "-Wno-unused-function", *level]


def modules() -> list[str]:
    names = ["_segment", "_handler", "_crypto", "_scan"]
    if _env_flag("LOGKIT_BUILD_BENCH"):
        names.append("_bench")
    return names


class BuildExt(build_ext):
    """Cythonizes when the modules are built, not when setup.py is read, so an
    sdist is made without running Cython, and ships no generated C.  Both steps
    use every core (Cython in processes, the C compiler in threads)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def run(self):
        from Cython.Build import cythonize

        generated = cythonize(self.extensions, include_path=["pyx"],
                              compiler_directives=DIRECTIVES,
                              nthreads=os.cpu_count() or 1, quiet=True)
        sources = {ext.name: ext.sources for ext in generated}
        for ext in self.extensions:       # setuptools keeps its own state on these objects
            ext.sources = sources[ext.name]
        super().run()
        self.man_page()

    def man_page(self):
        """logkit/man/logkit.1, made by the built package itself from its
        argument definitions (logkit/cli/man_cmd.py), so the page installed
        is the one of the commands installed.  It needs the compiled modules,
        hence here, after they are built."""
        root = os.path.abspath("." if self.inplace else self.build_lib)
        target = os.path.join(root, "logkit", "man", "logkit.1")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        subprocess.run([sys.executable, "-m", "logkit.cli.man_cmd", target], cwd=root, env=env, check=True)


class BuildPy(build_py):
    """Installs the C-level API with the package: the .pxd files beside the
    modules they declare (Cython finds them on sys.path) and the C headers they
    include in logkit/include (logkit.get_include())."""

    def _c_api(self) -> list[tuple[str, str]]:
        pxd = sorted(glob.glob("pyx/logkit/*.pxd"))
        return ([(p, os.path.join("logkit", os.path.basename(p))) for p in pxd]
                + [(h, os.path.join("logkit", "include", os.path.basename(h))) for h in HEADERS])

    def run(self):
        super().run()
        if self.editable_mode:        # an editable install reads them from pyx/
            return
        for src, dst in self._c_api():
            target = os.path.join(self.build_lib, dst)
            self.mkpath(os.path.dirname(target))
            self.copy_file(src, target)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if not self.editable_mode:
            outputs += [os.path.join(self.build_lib, dst) for _, dst in self._c_api()]
        return outputs


class Sdist(sdist):
    """Leaves out the C that Cython generated, even where an old
    logkit.egg-info/SOURCES.txt still lists it: setuptools adds every file an
    existing SOURCES.txt names, and setup.py once cythonized when it was read."""

    def make_distribution(self):
        self.filelist.exclude_pattern(r"^pyx/.*\.c$", is_regex=True)
        super().make_distribution()


# setuptools runs this file as __main__; tests/test_packaging.py imports it for compile_args().
if __name__ == "__main__":
    setup(
        packages=["logkit", "logkit.backends", "logkit.cli"],
        package_dir={"logkit": "logkit", "logkit.backends": "backends"},
        package_data={"logkit": ["py.typed", "*.pyi"]},
        exclude_package_data={} if _env_flag("LOGKIT_BUILD_BENCH") else {"logkit": ["_bench.pyi"]},
        ext_modules=[
            Extension(f"logkit.{name}", [f"pyx/logkit/{name}.pyx"],
                      include_dirs=["pyx/include"], depends=HEADERS + INCLUDED,
                      extra_compile_args=compile_args())
            for name in modules()
        ],
        cmdclass={"build_ext": BuildExt, "build_py": BuildPy, "sdist": Sdist},
        zip_safe=False,
    )
