"""The five `config.pbtxt` files, built as Triton `ModelConfig` messages (never filled text templates).

Tensor names, types and shapes follow the TensorRT-LLM `inflight_batcher_llm` repository (newest
names: `seed`, `min_tokens`, `return_num_*_tokens`), so genai-perf `--backend tensorrtllm`, Triton's
OpenAI frontend and tritonclient scripts work unchanged. Which client tensor feeds which model is one
table, triton_repo/models/tensor_routes.py, shared with the front model that routes by it.

The two client-facing models, `ensemble` and `tensorrt_llm_bls`, are the same Python front (a decoupled
BLS model, thread and detokenizer per request) under two names: the name clients call first keeps each
request's state, which a Triton ensemble cannot (docs/triton.md §5.4, §5.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.models import tensor_routes as routes
from trt_build.build.limits import KV_CACHE_FREE_GPU_MEM_FRACTION

PRE, ENGINE, POST, BLS, ENSEMBLE = (
    routes.PRE,
    routes.ENGINE,
    "postprocessing",
    "tensorrt_llm_bls",
    "ensemble",
)
MODEL_NAMES = (ENSEMBLE, PRE, ENGINE, POST, BLS)
FRONTS = (ENSEMBLE, BLS)


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton type name without TYPE_, e.g. "INT32"
    dims: tuple[int, ...] = (1,)
    optional: bool = True


@dataclass(frozen=True)
class ClientInput:
    """An input of the fronts, and the model input it feeds (`model`, `name`)."""

    tensor: Tensor
    model: str
    name: str


CLIENT_INPUTS: tuple[ClientInput, ...] = tuple(
    ClientInput(Tensor(name, dtype, dims, not required), model, target)
    for name, dtype, dims, required, model, target in routes.CLIENT_INPUTS
)

# preprocessing output -> engine input
PRE_TO_ENGINE: tuple[tuple[Tensor, str], ...] = tuple(
    (Tensor(name, dtype, dims, False), target) for name, dtype, dims, target in routes.PRE_TO_ENGINE
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

# the engine outputs the fronts pass on to clients, and the token counts
ENGINE_STAT_OUTPUTS: tuple[Tensor, ...] = (
    *(Tensor(name, dtype, dims) for name, dtype, dims, _ in routes.ENGINE_STAT_OUTPUTS),
    *(Tensor(name, "INT32") for name in routes.TOKEN_COUNT_OUTPUTS),
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
    for tensor, _ in PRE_TO_ENGINE:
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
    """Kept for clients that call it directly; stateless, one instance."""
    config = mc.ModelConfig(name=POST, backend="python", max_batch_size=settings.max_batch_size)
    for tensor in POST_INPUTS:
        _add_input(config, tensor)
    _add_output(config, POST_OUTPUT)
    _cpu_instances(config, 1)
    _parameters(
        config,
        {
            "tokenizer_dir": settings.tokenizer_dir,
            "skip_special_tokens": _flag(settings.skip_special_tokens),
            "max_seq_len": str(settings.max_seq_len),
        },
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


def front_config(settings: RepoSettings, name: str) -> mc.ModelConfig:
    """A front (`ensemble` or `tensorrt_llm_bls`): the ensemble's client tensors, decoupled, Python."""
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=settings.max_batch_size)
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


BUILDERS = {
    ENSEMBLE: lambda settings: front_config(settings, ENSEMBLE),
    PRE: preprocessing_config,
    ENGINE: engine_config,
    POST: postprocessing_config,
    BLS: lambda settings: front_config(settings, BLS),
}


def render(config: mc.ModelConfig) -> str:
    """The config.pbtxt text (protobuf text format; parses back with `parse`)."""
    return text_format.MessageToString(config, as_utf8=True)


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def all_configs(settings: RepoSettings) -> dict[str, mc.ModelConfig]:
    return {name: build(settings) for name, build in BUILDERS.items()}
