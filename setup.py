"""Build logkit: the package, the built-in backends (installed as logkit.backends)
and the Cython core (pyx/ mirrors the package, so other Cython modules can
`cimport logkit._segment`)."""
from Cython.Build import cythonize
from setuptools import Extension, setup

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}

extensions = [
    Extension(
        "logkit._segment",
        ["pyx/logkit/_segment.pyx"],
        include_dirs=["pyx/include"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wno-unused-function"],
    ),
    Extension(
        "logkit._handler",
        ["pyx/logkit/_handler.pyx"],
        include_dirs=["pyx/include"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wno-unused-function"],
    ),
    Extension(
        "logkit._crypto",
        ["pyx/logkit/_crypto.pyx"],
        include_dirs=["pyx/include"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wno-unused-function"],
    ),
    Extension(
        "logkit._scan",
        ["pyx/logkit/_scan.pyx"],
        include_dirs=["pyx/include"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wno-unused-function"],
    ),
    Extension(
        "logkit._bench",
        ["pyx/logkit/_bench.pyx"],
        include_dirs=["pyx/include"],
        extra_compile_args=["-O2", "-std=gnu11", "-Wno-unused-function"],
    ),
]

setup(
    packages=["logkit", "logkit.backends", "logkit.cli"],
    package_dir={"logkit": "logkit", "logkit.backends": "backends"},
    package_data={"logkit": ["py.typed", "*.pyi"]},
    ext_modules=cythonize(extensions, include_path=["pyx"], compiler_directives=DIRECTIVES),
    zip_safe=False,
)
