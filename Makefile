# logkit: `make demo` and `make test` do all set-up on a fresh machine
# (Python 3.11, gcc and the Python headers are all they need).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.deps-installed
SOURCES := $(wildcard pyx/logkit/*.pyx pyx/logkit/*.pxd pyx/logkit/*.pxi pyx/include/*.h) setup.py

.PHONY: all build debug test demo bench soak fuzz clean distclean

all: build

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "setuptools>=64" "Cython>=3.0" wheel blake3 pycryptodome pytest pytest-xdist hypothesis cryptography-vectors
	touch $(STAMP)

# An editable install builds the extension in place and registers the
# package (and, later, its entry points) with the venv.
$(VENV)/.built: $(STAMP) $(SOURCES)
	$(PIP) install --quiet --no-build-isolation -e .
	$(PY) setup.py --quiet build_ext --inplace
	touch $(VENV)/.built

build: $(VENV)/.built

# Debug build: no optimisation, assertions on, for gdb and sanitizers.
debug: $(STAMP)
	CFLAGS="-O0 -g -UNDEBUG" $(PY) setup.py build_ext --inplace --force

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
	rm -rf build pyx/logkit/*.c logkit/*.so logkit/*.c demo-logs .pytest_cache .hypothesis
	rm -f $(VENV)/.built

distclean: clean
	rm -rf $(VENV) *.egg-info
