"""Every option of `swallow-trt bench` as one value, so the whole run is a library call (benchmarks.run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_REQUESTS = 100  # measured requests per level when neither a count nor a duration is given
STALL_TIMEOUT_S = 30.0  # nothing back for this long while requests are in flight: the server is stuck
MAX_CONSECUTIVE_ERRORS = 10  # this many failed requests in a row: the server is gone


@dataclass(frozen=True)
class BenchOptions:
    """What to benchmark, how hard, with which prompts, and where the results go. Defaults are the
    command's. With `engine_dir` the run is engine-level (trtllm-bench), else it is served."""

    output: Path  # the results directory to write
    url: str | None = None  # default: the protocol client's
    model: str | None = None  # default: the server's front model (engine-level: from the deployment)
    protocol: str = "grpc"  # a key of benchmarks.clients.CLIENTS
    tokenizer_dir: Path | None = None  # default: the cached Llama 3.1 tokenizer
    concurrency: str | None = None  # "1,4,16": closed-loop levels
    request_rate: str | None = None  # "2,8,inf": open-loop levels, req/s
    arrival: str = "poisson"  # benchmarks.load.generator.ARRIVALS
    burstiness: float = 1.0  # gamma shape for arrival "gamma"
    max_concurrency: int | None = None  # cap on requests in flight in request-rate mode
    num_requests: int | None = None  # per level; default DEFAULT_REQUESTS unless duration_s is given
    duration_s: float | None = None  # seconds of sending per level instead of a count
    warmup: int | None = None  # per level; default one per concurrency slot (trtllm-bench: its own, 2)
    dataset: str = "synthetic"  # synthetic | ja-chat | a JSONL file
    isl: int = 128
    isl_stddev: float = 0.0
    osl: int = 128
    osl_stddev: float = 0.0
    # --isl-chars / --osl-chars as given: characters, tokens and the chars/token ratio, per length
    lengths_in_characters: dict[str, Any] | None = None
    ignore_eos: bool = False
    goodput_spec: str | None = None  # "ttft:500,tpot:50" (ms)
    label: str | None = None  # this build's name in reports; default: the output directory's name
    openai_endpoint: str = "auto"  # auto | completions | chat
    request_timeout_s: float = 600.0
    stall_timeout_s: float = STALL_TIMEOUT_S  # give the server up when nothing comes back for this long
    max_consecutive_errors: int = MAX_CONSECUTIVE_ERRORS  # ... after this many failed requests in a row
    wait_s: float = 0.0  # wait up to this long for the server to be ready (0: say at once that it is not)
    seed: int = 0
    progress: bool = True  # a progress bar per level
    engine_dir: Path | None = None  # engine-level mode: an engine or a pytorch deployment
    hf_model_dir: Path | None = None  # engine-level: the HF checkpoint (tokenizer, config)
    dry_run: bool = False  # engine-level: write and print the trtllm-bench commands only
    overwrite: bool = False

    @property
    def run_label(self) -> str:
        return self.label or self.output.name
