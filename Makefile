# make demo  : create .venv if missing, install neurosim, run the bundled demo
# make test  : create .venv if missing, install neurosim with [dev,torch] (torch pinned), run all
#              tests; then create .venv-lava (Python 3.10, lava-nc, numpy<2) and run tests/lava and
#              the backend suite (tests/test_backends.py) on the lava backend there, or say in one
#              line why that part is skipped
# make fuzz  : the fuzz tests of every file reader with FUZZ_EXAMPLES (3000) random examples each
#              instead of the 150 derandomized ones of 'make test'; a file that breaks a reader is
#              kept in tests/data/fuzz/<kind>/ and replayed by every 'make test' from then on
# make notebooks : run every notebook in notebooks/ at full size with nbclient (figures and results
#              to notebooks/figures/; the .ipynb files are not modified, so they stay without
#              outputs). Needs the [dev,torch] install of 'make test'; no network.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=
# lava-nc needs Python 3.10; here it comes from pyenv.
LAVA_PYTHON ?= env PYENV_VERSION=3.10.13 python3.10
LAVA_VENV ?= .venv-lava
FUZZ_EXAMPLES ?= 3000

.PHONY: demo test test-lava fuzz notebooks venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

venv: $(PY)

demo: $(PY)
	$(PIP) install -e .
	$(VENV)/bin/neurosim demo

test: $(PY)
	$(PIP) install -c constraints/test.txt -e '.[dev,torch]'
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) test-lava

test-lava:
	@if $(LAVA_PYTHON) --version >/dev/null 2>&1; then \
		( [ -x $(LAVA_VENV)/bin/python ] || $(LAVA_PYTHON) -m venv $(LAVA_VENV) ) && \
		$(LAVA_VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[lava]' pytest && \
		NEUROSIM_TEST_BACKENDS=lava $(LAVA_VENV)/bin/python -m pytest tests/lava tests/test_backends.py -q; \
	else \
		echo "Lava tests skipped: Python 3.10 ('$(LAVA_PYTHON)') is not available, and lava-nc needs it."; \
	fi

fuzz: $(PY)
	$(PIP) install -c constraints/test.txt -e '.[dev,torch]'
	NEUROSIM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) NEUROSIM_FUZZ_RANDOM=1 NEUROSIM_FUZZ_KEEP=1 \
		$(PY) -m pytest tests/test_fuzz_*.py -q $(PYTEST_ARGS)

notebooks: $(PY)
	$(PY) -m neurosim.experiments --run-notebooks --folder notebooks

clean:
	rm -rf build dist *.egg-info .pytest_cache
