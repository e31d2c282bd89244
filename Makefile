# logkit: `make demo` and `make test` do all set-up on a fresh machine
# (Python 3.11, gcc and the Python headers are all they need).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.deps-installed
SOURCES := $(wildcard pyx/logkit/*.pyx pyx/logkit/*.pxd pyx/include/*.h) setup.py

.PHONY: all build debug test demo bench clean distclean

all: build

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "setuptools>=64" "Cython>=3.0" wheel blake3 pycryptodome pytest hypothesis
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

test: build
	$(PY) -m pytest -q tests

demo: build
	$(PY) demo/demo.py

bench: build
	$(PY) bench/run_all.py

clean:
	rm -rf build pyx/logkit/*.c logkit/*.so logkit/*.c demo-logs .pytest_cache .hypothesis
	rm -f $(VENV)/.built

distclean: clean
	rm -rf $(VENV) *.egg-info
