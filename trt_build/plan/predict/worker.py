"""Run BY THE PREDICTOR VENV's python (`make predictor`), never imported by the toolkit: it imports only
AIConfigurator and the standard library. A JSON request on stdin, a JSON answer on stdout.

Request: {"requests": [{"model_dir", "system", "backend", "kvcache_quant_mode", "isl", "osl",
                        "free_gpu_memory_fraction", "points": [POINT, ...]}, ...]}
  POINT: {"mode": "agg", "tp", "pp", "batch"}          batch null = the largest whose KV cache fits
         {"mode": "disagg", "prefill": {"tp", "workers", "batch"}, "decode": {"tp", "workers", "batch"}}
Answer: {"aiconfigurator": VERSION, "results": [{"data_version", "points": [METRICS | {"error"}]}
                                                 | {"error"}, ...]}
Many points per call: the kernel database loads once per (system, backend) per process (seconds), then a
point takes milliseconds through the SDK (docs/upstream-2026.md §6.2, §6.5).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import sys
from typing import Any

MAX_BATCH = 4096  # the largest batch a max-throughput sweep tries
# AIConfigurator's own disaggregated latency corrections (its `cli estimate` applies them too)
PREFILL_CORRECTION, DECODE_CORRECTION = 1.1, 1.08


def _metrics(result: dict[str, Any], batch: int, kv_fits: bool) -> dict[str, Any]:
    return {
        "ttft_ms": float(result["ttft"]),
        "tpot_ms": float(result["tpot"]),
        "tokens_per_s_per_user": float(result["tokens/s/user"]),
        "tokens_per_s_per_gpu": float(result["tokens/s/gpu"]),
        "tokens_per_s": float(result["tokens/s"]),
        "requests_per_s": float(result["seq/s"]),
        "concurrency": float(result["concurrency"]),
        "gpus": int(result["num_total_gpus"]),
        "memory_gb": float(result.get("memory", max(result.get("(p)memory", 0), result.get("(d)memory", 0)))),
        "batch": batch,
        "kv_fits": kv_fits,
    }


class Predictor:
    """One request's model on one system: sessions per parallelism, built once."""

    def __init__(self, request: dict[str, Any]) -> None:
        from aiconfigurator.sdk.perf_database import get_database_view, get_latest_database_version

        self.request = request
        self.backend_name = request.get("backend", "trtllm")
        self.version = get_latest_database_version(system=request["system"], backend=self.backend_name)
        if self.version is None:
            raise ValueError(f"no {self.backend_name} data for system {request['system']}")
        self.database = get_database_view(
            request["system"],
            self.backend_name,
            self.version,
            allow_missing_data=False,
            database_mode="SILICON",
        )
        self.sessions: dict[tuple[int, int], Any] = {}

    def backend(self) -> Any:
        """A fresh backend: a backend caches aggregated results by ISL / OSL / batch, not by model or TP."""
        from aiconfigurator.sdk.backends.factory import get_backend

        return get_backend(self.backend_name)

    def model_config(self, tp: int, pp: int, context: bool) -> Any:
        from aiconfigurator.sdk.config_builders import build_model_config
        from aiconfigurator.sdk.models import resolve_context_fmha_by_data

        config = build_model_config(
            tp, pp, 1, None, None, kvcache_quant_mode=self.request.get("kvcache_quant_mode")
        )
        if context:
            resolve_context_fmha_by_data(
                config, self.request["model_dir"], self.database, self.backend_name, is_context_role=True
            )
        return config

    def session(self, tp: int, pp: int) -> Any:
        from aiconfigurator.sdk.inference_session import InferenceSession
        from aiconfigurator.sdk.models import get_model

        if (tp, pp) not in self.sessions:
            model = get_model(self.request["model_dir"], self.model_config(tp, pp, True), self.backend_name)
            self.sessions[tp, pp] = InferenceSession(model, self.database, self.backend())
        return self.sessions[tp, pp]

    def run_agg(self, tp: int, pp: int, batch: int) -> tuple[dict[str, Any] | None, bool]:
        """(result, KV fits); result None when the weights do not fit."""
        from aiconfigurator.sdk.config import RuntimeConfig

        r = self.request
        summary = self.session(tp, pp).run_agg(
            RuntimeConfig(isl=r["isl"], osl=r["osl"], batch_size=batch),
            ctx_tokens=r["isl"],
            free_gpu_memory_fraction=r["free_gpu_memory_fraction"],
        )
        if summary.check_oom():
            return None, False
        return summary.get_result_dict(), not summary.check_kv_cache_oom()

    def agg(self, point: dict[str, Any]) -> dict[str, Any]:
        tp, pp, batch = point["tp"], point.get("pp", 1), point.get("batch")
        if batch is not None:
            result, fits = self.run_agg(tp, pp, batch)
            if result is None:
                return {"error": f"the weights do not fit at TP {tp} x PP {pp}"}
            return _metrics(result, batch, fits)
        low, high, best = 0, MAX_BATCH + 1, None  # the largest batch whose KV fits lies in [low, high)
        while high - low > 1:
            middle = (low + high) // 2
            result, fits = self.run_agg(tp, pp, middle)
            if result is not None and fits:
                low, best = middle, result
            else:
                high = middle
        if best is None:
            weights_fit = self.run_agg(tp, pp, 1)[0] is not None
            what = "not one sequence's KV cache fits" if weights_fit else "the weights do not fit"
            return {"error": f"{what} at TP {tp} x PP {pp}"}
        return _metrics(best, low, True)

    def disagg(self, point: dict[str, Any]) -> dict[str, Any]:
        from aiconfigurator.sdk.config import RuntimeConfig
        from aiconfigurator.sdk.inference_session import DisaggInferenceSession

        r, prefill, decode = self.request, point["prefill"], point["decode"]
        session = DisaggInferenceSession(self.database, self.backend(), self.database, self.backend())
        session.set_latency_correction_scales(PREFILL_CORRECTION, DECODE_CORRECTION)
        summary = session.run_disagg(
            model_path=r["model_dir"],
            runtime_config=RuntimeConfig(isl=r["isl"], osl=r["osl"]),
            prefill_model_config=self.model_config(prefill["tp"], 1, True),
            prefill_batch_size=prefill["batch"],
            prefill_num_worker=prefill["workers"],
            decode_model_config=self.model_config(decode["tp"], 1, False),
            decode_batch_size=decode["batch"],
            decode_num_worker=decode["workers"],
            free_gpu_memory_fraction=r["free_gpu_memory_fraction"],
        )
        if summary.check_oom():
            return {"error": "the weights do not fit"}
        # a disaggregated summary does not say whether the decode batch's KV fits: one decode worker does
        _, fits = self.run_agg(decode["tp"], 1, decode["batch"])
        return _metrics(summary.get_result_dict(), decode["batch"], fits)

    def point(self, point: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.agg(point) if point["mode"] == "agg" else self.disagg(point)
        except Exception as error:  # one bad point must not lose the others
            return {"error": f"{type(error).__name__}: {error}"}


def answer(requests: list[dict[str, Any]]) -> dict[str, Any]:
    results = []
    for request in requests:
        try:
            predictor = Predictor(request)
        except Exception as error:
            results.append({"error": f"{type(error).__name__}: {error}"})
            continue
        points = [predictor.point(p) for p in request["points"]]
        results.append({"data_version": predictor.version, "points": points})
    return {"aiconfigurator": importlib.metadata.version("aiconfigurator"), "results": results}


def main() -> None:
    request = json.load(sys.stdin)
    with contextlib.redirect_stdout(sys.stderr):  # AIConfigurator prints; stdout carries only the answer
        reply = answer(request["requests"])
    json.dump(reply, sys.stdout)


if __name__ == "__main__":
    main()
