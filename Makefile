# make demo  : create .venv if missing, install neurosim, run the bundled demo
# make test  : create .venv if missing, install neurosim with [dev,torch] (torch pinned), run all tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: demo test venv clean

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

clean:
	rm -rf build dist *.egg-info .pytest_cache
