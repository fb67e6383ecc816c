# swallow-trt: thin wrappers over the `swallow-trt` commands. `make help` lists every target and variable.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3# interpreter that creates the virtual environment (>= 3.10)
VENV ?= .venv# virtual environment directory
TORCH ?= torch==2.13.0# torch requirement installed first (the CPU wheel here; a CUDA build on GPU hosts)
WORK ?= work# where demo and make-driven outputs go
PYTEST_ARGS ?=# extra pytest arguments, e.g. -k tokenizer or -m "not slow"
MODEL ?= Llama-3.1-Swallow-8B-Instruct-v0.5# hub id, short name or local HF model dir (engine, plan)
REVISION ?= main# hub branch, tag or commit that `make engine` fetches (recorded as a commit)
QUANT ?= none# none | fp8 | int4_awq | int8_wo | int4_wo
KV_CACHE_DTYPE ?= auto# auto (bf16) | fp8
TP ?= 1# tensor parallelism
PP ?= 1# pipeline parallelism
GPU ?= h100# GPU profile: h100 h200 a100-80g a100-40g l40s b200
MAX_SEQ_LEN ?= 8192# engine max_seq_len (always passed explicitly)
MAX_BATCH_SIZE ?= 256# engine max_batch_size
DRY_RUN ?=# 1 = make engine prints the trtllm-build command and its reasons instead of building

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

# ---- engines: fetch -> convert -> build (swallow-trt fetch / convert / build), and the memory plan
MODEL_NAME := $(notdir $(patsubst %/,%,$(MODEL)))
KV_SUFFIX := $(if $(filter fp8,$(KV_CACHE_DTYPE)),-fp8kv,)
ENGINE_WORK := $(WORK)/$(MODEL_NAME)-$(QUANT)$(KV_SUFFIX)-tp$(TP)pp$(PP)
HF_DIR := $(if $(wildcard $(MODEL)/config.json),$(MODEL),$(WORK)/hf/$(MODEL_NAME))
KV_FLAG := $(if $(filter fp8,$(KV_CACHE_DTYPE)),--kv-cache-dtype fp8,)
BUILD_ARGS := --gpu $(GPU) --max-seq-len $(MAX_SEQ_LEN) --max-batch-size $(MAX_BATCH_SIZE)

.PHONY: engine plan

plan: setup ## Memory plan: weights and KV cache per GPU, sequences that fit, TP and flags
	$(CLI) plan --model $(MODEL) --gpu $(GPU) --quant $(QUANT) --kv-cache-dtype $(KV_CACHE_DTYPE) \
		--tp $(TP) --pp $(PP) --max-seq-len $(MAX_SEQ_LEN) --max-batch-size $(MAX_BATCH_SIZE)

# Without a GPU / trtllm-build, `swallow-trt build` exits 3 after printing the command for the GPU host,
# so `make engine` fails there: the engine was NOT built.
engine: setup ## fetch (unless MODEL is a dir) -> convert -> build into $(WORK)/<model>-<quant>-tp<T>pp<P>
	@if [ -d "$(MODEL)" ]; then echo "MODEL is a local directory ($(MODEL)): nothing to fetch"; \
	else $(CLI) fetch $(MODEL) --revision $(REVISION) --output $(HF_DIR); fi
	@if [ -f $(ENGINE_WORK)/checkpoint/config.json ]; then echo "checkpoint exists: $(ENGINE_WORK)/checkpoint"; \
	else $(CLI) convert --model-dir $(HF_DIR) --output $(ENGINE_WORK)/checkpoint --quant $(QUANT) \
		--tp $(TP) --pp $(PP) $(KV_FLAG); fi
	@if [ -z "$(DRY_RUN)" ] && [ -f $(ENGINE_WORK)/engine/manifest.json ]; then \
		echo "engine exists: $(ENGINE_WORK)/engine (delete it to rebuild)"; \
	else $(CLI) build --checkpoint $(ENGINE_WORK)/checkpoint --output $(ENGINE_WORK)/engine $(BUILD_ARGS) \
		$(if $(DRY_RUN),--dry-run,); fi
