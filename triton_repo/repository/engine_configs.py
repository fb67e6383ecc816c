"""The five `config.pbtxt` files, built as Triton `ModelConfig` messages (never filled text templates).

Tensor names, types and shapes follow the TensorRT-LLM `inflight_batcher_llm` repository (newest
names: `seed`, `min_tokens`, `return_num_*_tokens`), so genai-perf `--backend tensorrtllm`, Triton's
OpenAI frontend and tritonclient scripts work unchanged. The client-facing inputs are one table,
`CLIENT_INPUTS`, shared by the ensemble, the BLS and the engine; each row says which step consumes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from trt_build.build.limits import KV_CACHE_FREE_GPU_MEM_FRACTION

PRE, ENGINE, POST, BLS, ENSEMBLE = (
    "preprocessing",
    "tensorrt_llm",
    "postprocessing",
    "tensorrt_llm_bls",
    "ensemble",
)
MODEL_NAMES = (ENSEMBLE, PRE, ENGINE, POST, BLS)


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton type name without TYPE_, e.g. "INT32"
    dims: tuple[int, ...] = (1,)
    optional: bool = True


@dataclass(frozen=True)
class ClientInput:
    """An input of the ensemble and the BLS, and the step input it feeds (`model`, `name`)."""

    tensor: Tensor
    model: str
    name: str


def _client(name: str, dtype: str, model: str, target: str, dims=(1,), optional=True) -> ClientInput:
    return ClientInput(Tensor(name, dtype, tuple(dims), optional), model, target)


# name, dtype, consumed by (model, input). Preprocessing resolves ids, limits and aliases
# (seed/random_seed, min_tokens/min_length); the rest goes to the engine as is.
CLIENT_INPUTS: tuple[ClientInput, ...] = (
    _client("text_input", "STRING", PRE, "QUERY", optional=False),
    _client("max_tokens", "INT32", PRE, "REQUEST_OUTPUT_LEN", optional=False),
    _client("messages", "STRING", PRE, "MESSAGES"),  # JSON list of {"role", "content"}: chat template
    _client("apply_chat_template", "BOOL", PRE, "APPLY_CHAT_TEMPLATE"),  # template around text_input
    _client("bad_words", "STRING", PRE, "BAD_WORDS_DICT", dims=(-1,)),
    _client("stop_words", "STRING", PRE, "STOP_WORDS_DICT", dims=(-1,)),
    _client("end_id", "INT32", PRE, "END_ID"),
    _client("pad_id", "INT32", PRE, "PAD_ID"),
    _client("seed", "UINT64", PRE, "SEED"),
    _client("random_seed", "UINT64", PRE, "RANDOM_SEED"),
    _client("min_tokens", "INT32", PRE, "MIN_TOKENS"),
    _client("min_length", "INT32", PRE, "MIN_LENGTH"),
    _client("exclude_input_in_output", "BOOL", ENGINE, "exclude_input_in_output"),
    _client("stream", "BOOL", ENGINE, "streaming"),
    _client("top_k", "INT32", ENGINE, "runtime_top_k"),
    _client("top_p", "FP32", ENGINE, "runtime_top_p"),
    _client("temperature", "FP32", ENGINE, "temperature"),
    _client("length_penalty", "FP32", ENGINE, "len_penalty"),
    _client("repetition_penalty", "FP32", ENGINE, "repetition_penalty"),
    _client("presence_penalty", "FP32", ENGINE, "presence_penalty"),
    _client("frequency_penalty", "FP32", ENGINE, "frequency_penalty"),
    _client("beam_width", "INT32", ENGINE, "beam_width"),
    _client("num_return_sequences", "INT32", ENGINE, "num_return_sequences"),
    _client("return_log_probs", "BOOL", ENGINE, "return_log_probs"),
    _client("return_context_logits", "BOOL", ENGINE, "return_context_logits"),
    _client("return_generation_logits", "BOOL", ENGINE, "return_generation_logits"),
    _client("return_perf_metrics", "BOOL", ENGINE, "return_perf_metrics"),
    _client("return_num_input_tokens", "BOOL", ENGINE, "return_num_input_tokens"),
    _client("return_num_output_tokens", "BOOL", ENGINE, "return_num_output_tokens"),
)

# preprocessing output -> (ensemble tensor, engine input)
PRE_TO_ENGINE: tuple[tuple[Tensor, str, str], ...] = (
    (Tensor("INPUT_ID", "INT32", (-1,), False), "_INPUT_ID", "input_ids"),
    (Tensor("REQUEST_INPUT_LEN", "INT32", (1,), False), "_REQUEST_INPUT_LEN", "input_lengths"),
    (Tensor("REQUEST_OUTPUT_LEN", "INT32", (1,), False), "_REQUEST_OUTPUT_LEN", "request_output_len"),
    (Tensor("STOP_WORDS_IDS", "INT32", (2, -1), False), "_STOP_WORDS_IDS", "stop_words_list"),
    (Tensor("BAD_WORDS_IDS", "INT32", (2, -1), False), "_BAD_WORDS_IDS", "bad_words_list"),
    (Tensor("OUT_END_ID", "INT32", (1,), False), "_PREPROCESSOR_END_ID", "end_id"),
    (Tensor("OUT_PAD_ID", "INT32", (1,), False), "_PREPROCESSOR_PAD_ID", "pad_id"),
    (Tensor("OUT_SEED", "UINT64", (1,), False), "_SEED", "seed"),
    (Tensor("OUT_MIN_TOKENS", "INT32", (1,), False), "_MIN_TOKENS", "min_tokens"),
)

# Engine inputs: the preprocessing outputs' targets plus the direct client inputs, all scalars [1]
# reshaped to [] as the C++ backend expects, id lists ragged.
ENGINE_INPUTS: tuple[Tensor, ...] = (
    Tensor("input_ids", "INT32", (-1,), False),
    Tensor("input_lengths", "INT32", (1,), False),
    Tensor("request_output_len", "INT32", (1,), False),
    Tensor("end_id", "INT32"),
    Tensor("pad_id", "INT32"),
    Tensor("stop_words_list", "INT32", (2, -1)),
    Tensor("bad_words_list", "INT32", (2, -1)),
    Tensor("embedding_bias", "FP32", (-1,)),
    Tensor("seed", "UINT64"),
    Tensor("min_tokens", "INT32"),
    Tensor("runtime_top_p_min", "FP32"),
    Tensor("runtime_top_p_decay", "FP32"),
    Tensor("runtime_top_p_reset_ids", "INT32"),
    Tensor("early_stopping", "BOOL"),
    Tensor("beam_search_diversity_rate", "FP32"),
    Tensor("stop", "BOOL"),
    *(Tensor(row.name, row.tensor.dtype, row.tensor.dims) for row in CLIENT_INPUTS if row.model == ENGINE),
)

# (name, dtype, dims) of the engine outputs the ensemble and the BLS pass through to the client
ENGINE_STAT_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("cum_log_probs", "FP32", (-1,)),
    Tensor("output_log_probs", "FP32", (-1, -1)),
    Tensor("context_logits", "FP32", (-1, -1)),
    Tensor("generation_logits", "FP32", (-1, -1, -1)),
    Tensor("batch_index", "INT32"),
    Tensor("sequence_index", "INT32"),
    Tensor("kv_cache_alloc_new_blocks", "INT32"),
    Tensor("kv_cache_reused_blocks", "INT32"),
    Tensor("kv_cache_alloc_total_blocks", "INT32"),
    Tensor("arrival_time_ns", "INT64"),
    Tensor("first_scheduled_time_ns", "INT64"),
    Tensor("first_token_time_ns", "INT64"),
    Tensor("last_token_time_ns", "INT64"),
    Tensor("acceptance_rate", "FP32"),
    Tensor("total_accepted_draft_tokens", "INT32"),
    Tensor("total_draft_tokens", "INT32"),
    Tensor("num_input_tokens", "INT32"),
    Tensor("num_output_tokens", "INT32"),
)
ENGINE_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("output_ids", "INT32", (-1, -1)),
    Tensor("sequence_length", "INT32", (-1,)),
    *ENGINE_STAT_OUTPUTS,
)
CLIENT_OUTPUTS: tuple[Tensor, ...] = (Tensor("text_output", "STRING", (-1,)), *ENGINE_STAT_OUTPUTS)

POST_INPUTS = (
    Tensor("TOKENS_BATCH", "INT32", (-1, -1), False),
    Tensor("SEQUENCE_LENGTH", "INT32", (-1,), False),
)
POST_OUTPUT = Tensor("OUTPUT", "STRING", (-1,))


@dataclass(frozen=True)
class RepoSettings:
    """Everything the configs depend on; `engine_dir` set means the C++ tensorrtllm backend."""

    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    tokenizer_dir: str  # relative to the repository root
    engine_dir: str | None = None
    checkpoint_dir: str | None = None
    instances: int = 1
    kv_cache_free_gpu_mem_fraction: float = KV_CACHE_FREE_GPU_MEM_FRACTION
    kv_cache_reuse: bool = True
    chunked_context: bool = False
    skip_special_tokens: bool = True
    extra: dict[str, str] = field(default_factory=dict)


def _dtype(name: str) -> int:
    return getattr(mc, f"TYPE_{name}")


def _add_input(config: mc.ModelConfig, tensor: Tensor, engine: bool = False) -> None:
    entry = config.input.add(name=tensor.name, data_type=_dtype(tensor.dtype), dims=list(tensor.dims))
    entry.optional = tensor.optional
    if engine and tensor.dims == (1,):
        entry.reshape.SetInParent()  # shape []: the C++ backend reads scalars
    if engine and -1 in tensor.dims:
        entry.allow_ragged_batch = True


def _add_output(config: mc.ModelConfig, tensor: Tensor) -> None:
    config.output.add(name=tensor.name, data_type=_dtype(tensor.dtype), dims=list(tensor.dims))


def _parameters(config: mc.ModelConfig, values: dict[str, str]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def _cpu_instances(config: mc.ModelConfig, count: int) -> None:
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=count)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def preprocessing_config(settings: RepoSettings) -> mc.ModelConfig:
    config = mc.ModelConfig(name=PRE, backend="python", max_batch_size=settings.max_batch_size)
    for row in CLIENT_INPUTS:
        if row.model == PRE:
            _add_input(config, Tensor(row.name, row.tensor.dtype, row.tensor.dims, row.tensor.optional))
    for tensor, _, _ in PRE_TO_ENGINE:
        _add_output(config, tensor)
    config.dynamic_batching.SetInParent()
    _cpu_instances(config, settings.instances)
    _parameters(
        config,
        {
            "tokenizer_dir": settings.tokenizer_dir,
            "add_special_tokens": "true",  # one BOS; never a second one before a rendered chat template
            "max_input_len": str(settings.max_input_len),
            "max_seq_len": str(settings.max_seq_len),
            **settings.extra,
        },
    )
    return config


def postprocessing_config(settings: RepoSettings) -> mc.ModelConfig:
    """One instance, no dynamic batching: a stream's tokens are detokenized in order with its state."""
    config = mc.ModelConfig(name=POST, backend="python", max_batch_size=settings.max_batch_size)
    for tensor in POST_INPUTS:
        _add_input(config, tensor)
    _add_output(config, POST_OUTPUT)
    _cpu_instances(config, 1)
    _parameters(
        config,
        {"tokenizer_dir": settings.tokenizer_dir, "skip_special_tokens": _flag(settings.skip_special_tokens)},
    )
    return config


def engine_config(settings: RepoSettings) -> mc.ModelConfig:
    """`tensorrt_llm`: the C++ backend on an engine, or the Python CPU reference engine on a checkpoint."""
    cpp = settings.engine_dir is not None
    config = mc.ModelConfig(name=ENGINE, max_batch_size=settings.max_batch_size)
    config.backend = "tensorrtllm" if cpp else "python"
    config.model_transaction_policy.decoupled = True
    for tensor in ENGINE_INPUTS:
        _add_input(config, tensor, engine=True)
    for tensor in ENGINE_OUTPUTS:
        _add_output(config, tensor)
    if cpp:
        config.dynamic_batching.preferred_batch_size.append(settings.max_batch_size)
        config.dynamic_batching.max_queue_delay_microseconds = 0
        _cpu_instances(config, 1)  # GPUs are placed by the backend, not by instance groups
        _parameters(
            config,
            {
                "gpt_model_type": "inflight_fused_batching",
                "gpt_model_path": settings.engine_dir,
                "max_beam_width": "1",
                "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
                "batch_scheduler_policy": "guaranteed_no_evict",
                "kv_cache_free_gpu_mem_fraction": f"{settings.kv_cache_free_gpu_mem_fraction:g}",
                "enable_kv_cache_reuse": _flag(settings.kv_cache_reuse),
                "enable_chunked_context": _flag(settings.chunked_context),
                "exclude_input_in_output": "true",
                "normalize_log_probs": "true",
                "cancellation_check_period_ms": "100",
                "stats_check_period_ms": "100",
            },
        )
    else:
        _cpu_instances(config, 1)  # one model in memory; requests run concurrently inside it
        _parameters(
            config,
            {
                "checkpoint_dir": settings.checkpoint_dir or "",
                "max_input_len": str(settings.max_input_len),
                "max_seq_len": str(settings.max_seq_len),
                "exclude_input_in_output": "true",
            },
        )
    return config


def bls_config(settings: RepoSettings) -> mc.ModelConfig:
    config = mc.ModelConfig(name=BLS, backend="python", max_batch_size=settings.max_batch_size)
    config.model_transaction_policy.decoupled = True
    for row in CLIENT_INPUTS:
        _add_input(config, row.tensor)
    for tensor in CLIENT_OUTPUTS:
        _add_output(config, tensor)
    _cpu_instances(config, settings.instances)
    _parameters(
        config,
        {
            "tokenizer_dir": settings.tokenizer_dir,
            "tensorrt_llm_model_name": ENGINE,
            "skip_special_tokens": _flag(settings.skip_special_tokens),
        },
    )
    return config


def ensemble_config(settings: RepoSettings) -> mc.ModelConfig:
    config = mc.ModelConfig(name=ENSEMBLE, platform="ensemble", max_batch_size=settings.max_batch_size)
    for row in CLIENT_INPUTS:
        _add_input(config, row.tensor)
    for tensor in CLIENT_OUTPUTS:
        _add_output(config, tensor)
    steps = config.ensemble_scheduling
    pre = steps.step.add(model_name=PRE, model_version=-1)
    engine = steps.step.add(model_name=ENGINE, model_version=-1)
    post = steps.step.add(model_name=POST, model_version=-1)
    for row in CLIENT_INPUTS:
        (pre if row.model == PRE else engine).input_map[row.name] = row.tensor.name
    for tensor, internal, engine_input in PRE_TO_ENGINE:
        pre.output_map[tensor.name] = internal
        engine.input_map[engine_input] = internal
    engine.output_map["output_ids"] = "_TOKENS_BATCH"
    engine.output_map["sequence_length"] = "_SEQUENCE_LENGTH"
    for tensor in ENGINE_STAT_OUTPUTS:
        engine.output_map[tensor.name] = tensor.name
    post.input_map["TOKENS_BATCH"] = "_TOKENS_BATCH"
    post.input_map["SEQUENCE_LENGTH"] = "_SEQUENCE_LENGTH"
    post.output_map["OUTPUT"] = "text_output"
    return config


BUILDERS = {
    ENSEMBLE: ensemble_config,
    PRE: preprocessing_config,
    ENGINE: engine_config,
    POST: postprocessing_config,
    BLS: bls_config,
}


def render(config: mc.ModelConfig) -> str:
    """The config.pbtxt text (protobuf text format; parses back with `parse`)."""
    return text_format.MessageToString(config, as_utf8=True)


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def all_configs(settings: RepoSettings) -> dict[str, mc.ModelConfig]:
    return {name: build(settings) for name, build in BUILDERS.items()}
