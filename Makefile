# Every target builds .venv from nothing when it is missing or stale (pyproject or constraints changed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: help venv lint test test-slow test-slurm test-all train smoke bench agreement clean
# a bare `make` lists the targets (it would otherwise build the first rule, .venv, without a word)
.DEFAULT_GOAL := help

help:                     ## this list: every target and what it does
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)            ## .venv with the project and its dev tools (every target builds it when missing or stale)

lint: $(STAMP)            ## ruff (pyflakes, import order) and the layers of pyproject's import-linter contract
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

# Two pytest workers (pytest-xdist): most of a test is single-threaded Python (Hydra, Lightning's setup, a
# subprocess starting), so two processes keep both cores busy where one leaves one idle. JOBS=0: all in this
# one process (what --pdb needs).
JOBS ?= 2

test: $(STAMP)            ## the fast suite (CPU, synthetic data and small real heads), ~7 min on 2 cores
	$(BIN)/python -m pytest -n $(JOBS) --dist worksteal $(ARGS)

test-slow: $(STAMP)       ## real-data runs on ../shared/data (minutes each)
	$(BIN)/python -m pytest -m slow $(ARGS)

test-slurm: $(STAMP)      ## launcher=slurm on a real single-node SLURM cluster it starts and stops (root, apt-get)
	bash tests/slurm/run.sh $(ARGS)

test-all: $(STAMP)        ## the fast suite and the slow one together
	$(BIN)/python -m pytest -m "slow or not slow" $(ARGS)

train: $(STAMP)           ## All-CNN-C on CIFAR-10 with the paper's protocol; make train ARGS="optimizer.lr=0.1"
	$(BIN)/python -m allconv_sweep $(ARGS)

smoke: $(STAMP)           ## about a minute on a CPU, no download
	$(BIN)/python -m allconv_sweep experiment=smoke $(ARGS)

bench: $(STAMP)           ## images/s: the framework against a plain PyTorch loop (benchmarks/README.md)
	$(BIN)/python benchmarks/throughput.py $(ARGS)

agreement: $(STAMP)       ## do channels_last / compile / bf16 / fp16 change results? short real-data runs vs fp32
	$(BIN)/python benchmarks/agreement.py $(ARGS)

clean:                    ## remove .venv and pytest's cache
	rm -rf $(VENV) .pytest_cache
