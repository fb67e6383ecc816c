"""The bridge to AIConfigurator: worker.py run by the predictor venv's python, one subprocess per batch of
queries (each call loads the kernel databases once, docs/upstream-2026.md §6.2).

The model it reads is a temporary directory with config.json written from our LlamaArchitecture (Swallow is
exactly Llama 3.1) and, for FP8 weights, the ModelOpt hf_quant_config.json `convert --target pytorch`
writes; the KV dtype is passed explicitly. The KV share it models is the one the LLM-API options write
for that GPU (build/llmapi_options.kv_cache_fraction).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trt_build.build.llmapi_options import kv_cache_fraction
from trt_build.common.errors import SwallowTrtError
from trt_build.common.gpus import GpuProfile
from trt_build.formats.modelopt_config import HF_QUANT_CONFIG, hf_quant_config
from trt_build.plan.predict.coverage import SYSTEMS
from trt_build.quant.schemes import QuantScheme
from trt_build.source.hf_config import LlamaArchitecture, hf_config_dict

PREDICTOR_ENV = "SWALLOW_TRT_PREDICTOR"  # the predictor venv's directory, if not the default
DEFAULT_VENV = Path(__file__).resolve().parents[3] / ".venv-aiconfigurator"
WORKER = Path(__file__).with_name("worker.py")
NAME = "AIConfigurator"
MARGIN = "about +-15 % (docs/upstream-2026.md §6.3)"
WORKER_TIMEOUT_S = 600
HOW_TO_ADD = "Run `make predictor` (or point SWALLOW_TRT_PREDICTOR at an AIConfigurator 0.12.0 venv)."


@dataclass(frozen=True)
class Query:
    """One model, format and GPU at one ISL / OSL, and the points (worker.py's POINT) to estimate."""

    arch: LlamaArchitecture
    gpu: GpuProfile
    quant: QuantScheme  # within coverage.QUANTS
    fp8_kv: bool
    isl: int
    osl: int
    points: tuple[dict[str, Any], ...]

    @property
    def kv_fraction(self) -> float:
        return kv_cache_fraction(self.gpu)


@dataclass
class Answer:
    """The worker's answer to one query: per point its metrics (worker.py's METRICS) or an error."""

    version: str  # AIConfigurator's
    data_version: str  # TensorRT-LLM version of the kernel data
    system: str
    kv_fraction: float  # the KV share of free memory it modelled
    points: list[dict[str, Any]] = field(default_factory=list)

    def predictor(self) -> dict[str, str]:
        """DeploymentChoice.predictor: name, version, data version, margin."""
        return {
            "name": NAME,
            "version": self.version,
            "data_version": f"TensorRT-LLM {self.data_version} on {self.system}",
            "margin": MARGIN,
        }


def predictor_python() -> Path:
    """The predictor venv's python: SWALLOW_TRT_PREDICTOR, else .venv-aiconfigurator at the repo root."""
    venv = Path(os.environ.get(PREDICTOR_ENV) or DEFAULT_VENV)
    python = venv / "bin" / "python"
    if not python.exists():
        raise SwallowTrtError(f"No predictor venv at {venv} (no {python}).", HOW_TO_ADD)
    return python


def write_model(arch: LlamaArchitecture, quant: QuantScheme, directory: Path) -> None:
    """config.json (+ hf_quant_config.json for FP8 weights), what AIConfigurator reads of a model."""
    (directory / "config.json").write_text(json.dumps(hf_config_dict(arch, "v4")), encoding="utf-8")
    if quant.quant_algo is not None:
        block = hf_quant_config(quant.name, "auto", quant.group_size or 128)
        (directory / HF_QUANT_CONFIG).write_text(json.dumps(block), encoding="utf-8")


def _request(query: Query, directory: Path) -> dict[str, Any]:
    return {
        "model_dir": str(directory),
        "system": SYSTEMS[query.gpu.name],
        "backend": "trtllm",
        "kvcache_quant_mode": "fp8" if query.fp8_kv else "bfloat16",
        "isl": query.isl,
        "osl": query.osl,
        "free_gpu_memory_fraction": query.kv_fraction,
        "points": list(query.points),
    }


def run_worker(requests: list[dict[str, Any]], python: Path) -> dict[str, Any]:
    """worker.py's answer to `requests`; a failed or garbled run is a SwallowTrtError with its stderr."""
    try:
        done = subprocess.run(
            [str(python), str(WORKER)],
            input=json.dumps({"requests": requests}),
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise SwallowTrtError(f"The predictor did not answer within {WORKER_TIMEOUT_S} s.") from None
    if done.returncode == 0:
        try:
            reply = json.loads(done.stdout)
        except json.JSONDecodeError:
            reply = None
        if isinstance(reply, dict) and len(reply.get("results", ())) == len(requests):
            return reply
    raise SwallowTrtError(
        f"The predictor ({python}) failed (status {done.returncode}, no answer for each query): "
        f"{done.stderr.strip()[-1500:]}",
        HOW_TO_ADD,
    )


def ask(queries: list[Query]) -> list[Answer]:
    """Each query's answer, from one predictor run; a query the predictor refused is a SwallowTrtError."""
    python = predictor_python()
    with tempfile.TemporaryDirectory(prefix="swallow-trt-predict-") as tmp:
        requests = []
        for number, query in enumerate(queries):
            directory = Path(tmp) / f"model{number}"
            directory.mkdir()
            write_model(query.arch, query.quant, directory)
            requests.append(_request(query, directory))
        reply = run_worker(requests, python)
    answers = []
    for query, result in zip(queries, reply["results"], strict=True):
        if "error" in result:
            raise SwallowTrtError(
                f"The predictor has no estimate for {query.gpu.name} ({SYSTEMS[query.gpu.name]}): "
                f"{result['error']}"
            )
        answers.append(
            Answer(
                reply["aiconfigurator"],
                result["data_version"],
                SYSTEMS[query.gpu.name],
                query.kv_fraction,
                result["points"],
            )
        )
    return answers
