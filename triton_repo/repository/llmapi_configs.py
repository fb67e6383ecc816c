"""The pytorch-target repository's configs: the `llmapi` model and our front, as `ModelConfig` messages.

Two models (docs/triton.md §4):
  tensorrt_llm      TensorRT-LLM's stock `llmapi` Python model (`model.py` + `helpers.py` from
                    `triton_backend/all_models/llmapi/tensorrt_llm/1/` of the TensorRT-LLM tag that
                    matches the installed tensorrt_llm); we write its `config.pbtxt` (I/O of docs/triton.md §4.3) and
                    `1/model.yaml` (the LLM-API options plus `model`, `backend` and `triton_config`).
                    On a machine without a GPU our CPU stand-in with the same I/O takes its place.
  tensorrt_llm_bls  our front: the usual `text_input`/`max_tokens`/`stream` -> `text_output` names of the
                    engine repository (CLIENT_INPUTS), chat template, one BOS, prompt not echoed, stop
                    words, and Japanese-safe deltas from the llmapi model's cumulative streamed text.
`decoupled: true` and `max_batch_size: 0` are written in both config.pbtxt and model.yaml: the stock
model reads them from the yaml, while Triton only takes them from config.pbtxt when auto-complete is off
(`--disable-auto-complete-config`, as launch_triton_server.py and our launcher pass; docs/triton.md §4.5).
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.repository.engine_configs import (
    BLS,
    CLIENT_INPUTS,
    ENGINE,
    Tensor,
    _add_input,
    _add_output,
    _cpu_instances,
    _parameters,
)

LLMAPI_MODELS = (ENGINE, BLS)
LLMAPI_FRONT_TOKENIZER = f"{BLS}/tokenizer"  # relative to the repository root

# The stock llmapi config.pbtxt (docs/triton.md §4.3), without the multimodal and LoRA inputs we do not use.
LLMAPI_INPUTS: tuple[Tensor, ...] = (
    Tensor("text_input", "STRING", (-1,), False),
    Tensor("streaming", "BOOL"),
    Tensor("sampling_param_best_of", "INT32"),
    Tensor("sampling_param_temperature", "FP32"),
    Tensor("sampling_param_top_k", "INT32"),
    Tensor("sampling_param_top_p", "FP32"),
    Tensor("sampling_param_frequency_penalty", "FP32"),
    Tensor("sampling_param_presence_penalty", "FP32"),
    Tensor("sampling_param_max_tokens", "INT32"),
    Tensor("sampling_param_stop", "STRING", (-1,)),
    Tensor("sampling_param_seed", "UINT64"),
    Tensor("sampling_param_exclude_input_from_output", "BOOL"),
    Tensor("sampling_param_return_perf_metrics", "BOOL"),
    Tensor("return_finish_reason", "BOOL"),
    Tensor("return_stop_reason", "BOOL"),
    Tensor("return_cumulative_logprob", "BOOL"),
    Tensor("stop", "BOOL"),
)
LLMAPI_STAT_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("kv_cache_reused_block", "INT32", (-1,)),
    Tensor("kv_cache_missed_block", "INT32", (-1,)),
    Tensor("kv_cache_alloc_new_blocks", "INT32", (-1,)),
    Tensor("kv_cache_alloc_total_blocks", "INT32", (-1,)),
    Tensor("kv_cache_hit_rate", "FP32", (-1,)),
    Tensor("arrival_time_ns", "INT64"),
    Tensor("first_scheduled_time_ns", "INT64"),
    Tensor("first_token_time_ns", "INT64"),
    Tensor("last_token_time_ns", "INT64"),
    Tensor("acceptance_rate", "FP32"),
    Tensor("total_accepted_draft_tokens", "INT32"),
    Tensor("total_draft_tokens", "INT32"),
)
LLMAPI_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("text_output", "STRING", (-1,)),
    Tensor("finish_reason", "STRING", (-1,)),
    Tensor("stop_reason", "STRING", (-1,)),
    Tensor("cumulative_logprob", "FP32", (-1,)),
    *LLMAPI_STAT_OUTPUTS,
)
# The engine repository's client inputs that the llmapi model can honour (docs/triton.md §4.3 lists what it exposes);
# the others (bad words, end/pad id, min_tokens, repetition/length penalty, beams, logits, log probs)
# are not declared, so Triton rejects them by name and clients that read the config (swallow-trt bench,
# genai-perf) see that they are missing.
FRONT_INPUT_NAMES = (
    "text_input",
    "max_tokens",
    "messages",
    "apply_chat_template",
    "stop_words",
    "seed",
    "random_seed",
    "exclude_input_in_output",
    "stream",
    "top_k",
    "top_p",
    "temperature",
    "presence_penalty",
    "frequency_penalty",
    "return_perf_metrics",
    "return_num_input_tokens",
    "return_num_output_tokens",
)
FRONT_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("text_output", "STRING", (-1,)),
    Tensor("finish_reason", "STRING", (-1,)),
    Tensor("num_input_tokens", "INT32"),
    Tensor("num_output_tokens", "INT32"),
    *LLMAPI_STAT_OUTPUTS,
)


def llmapi_config(cpu_stand_in: bool = False) -> mc.ModelConfig:
    """`tensorrt_llm`: backend python, one CPU instance (the LLM places its GPUs), decoupled, batch 0."""
    config = mc.ModelConfig(name=ENGINE, backend="python", max_batch_size=0)
    config.model_transaction_policy.decoupled = True
    for tensor in LLMAPI_INPUTS:
        _add_input(config, tensor)
    for tensor in LLMAPI_OUTPUTS:
        _add_output(config, tensor)
    _cpu_instances(config, 1)
    if cpu_stand_in:
        _parameters(config, {"swallow_trt_cpu_stand_in": "true"})
    return config


def front_config(
    max_batch_size: int, instances: int, tokenizer_dir: str, max_input_len: int
) -> mc.ModelConfig:
    """`tensorrt_llm_bls`: the engine repository's client names in, deltas out; prompts that cannot fit
    `max_input_len` tokens refused by their size."""
    config = mc.ModelConfig(name=BLS, backend="python", max_batch_size=max_batch_size)
    config.model_transaction_policy.decoupled = True
    for row in CLIENT_INPUTS:
        if row.tensor.name in FRONT_INPUT_NAMES:
            _add_input(config, row.tensor)
    for tensor in FRONT_OUTPUTS:
        _add_output(config, tensor)
    _cpu_instances(config, instances)
    _parameters(
        config,
        {
            "tokenizer_dir": tokenizer_dir,
            "tensorrt_llm_model_name": ENGINE,
            "exclude_input_in_output": "true",
            "max_input_len": str(max_input_len),
        },
    )
    return config


def model_yaml(options: dict[str, Any], checkpoint: str, tokenizer: str | None = None) -> dict[str, Any]:
    """The llmapi model's model.yaml: every key but triton_config goes to LLM(**kwargs)."""
    out: dict[str, Any] = {"model": checkpoint, "backend": "pytorch"}
    if tokenizer:
        out["tokenizer"] = tokenizer
    out.update(options)
    out["triton_config"] = {"max_batch_size": 0, "decoupled": True, "cancellation_check_period_ms": 100}
    return out
