# Two commands do everything: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lab docs lint format clean-demo

# the venv; in a git checkout, nbstripout as the .gitattributes filter (outputs never reach a
# commit; the filter runs this venv's python by its absolute path); your own copies of the
# numbered notebooks in notebooks/ (kept when there). The stamp holds the checkout's path:
# after the checkout moved, `make` installs again (the editable install and the git filter
# name the old path). Tools run as `python -m ...`: a moved venv's scripts name the old path.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[dev]"
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    $(PY) -m nbstripout --install --attributes .gitattributes; fi
	$(PY) -m pixda_core notebooks $(CURDIR)/notebooks
	echo "$(CURDIR)" > $(STAMP)

ifneq ($(file < $(STAMP)),$(CURDIR))
.PHONY: $(STAMP)
endif

demo: $(STAMP)
	$(PY) -m pixda_core demo --data data/toy --out results/demo

# JupyterLab on your copies of the notebooks (sweeps run the kit's own, pixda_core/notebooks/)
lab: $(STAMP)
	$(PY) -m pixda_core notebooks $(CURDIR)/notebooks
	$(PY) -m jupyterlab $(CURDIR)/notebooks

# the documentation site on http://127.0.0.1:8000 (docs/, mkdocs.yml), rebuilt on every save
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

# three workers (pytest-xdist) on the 2-core machine: a good part of the suite waits on other
# processes (notebook kernels, SLURM jobs, the browser, signals), and a third worker fills that
# time; a test file on one worker, so its module fixtures are built once (the session's are
# built once for all: tests/conftest.py), the longest files first in the order tests/conftest.py
# gives; the 15 slowest tests printed, so a regression shows
test: $(STAMP)
	$(PY) -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder --durations=15

# the unit layer (no dataset, no training) without its slow renders and generated tables, on
# two workers: under 30 s
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "unit and not slow"

lint: $(STAMP)
	$(PY) -m ruff check pixda_core tests data_prep benchmarks run.py
	$(PY) -m ruff format --check pixda_core tests data_prep benchmarks run.py

format: $(STAMP)
	$(PY) -m ruff format pixda_core tests data_prep benchmarks run.py
	$(PY) -m ruff check --fix pixda_core tests data_prep benchmarks run.py

clean-demo:
	rm -rf results/demo data/toy
