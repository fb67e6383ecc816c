# swallow-trt: thin wrappers over the `swallow-trt` commands. `make help` lists every target and variable.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3# interpreter that creates the virtual environment (>= 3.10)
VENV ?= .venv# virtual environment directory
TORCH ?= torch==2.13.0# torch requirement installed first (the CPU wheel here; a CUDA build on GPU hosts)
WORK ?= work# where demo and make-driven outputs go
PYTEST_ARGS ?=# extra pytest arguments, e.g. -k tokenizer or -m "not slow"

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CLI := $(BIN)/swallow-trt
DEMO := $(WORK)/demo

.PHONY: help setup test lint demo clean

help: ## Show the targets and variables
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-8s %s\n", $$1, $$2}'
	@echo "Variables (NAME=default):"
	@grep -E '^[A-Z_]+ \?=' $(MAKEFILE_LIST) | sed -E 's/^([A-Z_]+) \?= ?([^#]*)# ?(.*)/  \1=\2\t\3/' | expand -t 28

setup: $(STAMP) ## Create .venv and install the project with dev tools (quick when up to date)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

test: setup ## Run the test suite (pytest)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup ## Check the code with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: setup ## Run the toolkit end to end on a tiny Swallow-architecture model on the CPU
	$(CLI) tokenizer
	$(CLI) tiny-model --output $(DEMO)/tiny-swallow --overwrite
	$(CLI) models

clean: ## Remove the virtual environment, caches and make-driven outputs
	rm -rf $(VENV) $(WORK) .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
