# make demo  : create .venv if missing, install neurosim, run the bundled demo
# make test  : create .venv if missing, install neurosim with [dev,torch] (torch pinned), run all tests
# make notebooks : run every notebook in notebooks/ at full size with nbclient (figures and results
#              to notebooks/figures/; the .ipynb files are not modified, so they stay without
#              outputs). Needs the [dev,torch] install of 'make test'; no network.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: demo test notebooks venv clean

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

notebooks: $(PY)
	$(PY) -m neurosim.experiments --run-notebooks --folder notebooks

clean:
	rm -rf build dist *.egg-info .pytest_cache
