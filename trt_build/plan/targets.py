"""The planner's targets: what each TensorRT-LLM target deploys, refuses, recommends and runs.

  engine   TRT-LLM checkpoint -> trtllm-build -> TensorRT engine: a 2 GiB runtime, TensorRT-LLM's default
           KV fraction, refusals / warnings / flags (with reasons) from build/trtllm_build_rules.py.
  pytorch  TensorRT-LLM's PyTorch backend on a HF / ModelOpt checkpoint: the same weights, a 3 GiB runtime
           plus the CUDA graphs its options capture, and the KV fraction, refusals, warnings and options
           (with reasons) from build/llmapi_options.py. It also plans NVFP4 (Blackwell only).
Every setting comes from composing the request `build` would compose (the trtllm-build flags, the LLM-API
options), so a plan and a build cannot disagree. A target is a row of TARGETS; `--target auto` picks one by
the installed TensorRT-LLM version (common/targets.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trt_build.build.limits import KV_CACHE_FREE_GPU_MEM_FRACTION
from trt_build.build.llmapi_options import OptionsRequest, compose_options, flat_keys
from trt_build.build.run import BuildOptions, deployment_request, engine_request
from trt_build.build.trtllm_build_rules import BuildRequest, compose
from trt_build.plan.memory import GIB, Scenario, StageMemory, memory, runtime_reserve
from trt_build.quant.schemes import ENGINE, pytorch_backend_schemes, schemes_for

Settings = list[tuple[list[str], str]]  # recommended settings, each with its reason


def default_kv_fraction(s: Scenario) -> float:
    """TensorRT-LLM's own kv_cache_free_gpu_mem_fraction, whatever the scenario."""
    return KV_CACHE_FREE_GPU_MEM_FRACTION


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    runtime_bytes: int  # CUDA context, runtime libraries and workspaces [assumed]
    compose: Callable[[Scenario], Any]  # a composition with .refusals, .warnings and .reasons
    settings: Callable[[Any], Settings]  # the composition's .reasons as (settings, reason)
    command: Callable[[Scenario], str]
    quants: tuple[str, ...]  # --quant names this target deploys
    quant_refusal: str  # for any other --quant; may use {quant} and {quants}
    kv_fraction: Callable[[Scenario], float] = default_kv_fraction
    cuda_graphs: Callable[[Scenario], int] | None = None  # how many graphs it captures; None: none
    settings_title: str = "trtllm-build flags"

    def checks(self, s: Scenario) -> tuple[list[str], list[str]]:
        """(refusals, warnings) of this target for the scenario."""
        if s.quant.name not in self.quants:
            return [self.quant_refusal.format(quant=s.quant.name, quants=", ".join(self.quants))], []
        composition = self.compose(s)
        return composition.refusals, composition.warnings

    def flags(self, s: Scenario) -> Settings:
        return self.settings(self.compose(s).reasons)

    def reserve(self, s: Scenario, stage: int) -> dict[str, int]:
        graphs = self.cuda_graphs(s) if self.cuda_graphs else None
        return runtime_reserve(s, stage, self.runtime_bytes, graphs)

    def memory(self, s: Scenario) -> tuple[list[StageMemory], int]:
        return memory(s, self.reserve, self.kv_fraction)


def make_command(s: Scenario, target_variable: str, fp8_kv_cache: bool) -> str:
    """The `make engine` line that builds this scenario."""
    kv = " KV_CACHE_DTYPE=fp8" if fp8_kv_cache else ""
    return (
        f"make engine {target_variable}MODEL={s.model.name} QUANT={s.quant.name}{kv} TP={s.tp} PP={s.pp} "
        f"GPU={s.gpu.name} MAX_SEQ_LEN={s.max_seq_len} MAX_BATCH_SIZE={s.max_batch_size}"
    )


def build_options(s: Scenario, target: str, kv_cache_dtype: str = "auto") -> BuildOptions:
    """What `swallow-trt build` is asked for to build this scenario (what the `make engine` line passes)."""
    return BuildOptions(
        checkpoint=Path("<checkpoint>"),
        output=Path("<engine>"),
        gpu_name=s.gpu.name,
        gpu=s.gpu,
        max_batch_size=s.max_batch_size,
        max_seq_len=s.max_seq_len,
        max_num_tokens=s.max_num_tokens,
        target=target,
        tp=s.tp,
        pp=s.pp,
        kv_cache_dtype=kv_cache_dtype,
    )


# ---------------------------------------------------------------- engine


def scenario_engine_request(s: Scenario) -> BuildRequest:
    """The build's request, for the checkpoint `convert` writes for this scenario."""
    return engine_request(build_options(s, "engine"), s.quant.quant_algo, s.kv_cache_quant_algo, s.tp, s.pp)


def engine_command(s: Scenario) -> str:
    return make_command(s, "", s.kv_cache_quant_algo == "FP8")


# ---------------------------------------------------------------- pytorch


def scenario_options_request(s: Scenario) -> OptionsRequest:
    """The pytorch target's options for a scenario (a ModelOpt checkpoint's KV format is its own)."""
    forced = s.kv_cache_quant_algo == "FP8" and s.model.kv_cache_quant_algo != "FP8"
    own_kv = s.model.source == "modelopt-checkpoint"  # else: the checkpoint convert would export
    return deployment_request(
        build_options(s, "pytorch", "fp8" if forced else "auto"),
        s.arch,
        s.quant.quant_algo,
        s.model.kv_cache_quant_algo if own_kv else s.kv_cache_quant_algo,
    )


def pytorch_command(s: Scenario) -> str:
    return make_command(s, "TARGET=pytorch ", scenario_options_request(s).kv_cache_dtype == "fp8")


def pytorch_kv_fraction(s: Scenario) -> float:
    return compose_options(scenario_options_request(s)).options["kv_cache_config"]["free_gpu_memory_fraction"]


def pytorch_cuda_graphs(s: Scenario) -> int:
    return len(compose_options(scenario_options_request(s)).options["cuda_graph_config"]["batch_sizes"])


TARGETS: dict[str, Target] = {
    "engine": Target(
        name="engine",
        description="TRT-LLM checkpoint -> trtllm-build -> TensorRT engine -> Triton tensorrtllm backend",
        runtime_bytes=2 * GIB,  # CUDA context, TensorRT runtime, cuBLAS and NCCL workspaces [assumed]
        compose=lambda s: compose(scenario_engine_request(s)),
        settings=lambda reasons: reasons,
        command=engine_command,
        quants=tuple(schemes_for(ENGINE)),
        quant_refusal="the engine target does not build {quant}; plan it with --target pytorch.",
    ),
    "pytorch": Target(
        name="pytorch",
        description="HF / ModelOpt checkpoint -> LLM-API options -> Triton llmapi model or trtllm-serve",
        runtime_bytes=3 * GIB,  # CUDA context, PyTorch caching allocator, NCCL [assumed]
        compose=lambda s: compose_options(scenario_options_request(s)),
        settings=lambda reasons: [([", ".join(flat_keys(values))], reason) for values, reason in reasons],
        command=pytorch_command,
        quants=tuple(pytorch_backend_schemes()),
        quant_refusal="the pytorch target deploys {quants}, not {quant}.",
        kv_fraction=pytorch_kv_fraction,
        cuda_graphs=pytorch_cuda_graphs,
        settings_title="LLM-API options",
    ),
}
