"""The planner's targets: what each TensorRT-LLM target deploys, refuses, recommends and runs.

  engine   TRT-LLM checkpoint -> trtllm-build -> TensorRT engine: the engine reserve, the default KV
           fraction, refusals / warnings / flags (with reasons) from trtllm_build_rules.
  pytorch  TensorRT-LLM's PyTorch backend on a HF / ModelOpt checkpoint: the same weights, its own reserve
           (plan_memory.py), and the KV fraction, refusals, warnings and options (with reasons) from
           llmapi_options. It also plans NVFP4 (Blackwell only).
A target is a row of TARGETS; `--target auto` picks one by the installed TensorRT-LLM version (targets.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trt_build.build.llmapi_options import OptionsRequest, compose_options, flat_keys
from trt_build.build.trtllm_build_rules import BuildRequest, compose
from trt_build.plan.memory import (
    Scenario,
    StageMemory,
    default_kv_fraction,
    engine_reserve,
    memory,
    pytorch_reserve,
)
from trt_build.quant.schemes import ENGINE, pytorch_backend_schemes, schemes_for

Settings = list[tuple[list[str], str]]  # recommended settings, each with its reason


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    reserve: Callable[[Scenario, int], dict[str, int]]
    compose: Callable[[Scenario], Any]  # a composition with .refusals, .warnings and .reasons
    settings: Callable[[Any], Settings]  # the composition's .reasons as (settings, reason)
    command: Callable[[Scenario], str]
    quants: tuple[str, ...]  # --quant names this target deploys
    quant_refusal: str  # for any other --quant; may use {quant} and {quants}
    kv_fraction: Callable[[Scenario], float] = default_kv_fraction
    settings_title: str = "trtllm-build flags"

    def checks(self, s: Scenario) -> tuple[list[str], list[str]]:
        """(refusals, warnings) of this target for the scenario."""
        if s.quant.name not in self.quants:
            return [self.quant_refusal.format(quant=s.quant.name, quants=", ".join(self.quants))], []
        composition = self.compose(s)
        return composition.refusals, composition.warnings

    def flags(self, s: Scenario) -> Settings:
        return self.settings(self.compose(s).reasons)

    def memory(self, s: Scenario) -> tuple[list[StageMemory], int]:
        return memory(s, self.reserve, self.kv_fraction)


def make_command(s: Scenario, target_variable: str, fp8_kv_cache: bool) -> str:
    """The `make engine` line that builds this scenario."""
    kv = " KV_CACHE_DTYPE=fp8" if fp8_kv_cache else ""
    return (
        f"make engine {target_variable}MODEL={s.model.name} QUANT={s.quant.name}{kv} TP={s.tp} PP={s.pp} "
        f"GPU={s.gpu.name} MAX_SEQ_LEN={s.max_seq_len} MAX_BATCH_SIZE={s.max_batch_size}"
    )


# ---------------------------------------------------------------- engine


def engine_request(s: Scenario) -> BuildRequest:
    return BuildRequest(
        checkpoint_dir="<checkpoint>",
        output_dir="<engine>",
        gpu=s.gpu,
        quant_algo=s.quant.quant_algo,
        kv_cache_quant_algo=s.kv_cache_quant_algo,
        tp=s.tp,
        pp=s.pp,
        max_seq_len=s.max_seq_len,
        max_batch_size=s.max_batch_size,
        max_num_tokens=s.max_num_tokens,
    )


def engine_command(s: Scenario) -> str:
    return make_command(s, "", s.kv_cache_quant_algo == "FP8")


# ---------------------------------------------------------------- pytorch


def options_request(s: Scenario) -> OptionsRequest:
    """The pytorch target's options for a scenario (a ModelOpt checkpoint's KV format is its own)."""
    forced = s.kv_cache_quant_algo == "FP8" and s.model.kv_cache_quant_algo != "FP8"
    return OptionsRequest(
        arch=s.arch,
        gpu=s.gpu,
        quant_algo=s.quant.quant_algo,
        checkpoint_kv_cache_quant_algo=s.model.kv_cache_quant_algo
        if s.model.source == "modelopt-checkpoint"
        else s.kv_cache_quant_algo,
        tp=s.tp,
        pp=s.pp,
        kv_cache_dtype="fp8" if forced else "auto",
        max_batch_size=s.max_batch_size,
        max_seq_len=s.max_seq_len,
        max_num_tokens=s.max_num_tokens,
    )


def pytorch_command(s: Scenario) -> str:
    return make_command(s, "TARGET=pytorch ", options_request(s).kv_cache_dtype == "fp8")


def pytorch_kv_fraction(s: Scenario) -> float:
    return compose_options(options_request(s)).options["kv_cache_config"]["free_gpu_memory_fraction"]


TARGETS: dict[str, Target] = {
    "engine": Target(
        name="engine",
        description="TRT-LLM checkpoint -> trtllm-build -> TensorRT engine -> Triton tensorrtllm backend",
        reserve=engine_reserve,
        compose=lambda s: compose(engine_request(s)),
        settings=lambda reasons: reasons,
        command=engine_command,
        quants=tuple(schemes_for(ENGINE)),
        quant_refusal="the engine target does not build {quant}; plan it with --target pytorch.",
    ),
    "pytorch": Target(
        name="pytorch",
        description="HF / ModelOpt checkpoint -> LLM-API options -> Triton llmapi model or trtllm-serve",
        reserve=pytorch_reserve,
        compose=lambda s: compose_options(options_request(s)),
        settings=lambda reasons: [([", ".join(flat_keys(values))], reason) for values, reason in reasons],
        command=pytorch_command,
        quants=tuple(pytorch_backend_schemes()),
        quant_refusal="the pytorch target deploys {quants}, not {quant}.",
        kv_fraction=pytorch_kv_fraction,
        settings_title="LLM-API options",
    ),
}
