# gatewaylab: every target that runs Python depends on .venv, which builds itself.
# `make help` lists the targets. Only Python >= 3.11, make and apt are assumed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ERA    ?= asgi
ARGS   ?=
# Classroom load (loadtests/README.md, "Classroom load"): the workload, the master's address
# for the workers, and the address the master and its era listen on (loopback unless told).
WORKLOAD    ?= hello
MASTER      ?=
MASTER_BIND ?= 127.0.0.1

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint check-notebooks bench serve clean \
        notebooks notebooks-html showdown c10k load load-master load-worker

help: ## list every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.%-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The venv is rebuilt only when pyproject.toml changes (the stamp is older than it).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "gatewaylab needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project with its extras (idempotent)

demo: $(STAMP) ## the main job: the four eras under the same short load, a table and a chart (~1 min)
	$(PY) -m servers demo $(ARGS)

serve: $(STAMP) ## run one era's server: make serve ERA=wsgi ARGS=--trace
	$(PY) -m servers $(ERA) $(ARGS)

# Two pytest workers: the suite starts hundreds of real server processes, and a 2-core
# machine is busy waiting on them, not computing. Every test is safe in parallel.
PYTEST_WORKERS ?= 2

test: $(STAMP) lint ## the whole suite: lint, types, then pytest (PYTEST_WORKERS=2)
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(ARGS)

lint: $(STAMP) check-notebooks ## ruff, mypy, and notebooks committed without outputs
	$(PY) -m ruff check .
	$(PY) -m mypy

check-notebooks: $(STAMP) ## fail if a notebook has outputs (strip: python -m lessons.check_notebooks --strip)
	$(PY) -m lessons.check_notebooks

# A pattern rule: `make lesson-3` runs lesson 3. It works on a terminal (pauses after each
# step) and without one (straight through), as the tests run it.
lesson-%: $(STAMP) ## walk through lesson N live: make lesson-0 [ARGS='--no-pause --step K --record F.svg']
	$(PY) -m lessons $* $(ARGS)

notebooks: $(STAMP) ## open JupyterLab on notebooks/, one notebook per lesson
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $(ARGS)

notebooks-html: $(STAMP) ## execute every notebook, write HTML with outputs to results/notebooks/
	$(VENV)/bin/jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout=120 \
	  --ExecutePreprocessor.kernel_name=python3 --output-dir results/notebooks notebooks/*.ipynb

bench: $(STAMP) ## wrk against our servers and their peers, A B A B, medians and ratios
	$(PY) -m loadtests.bench $(ARGS)

showdown: $(STAMP) ## the eras at 10 to 10,000 locust users; JSON, CSV, charts in results/ (~20 min)
	$(PY) -m loadtests.showdown $(ARGS)

c10k: $(STAMP) ## 10,000 users on a slow route: ASGI must pass, then WSGI and CGI hit their walls
	$(PY) -m loadtests.c10k $(ARGS)

load: $(STAMP) ## classroom: ERA on :8000 and locust's web UI on 127.0.0.1:8089: make load ERA=asgi WORKLOAD=hello
	$(PY) -m loadtests.classroom load --era $(ERA) --workload $(WORKLOAD) $(ARGS)

load-master: $(STAMP) ## classroom, distributed: ERA and a locust master; MASTER_BIND=<your LAN address> opens it
	$(PY) -m loadtests.classroom master --era $(ERA) --workload $(WORKLOAD) --bind $(MASTER_BIND) $(ARGS)

load-worker: $(STAMP) ## classroom, distributed: a locust worker on a student's machine: make load-worker MASTER=host
	$(PY) -m loadtests.classroom worker --master "$(MASTER)" --workload $(WORKLOAD) $(ARGS)

clean: ## remove the venv, caches and results
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache results build *.egg-info
