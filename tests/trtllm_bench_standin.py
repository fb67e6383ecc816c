"""A stand-in for `trtllm-bench` (engine-level mode without a GPU): its output records and report in the
upstream format (field names, one JSON array, nanosecond perf_counter timestamps, as read in
NVIDIA/TensorRT-LLM tensorrt_llm/bench/dataclasses/{statistics,reporting}.py), and the executable the tests
put first on PATH. Standard library only: the executable imports this module once per level it runs.
"""

from __future__ import annotations

BASE_NS = 7_000_000_000_000  # perf_counter_ns values are arbitrary offsets
MS = 1_000_000  # ns


def standin_request_record(request_id: int, start_ms: float, ttft_ms: float | None, tpot_ms: float, tokens: int,
                           input_tokens: int = 40, error_tokens: int = 0) -> dict:  # fmt: skip
    """One element of trtllm-bench's --request_json: RequestRecord.model_dump() (stored and computed
    fields) without `tokens`, plus `output` and `output_tokens` (ReportUtility.get_request_info)."""
    start = BASE_NS + round(start_ms * MS)
    first = -1 if ttft_ms is None else start + round(ttft_ms * MS)
    end = (start if first < 0 else first) + round((tokens - 1) * tpot_ms * MS)
    ttft_ns = first - start if first > 0 else 0.0
    e2e = end - start
    return {
        "id": request_id,
        "num_input_tokens": input_tokens,
        "error_tokens": error_tokens,
        "start_timestamp": start,
        "first_token_timestamp": first,
        "end_timestamp": end,
        "decode_iteration": tokens - 1,
        "num_total_output_tokens": tokens,
        "num_generated_tokens": tokens - 1,
        "generation_time": e2e - ttft_ns,
        "time_to_first_token": ttft_ns,
        "intertoken_latency": (end - first) / (tokens - 1) if tokens > 1 else 0.0,
        "end_to_end_latency": e2e,
        "output_token_throughput": tokens / e2e,
        "generation_token_throughput": (tokens - 1) / (e2e - ttft_ns) if e2e > ttft_ns else 0.0,
        "output": "こんにちは" * tokens,
        "output_tokens": tokens,
    }


def standin_report(rows: list[dict], world_size: int = 1) -> dict:
    """trtllm-bench's --report_json (ReportUtility.get_statistics_dict), the sections the converter reads,
    computed the way trtllm-bench computes them (ns -> ms; rates per second)."""
    start = min(r["start_timestamp"] for r in rows)
    end = max(r["end_timestamp"] for r in rows)
    total_ns = end - start
    out = sum(r["output_tokens"] for r in rows)
    return {
        "engine": {
            "model": "m",
            "engine_dir": "/e",
            "version": "1.2.1",
            "backend": "TRT",
            "dtype": "bfloat16",
            "quantization": "FP8",
            "kv_cache_dtype": "FP8",
        },  # fmt: skip
        "world_info": {
            "tp_size": world_size,
            "pp_size": 1,
            "world_size": world_size,
            "max_batch_size": 256,
            "max_num_tokens": 8192,
        },  # fmt: skip
        "request_info": {"num_requests": len(rows), "avg_input_length": 40.0},
        "performance": {
            "total_latency_ms": total_ns * 1e-6,
            "avg_request_latency_ms": sum(r["end_to_end_latency"] for r in rows) / len(rows) * 1e-6,
            "request_throughput_req_s": len(rows) / total_ns * 1e9,
            "system_output_throughput_tok_s": out / total_ns * 1e9,
            "output_throughput_per_gpu_tok_s": out / total_ns * 1e9 / world_size,
        },
        "streaming_metrics": {
            "avg_ttft_ms": sum(r["time_to_first_token"] for r in rows) / len(rows) * 1e-6,
            "avg_tpot_ms": sum(r["intertoken_latency"] for r in rows) / len(rows) * 1e-6,
        },
    }


# A stand-in `trtllm-bench` executable: lists its flags for `throughput --help`, and for a run writes the
# --request_json / --report_json of a deterministic engine (TTFT 10 ms x concurrency, TPOT 2 ms x
# concurrency, requests in waves of `concurrency`) in the upstream format.
FAKE_TRTLLM_BENCH = """#!{python}
import json, os, sys
sys.path.insert(0, {tests_dir!r})
from trtllm_bench_standin import standin_report, standin_request_record
args = sys.argv[1:]
if "--help" in args:
    print("Usage: trtllm-bench throughput [OPTIONS]\\n  --engine_dir --backend --dataset --num_requests --concurrency"
          " --warmup --eos_id --streaming --report_json --request_json --model")
    sys.exit(0)
value = lambda flag: args[args.index(flag) + 1]
if "--engine_dir" in args and not os.path.isfile(os.path.join(value("--engine_dir"), "config.json")):
    print("no engine at " + value("--engine_dir"))
    sys.exit(1)
dataset = [json.loads(line) for line in open(value("--dataset"))][: int(value("--num_requests"))]
concurrency = int(value("--concurrency"))
if os.environ.get("STANDIN_FAIL_AT_CONCURRENCY") == str(concurrency):
    print("RuntimeError: CUDA out of memory")
    sys.exit(1)
if os.environ.get("STANDIN_HANG_AT_CONCURRENCY") == str(concurrency):
    import time
    time.sleep(120)
rows, wave_start = [], 0.0
for i, task in enumerate(dataset):
    if i and i % concurrency == 0:
        wave_start = max((r["end_timestamp"] - {base}) / 1e6 for r in rows)
    rows.append(standin_request_record(100 + i, wave_start, 10.0 * concurrency, 2.0 * concurrency,
                                       task["output_tokens"], len(task["input_ids"])))
json.dump(rows, open(value("--request_json"), "w"))
json.dump(standin_report(rows), open(value("--report_json"), "w"))
"""
