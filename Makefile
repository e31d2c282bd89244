# logkit: `make demo` and `make test` do all set-up on a fresh machine
# (Python 3.11, gcc and the Python headers are all they need).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.deps-installed
SOURCES := $(wildcard pyx/logkit/*.pyx pyx/logkit/*.pxd pyx/logkit/*.pxi pyx/include/*.h) setup.py
# build_ext also makes the man page from the command's argument definitions
# (logkit/man/logkit.1): a changed option remakes it (the modules compile only
# when their own sources changed).
MAN_SOURCES := $(wildcard logkit/cli/*.py) logkit/select.py

.PHONY: all build debug test demo bench soak fuzz clean distclean

all: build

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "setuptools>=77" "Cython>=3.0" blake3 pycryptodome pytest pytest-xdist hypothesis cryptography-vectors build structlog loguru
	touch $(STAMP)

# The core is compiled once.  The editable install registers the package, the
# `logkit` command and the entry points with the venv, and builds the core in
# place (logkit/*.so); it runs again only when the package's metadata changes.
# After an edit of the Cython or C sources, build_ext --inplace rebuilds just
# the modules whose sources changed.  LOGKIT_BUILD_BENCH=1 adds logkit._bench,
# which the benchmarks and tests/test_docs.py use and no installed package has.
$(VENV)/.installed: $(STAMP) pyproject.toml setup.py
	LOGKIT_BUILD_BENCH=1 $(PIP) install --quiet --no-build-isolation -e .
	touch $@

# --force after `make debug`, whose modules are newer than their sources.
$(VENV)/.built: $(VENV)/.installed $(SOURCES) $(MAN_SOURCES)
	LOGKIT_BUILD_BENCH=1 $(PY) setup.py --quiet build_ext --inplace $(if $(wildcard $(VENV)/.debug),--force)
	rm -f $(VENV)/.debug
	touch $@

build: $(VENV)/.built

# Debug build: -O0 -g, assertions on, for gdb and sanitizers (setup.py's
# LOGKIT_DEBUG: setup.py alone sets the optimisation level).  The editable
# install rebuilds every module; `make build` then goes back to -O2.
debug: $(STAMP)
	LOGKIT_DEBUG=1 LOGKIT_BUILD_BENCH=1 $(PIP) install --quiet --no-build-isolation -e .
	touch $(VENV)/.installed $(VENV)/.debug
	rm -f $(VENV)/.built

# Three workers, one test file each at a time (module fixtures stay whole):
# most tests wait on real processes, so this fits two cores.
test: build
	$(PY) -m pytest -q -n 3 --dist loadfile tests

demo: build
	$(PY) demo/demo.py

bench: build
	$(PY) bench/run_all.py

# The long runs behind the bounded samples `make test` takes (docs/reliability.md).
# soak: the crash matrix, 10,000 cases, a table by injection point.
SOAK_CASES ?= 10000
soak: build
	$(PY) tests/soak.py --cases $(SOAK_CASES)

# fuzz: every target, coverage-guided by atheris (installed here, not for `make test`).
FUZZ_SECONDS ?= 600
fuzz: build
	$(PIP) install --quiet atheris
	$(PY) tests/fuzz/run.py --engine atheris --seconds $(FUZZ_SECONDS)

clean:
	rm -rf build pyx/logkit/*.c logkit/*.so logkit/*.c logkit/man demo-logs .pytest_cache .hypothesis
	rm -f $(VENV)/.built

distclean: clean
	rm -rf $(VENV) *.egg-info dist
