# swallow-trt: thin wrappers over the `swallow-trt` commands. `make help` lists every target and variable.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3# interpreter that creates the virtual environment (>= 3.10)
VENV ?= .venv# virtual environment directory
TORCH ?= torch==2.13.0# torch requirement installed first (the CPU wheel here; a CUDA build on GPU hosts)
WORK ?= work# where demo and make-driven outputs go
PYTEST_ARGS ?=# extra pytest arguments, e.g. -k tokenizer or -m "not slow"
TEST_WORKERS ?= auto# pytest-xdist workers for `make test`, one test file each at a time (0: none)
MODEL ?= Llama-3.1-Swallow-8B-Instruct-v0.5# hub id, short name or local HF model dir (engine, plan)
REVISION ?= main# hub branch, tag or commit that `make engine` fetches (recorded as a commit)
QUANT ?= none# none | fp8 | int4_awq | int8_wo | int4_wo
KV_CACHE_DTYPE ?= auto# auto (bf16) | fp8
TP ?= 1# tensor parallelism
PP ?= 1# pipeline parallelism
GPU ?= h100# GPU profile: h100 h100-pcie h100-nvl h200 gh200 gh200-144g a100-80g a100-40g l40s l4 a10g b200
MAX_SEQ_LEN ?= 8192# engine max_seq_len (always passed explicitly)
MAX_BATCH_SIZE ?= 256# engine max_batch_size
DEVICE ?= $(if $(shell command -v nvidia-smi 2>/dev/null),cuda,cpu)# where `make engine` calibrates: cuda | cpu (default: cuda if nvidia-smi is here)
DRY_RUN ?=# 1 = make engine prints each command (fetch, convert, build) and runs none: no download, conversion or calibration
TARGET ?= engine# engine (trtllm-build, TensorRT-LLM <= 1.3.0rc20) | pytorch (PyTorch backend) | auto (by version)
CHOICE ?=# TARGET=pytorch: a deployment choice (plan --save); its GPU, TP/PP, batch and KV settings replace these
REPO ?= $(WORK)/repo# Triton model repository written by `make repo` and served by `make serve`
ENGINE ?=# engine dir for `make repo` (C++ tensorrtllm backend); empty = CPU engine on CHECKPOINT
CHECKPOINT ?= $(WORK)/demo/chain-ckpt# TensorRT-LLM checkpoint served by the CPU engine when ENGINE is empty
TOKENIZER ?= $(WORK)/demo/chain-swallow# tokenizer directory copied into the repository
HOST ?= 127.0.0.1# address `make serve` binds (HTTP, gRPC, metrics, OpenAI); 0.0.0.0 = every interface
HTTP_PORT ?= 8000# tritonserver HTTP port (gRPC = +1, metrics = +2)
OPENAI_PORT ?= 9000# the OpenAI-compatible API `make serve` opens beside tritonserver
BENCH_URL ?= 127.0.0.1:8001# server for `make bench` (grpc host:port; http/openai: http://host:port)
BENCH_PROTOCOL ?= grpc# grpc | http | openai
BENCH_MODEL ?=# model name on the server (default: ensemble, else tensorrt_llm_bls)
BENCH_LABEL ?= local# this build's name in reports (fp8-tp1, int4-tp1, ...)
BENCH_ARGS ?= --concurrency 1,4,16 --num-requests 64 --isl 128 --osl 128 --ignore-eos# more bench options
RESULTS ?= $(WORK)/bench# results directories, one per BENCH_LABEL; `make report` compares them all

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

# Every environment is installed by uv with this machine's pip configuration (tools/uv_pip.py): the same
# packages pip would pick, in a fraction of pip's time. Bytecode is compiled at install, on every core, where
# many processes import the packages: Python may be told not to write it on import (PYTHONDONTWRITEBYTECODE),
# and would then recompile in each process.
UV_VERSION := 0.13.9
UV_INSTALL := $(BIN)/python tools/uv_pip.py install --quiet
UV_INSTALL_COMPILED := $(UV_INSTALL) --compile-bytecode --python

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV_INSTALL_COMPILED) $(BIN)/python "$(TORCH)" -e ".[dev]"
	touch $@

test: setup ## Run the test suite (pytest; builds .venv-modelopt and .venv-dynamo for the peer and Dynamo tests)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: setup ## Check the code with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole pipeline on the CPU: tiny model -> convert (bf16, and FP8 calibrated on Japanese) -> verify ->
# (what a GPU host would build) -> the chain model (it answers a fixed Japanese sentence full of characters
# split across tokens) -> Triton repository -> real tritonserver + OpenAI API -> chat -> conform -> benchmark
# -> report.
DEMO_PORT := 18000
demo: setup ## Run the toolkit end to end on a tiny Swallow-architecture model on the CPU
	$(CLI) tokenizer
	$(CLI) tiny-model --output $(DEMO)/tiny-swallow --overwrite
	$(CLI) convert --model-dir $(DEMO)/tiny-swallow --output $(DEMO)/tiny-ckpt --tp 1 --overwrite
	$(CLI) verify --model-dir $(DEMO)/tiny-swallow --checkpoint $(DEMO)/tiny-ckpt
	$(CLI) convert --model-dir $(DEMO)/tiny-swallow --output $(DEMO)/tiny-ckpt-fp8 --quant fp8 --kv-cache-dtype fp8 \
		--calib-size 16 --calib-seq-len 64 --overwrite
	$(CLI) verify --model-dir $(DEMO)/tiny-swallow --checkpoint $(DEMO)/tiny-ckpt-fp8
	$(CLI) build --checkpoint $(DEMO)/tiny-ckpt-fp8 --output $(DEMO)/tiny-engine-fp8 --gpu h100 --max-seq-len 4096 --dry-run
	$(CLI) tiny-model --preset chain --output $(DEMO)/chain-swallow --overwrite
	$(CLI) convert --model-dir $(DEMO)/chain-swallow --output $(DEMO)/chain-ckpt --overwrite
	$(CLI) repo --output $(DEMO)/repo --tokenizer $(DEMO)/chain-swallow --checkpoint $(DEMO)/chain-ckpt --overwrite
	$(CLI) serve --repo $(DEMO)/repo --http-port $(DEMO_PORT) --grpc-port $$(($(DEMO_PORT)+1)) \
		--metrics-port $$(($(DEMO_PORT)+2)) --openai-port $$(($(DEMO_PORT)+3)) --log $(DEMO)/triton.log & server=$$!; \
	trap 'kill $$server; wait $$server' EXIT; \
	$(CLI) chat --url http://127.0.0.1:$(DEMO_PORT) --wait 300 --max-tokens 24 "東京の紅葉した公園で" && \
	$(CLI) chat --protocol openai --url http://127.0.0.1:$$(($(DEMO_PORT)+3)) --wait 60 --max-tokens 24 \
		"東京の紅葉した公園で" && \
	$(CLI) conform http://127.0.0.1:$(DEMO_PORT) --grpc-url 127.0.0.1:$$(($(DEMO_PORT)+1)) --concurrency 4 && \
	$(CLI) conform http://127.0.0.1:$$(($(DEMO_PORT)+3)) --concurrency 4 && \
	$(CLI) bench --protocol grpc --url 127.0.0.1:$$(($(DEMO_PORT)+1)) --concurrency 1,4 --num-requests 16 \
		--warmup 2 --dataset ja-chat --osl 32 --ignore-eos --label cpu-grpc --output $(DEMO)/bench/cpu-grpc \
		--overwrite --no-progress && \
	$(CLI) bench --protocol http --url http://127.0.0.1:$(DEMO_PORT) --concurrency 1,4 --num-requests 16 \
		--warmup 2 --isl 64 --osl 32 --ignore-eos --label cpu-http --output $(DEMO)/bench/cpu-http \
		--overwrite --no-progress && \
	$(CLI) bench --protocol openai --url http://127.0.0.1:$$(($(DEMO_PORT)+3)) --concurrency 1,4 --num-requests 16 \
		--warmup 2 --dataset ja-chat --osl 32 --ignore-eos --label cpu-openai --output $(DEMO)/bench/cpu-openai \
		--overwrite --no-progress
	$(CLI) report $(DEMO)/bench/cpu-grpc $(DEMO)/bench/cpu-http $(DEMO)/bench/cpu-openai --output $(DEMO)/report --overwrite
	@echo "Demo done: the report is $(DEMO)/report/REPORT.md"

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
		--tp $(TP) --pp $(PP) --max-seq-len $(MAX_SEQ_LEN) --max-batch-size $(MAX_BATCH_SIZE) --target $(TARGET)

# TARGET=engine: convert to a TRT-LLM checkpoint, then trtllm-build. Without a GPU / trtllm-build,
# `swallow-trt build` exits 3 after printing the command for the GPU host, so `make engine` fails there:
# the engine was NOT built.
# TARGET=pytorch: nothing is compiled; `build --target pytorch` writes $(ENGINE_WORK)/deploy (LLM-API
# options + manifest) around the checkpoint: the HF directory itself for QUANT=none, else the ModelOpt
# unified checkpoint of `convert --target pytorch`. TARGET=auto picks one by the installed TensorRT-LLM.
PT_CKPT := $(ENGINE_WORK)/checkpoint-pytorch
PT_KV := $(if $(filter none,$(QUANT)),$(KV_CACHE_DTYPE),auto)
PT_BUILD_ARGS := $(if $(CHOICE),--choice $(CHOICE),$(BUILD_ARGS) --tp $(TP) --pp $(PP) --kv-cache-dtype $(PT_KV))
# DRY_RUN=1: each command is printed ("would run: ...") instead of run, so nothing is downloaded, converted,
# calibrated or built; the checks on what exists already are the same as in a real run.
RUN := $(if $(DRY_RUN),echo would run:,)
engine: setup ## fetch (unless MODEL is a dir) -> convert -> build into $(WORK)/<model>-<quant>-tp<T>pp<P> (TARGET=)
	@if [ -d "$(MODEL)" ]; then echo "MODEL is a local directory ($(MODEL)): nothing to fetch"; \
	else $(RUN) $(CLI) fetch $(MODEL) --revision $(REVISION) --output $(HF_DIR); fi
	@target="$(TARGET)"; \
	if [ "$$target" = auto ]; then \
		target=$$($(BIN)/python -c "from trt_build.common.targets import resolve_target; print(resolve_target('auto'))") \
			|| exit 1; fi; \
	case "$$target" in \
	engine) \
		if [ -n "$(CHOICE)" ]; then echo "CHOICE is for TARGET=pytorch (the engine target takes its settings from the checkpoint)"; exit 2; fi; \
		if [ -f $(ENGINE_WORK)/checkpoint/config.json ]; then echo "checkpoint exists: $(ENGINE_WORK)/checkpoint"; \
		else $(RUN) $(CLI) convert --model-dir $(HF_DIR) --output $(ENGINE_WORK)/checkpoint --quant $(QUANT) \
			--tp $(TP) --pp $(PP) $(KV_FLAG) --device $(DEVICE) || exit 1; fi; \
		if [ -f $(ENGINE_WORK)/engine/manifest.json ]; then \
			echo "engine exists: $(ENGINE_WORK)/engine (delete it to rebuild)"; \
		else $(RUN) $(CLI) build --checkpoint $(ENGINE_WORK)/checkpoint --output $(ENGINE_WORK)/engine \
			$(BUILD_ARGS); fi ;; \
	pytorch) \
		ckpt=$(HF_DIR); \
		if [ "$(QUANT)" != none ]; then ckpt=$(PT_CKPT); \
			if [ -f $(PT_CKPT)/config.json ]; then echo "checkpoint exists: $(PT_CKPT)"; \
			else $(RUN) $(CLI) convert --model-dir $(HF_DIR) --output $(PT_CKPT) --target pytorch --quant $(QUANT) \
				$(KV_FLAG) --device $(DEVICE) || exit 1; fi; fi; \
		$(RUN) $(CLI) build --target pytorch --checkpoint $$ckpt --output $(ENGINE_WORK)/deploy $(PT_BUILD_ARGS) \
			--overwrite ;; \
	*) echo "TARGET must be engine, pytorch or auto (got $$target)"; exit 2 ;; \
	esac

# ---- serving and benchmarking
.PHONY: repo serve bench report bench-accuracy bench-isolation bench-http-gate

repo: setup ## Write REPO (ENGINE=dir: C++ tensorrtllm backend; else the CPU engine on CHECKPOINT)
	$(CLI) repo --output $(REPO) --tokenizer $(TOKENIZER) \
		$(if $(ENGINE),--engine $(ENGINE),--checkpoint $(CHECKPOINT)) --overwrite

serve: setup ## Serve REPO with tritonserver (and the OpenAI API on OPENAI_PORT) until Ctrl-C
	$(CLI) serve --repo $(REPO) --host $(HOST) --http-port $(HTTP_PORT) --openai-port $(OPENAI_PORT)

bench: setup ## Benchmark a running server into $(RESULTS)/$(BENCH_LABEL)
	$(CLI) bench --url $(BENCH_URL) --protocol $(BENCH_PROTOCOL) $(if $(BENCH_MODEL),--model $(BENCH_MODEL)) --label $(BENCH_LABEL) \
		$(BENCH_ARGS) --output $(RESULTS)/$(BENCH_LABEL) --overwrite

report: setup ## Compare every results directory in RESULTS into $(WORK)/report/REPORT.md
	$(CLI) report $(wildcard $(RESULTS)/*) --output $(WORK)/report --overwrite

# Wall-clock checks are benchmarks, not unit tests: run them on an idle machine.
bench-accuracy: setup ## Known timing in, `bench`'s measured TTFT/ITL/TPOT/E2E/tok/s out, every protocol (~2 min)
	$(BIN)/python -m benchmarks.perf.bench_accuracy

bench-isolation: setup ## A normal request's latency alone and under each abuse, tokens made after a hang-up (tests marked timing, ~3 min)
	$(BIN)/python -m pytest -m timing -s -p no:cacheprovider tests/test_client_isolation.py
bench-http-gate: setup ## TTFT/ITL/chunks per second through serve's HTTP gate and straight to tritonserver, side by side (~1 min)
	$(BIN)/python -m benchmarks.perf.http_gate_cost

# ---- Dynamo: ai-dynamo 1.6.1 in its own venv (it needs Python 3.10 here: on 3.11+ it depends on aisimulate,
# which only NVIDIA's index serves), for `serve --dynamo` on the CPU and tests/test_dynamo_serve.py. The 3.10
# interpreter is looked for where pyenv keeps it, since a pyenv shim named python3.10 may refuse to run
# (docs/upstream-2026.md §5). `make dynamo` serves the chain model through a real Dynamo graph; `make
# bench-dynamo` compares one mocker worker with two behind the KV router.
DYNAMO_VENV ?= .venv-dynamo# ai-dynamo venv (make passes it to serve --dynamo as SWALLOW_TRT_DYNAMO_VENV)
DYNAMO_PYTHON ?=# Python 3.10 for DYNAMO_VENV [pyenv's 3.10, else python3.10 on PATH]
DYNAMO_PORT ?= 18080# HTTP port of the Dynamo frontend that `make dynamo` starts
DYNAMO_VERSION := 1.6.1
DYNAMO_STAMP := $(DYNAMO_VENV)/.swallow-trt-dynamo-$(DYNAMO_VERSION)
export SWALLOW_TRT_DYNAMO_VENV := $(abspath $(DYNAMO_VENV))
.PHONY: dynamo-env dynamo bench-dynamo
dynamo-env: $(DYNAMO_STAMP) ## ai-dynamo 1.6.1 venv (Python 3.10, ~630 MB, 23 s here from a cold uv cache; quick when present)

$(DYNAMO_STAMP): | $(STAMP)
	@py="$(DYNAMO_PYTHON)"; \
	if [ -z "$$py" ]; then \
		for candidate in "$$(pyenv prefix 3.10 2>/dev/null)/bin/python" \
			$${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python python3.10; do \
			if "$$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
				py=$$candidate; break; fi; \
		done; fi; \
	if [ -z "$$py" ]; then echo "No Python 3.10 found for $(DYNAMO_VENV): set DYNAMO_PYTHON=/path/to/python3.10" >&2; exit 1; fi; \
	test -x $(DYNAMO_VENV)/bin/python || "$$py" -m venv $(DYNAMO_VENV)
	$(UV_INSTALL_COMPILED) $(DYNAMO_VENV)/bin/python "ai-dynamo==$(DYNAMO_VERSION)"
	$(DYNAMO_VENV)/bin/python -c "import importlib.metadata as m, dynamo.llm, zmq; \
		assert m.version('ai-dynamo') == m.version('ai-dynamo-runtime') == '$(DYNAMO_VERSION)', 'unexpected versions'"
	touch $@

DYNAMO_DEMO := $(DEMO)/dynamo
dynamo: setup dynamo-env ## Serve the chain model through a real Dynamo graph (CPU engine) on DYNAMO_PORT until Ctrl-C
	$(CLI) tiny-model --preset chain --output $(DEMO)/chain-swallow --overwrite
	$(CLI) deploy dynamo --checkpoint $(DEMO)/chain-swallow --output $(DYNAMO_DEMO)/deploy --served-model-name swallow \
		--overwrite
	$(CLI) serve --dynamo $(DYNAMO_DEMO)/deploy --engine cpu --http-port $(DYNAMO_PORT)

bench-dynamo: setup dynamo-env ## One mocker worker vs two behind the KV router, same load: req/s and TTFT side by side
	$(CLI) tiny-model --preset chain --output $(DEMO)/chain-swallow --overwrite
	$(BIN)/python -m benchmarks.perf.dynamo_routing $(DEMO)/chain-swallow --output $(DYNAMO_DEMO)/bench

# ---- ModelOpt peer: NVIDIA ModelOpt 0.47.0 in its own venv, exporting the same tiny model on the CPU as
# the reference for `convert --target pytorch` (tests/test_hf_export.py, marker `peer`). torch is pinned so
# the CPU wheel is taken (here from /opt/wheels; elsewhere add --index-url https://download.pytorch.org/whl/cpu
# to MODELOPT_TORCH); diffusers breaks ModelOpt's HF plugins next to transformers 4.57 (docs/modelopt-checkpoint.md §8).
# No bytecode compiled here: one process imports ModelOpt per test run, and compiling the whole 1.7 GB cost 80
# CPU-seconds against 20 more for that import.
MODELOPT_VENV ?= .venv-modelopt
MODELOPT_PYTHON ?= python3.11
MODELOPT_TORCH ?= torch==2.13.0
MODELOPT_STAMP := $(MODELOPT_VENV)/.swallow-trt-modelopt-0.47.0
.PHONY: modelopt-peer
modelopt-peer: $(MODELOPT_STAMP) ## ModelOpt 0.47.0 peer venv for tests/peer (~1.7 GB, 21 s here from a cold uv cache; quick when present)

$(MODELOPT_STAMP): | $(STAMP)
	$(MODELOPT_PYTHON) -m venv $(MODELOPT_VENV)
	$(UV_INSTALL) --python $(MODELOPT_VENV)/bin/python $(MODELOPT_TORCH) "nvidia-modelopt[hf]==0.47.0" \
		"transformers==4.57.6" "datasets<5" safetensors accelerate
	$(MODELOPT_VENV)/bin/python -m pip uninstall -y -q diffusers || true
	$(MODELOPT_VENV)/bin/python -c "import importlib.metadata as m; \
		assert (m.version('nvidia-modelopt'), m.version('transformers')) == ('0.47.0', '4.57.6'), 'unexpected versions'"
	touch $@

# ---- Predictor: NVIDIA AIConfigurator 0.12.0 in its own venv (numpy >= 2.1, Python >= 3.11), run by
# `plan --predict` / `plan --slo` through trt_build/plan/predict/worker.py (docs/upstream-2026.md §6).
PREDICTOR_VENV ?= .venv-aiconfigurator
PREDICTOR_PYTHON ?= python3.11
PREDICTOR_STAMP := $(PREDICTOR_VENV)/.swallow-trt-aiconfigurator-0.12.0
PREDICTOR_CHECK := import importlib.metadata as m; \
	assert m.version('aiconfigurator') == m.version('aiconfigurator-core') == '0.12.0', 'unexpected versions'
.PHONY: predictor
predictor: ## AIConfigurator 0.12.0 venv for plan --predict / --slo (~850 MB, 30 s here from a cold uv cache; quick when present)
	@$(PREDICTOR_VENV)/bin/python -c "$(PREDICTOR_CHECK)" 2>/dev/null || $(MAKE) --no-print-directory $(PREDICTOR_STAMP)

# An existing venv with the right versions (a stamp or not, e.g. one shared by a symlink) is left alone.
$(PREDICTOR_STAMP): | $(STAMP)
	$(PREDICTOR_PYTHON) -m venv $(PREDICTOR_VENV)
	$(UV_INSTALL_COMPILED) $(PREDICTOR_VENV)/bin/python "aiconfigurator==0.12.0" "aiconfigurator-core==0.12.0"
	$(PREDICTOR_VENV)/bin/python -c "$(PREDICTOR_CHECK)"
	touch $@
