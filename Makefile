# Two quick-start commands (README):  make run   ·   make test
VENV ?= .venv
PYTHON ?= python3
CORES ?= 2
PY := $(VENV)/bin/python

.PHONY: run test test-slurm lint bench clean-results

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir -e ".[workflow,test]"  # no second copy of torch's GBs in the cache
	touch $@

## run: create the venv, install, and run the workflow on the demo config
run: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES)

## test: create the venv, install, and run the test suite (pytest exit 5 = no tests = failure)
test: $(VENV)/.installed
	$(PY) -m pytest -ra

## test-slurm: profiles/slurm on a throwaway single-node SLURM cluster (root + apt-get; ~8 min;
## also part of `make test`, skipped there with VDWSTACK_SKIP_SLURM=1)
test-slurm: $(VENV)/.installed
	$(PY) -m pytest -ra tests/test_slurm.py

lint: $(VENV)/.installed
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules

## bench: every benchmark (simulation, DRIT, regressors, closed loop, end-to-end demo + one-new-image rerun),
## JSON in benchmarks/results/ (~35 min on 2 cores; BENCH_ARGS=--quick for a 5-min version)
bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean-results:
	rm -rf results .snakemake
