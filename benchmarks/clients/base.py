"""What every protocol client shares: its options, the interface the load generator drives, Triton's
input names, and the decoding of a streamed response into timestamps, text and token counts."""

from __future__ import annotations

import abc
import itertools
import uuid
from dataclasses import dataclass

from benchmarks.load.datasets import BenchRequest
from benchmarks.metrics.summary import RequestRecord

# The Swallow / TensorRT-LLM ensemble's tensor names (docs/triton.md §1.2).
TEXT_INPUT = "text_input"
MAX_TOKENS = "max_tokens"
STREAM = "stream"
TEXT_OUTPUT = "text_output"
# Optional inputs, sent only when the model declares them.
EXCLUDE_INPUT = "exclude_input_in_output"
MIN_TOKENS_INPUTS = ("min_tokens", "min_length")  # the newer name first
RETURN_NUM_OUTPUT_TOKENS = "return_num_output_tokens"
# Per-response output token counts. Triton's OpenAI frontend sums them (the tokens of each response,
# as the vLLM backend sends); some backends send the running total instead. Clients keep every value
# and `metrics.read_server_counts` decides which reading fits (served.sweep.count_output_tokens).
NUM_OUTPUT_TOKENS = "num_output_tokens"


@dataclass(frozen=True)
class ClientOptions:
    url: str
    model: str
    ignore_eos: bool = False
    request_timeout_s: float = 600.0
    endpoint: str = "auto"  # openai: completions | chat | auto (chat when the prompt has messages)


class StreamClient(abc.ABC):
    """A streaming client. `send` fills the record; it must never raise for a failed request."""

    protocol = ""
    default_url = ""

    def __init__(self, options: ClientOptions):
        self.options = options
        self.notes: list[str] = []  # what the client had to decide about the server (shown to the user)
        self.run_id = uuid.uuid4().hex[:12]
        self.sent = itertools.count()

    def request_id(self) -> str:
        """Unique for every request, warm-up and levels included, so a server's logs and traces tell
        requests apart (our fronts give the engine ids of their own; other servers may key state on it)."""
        return f"{self.run_id}-{next(self.sent)}"

    @abc.abstractmethod
    async def setup(self) -> None:
        """Connect once and learn what the server accepts (e.g. the model's optional inputs)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""

    @abc.abstractmethod
    async def send(self, request: BenchRequest, record: RequestRecord) -> None:
        """Send one streaming request; append chunk times, set end_time, counts or error."""


def optional_triton_inputs(declared: set[str], request: BenchRequest, ignore_eos: bool) -> dict[str, object]:
    """The optional ensemble inputs worth sending, limited to those the model declares."""
    values: dict[str, object] = {}
    if EXCLUDE_INPUT in declared:
        values[EXCLUDE_INPUT] = True
    if RETURN_NUM_OUTPUT_TOKENS in declared:
        values[RETURN_NUM_OUTPUT_TOKENS] = True
    if ignore_eos:
        name = next((n for n in MIN_TOKENS_INPUTS if n in declared), None)
        if name:
            values[name] = request.output_tokens
    return values


def triton_notes(declared: set[str], ignore_eos: bool) -> list[str]:
    notes = []
    if EXCLUDE_INPUT not in declared:
        notes.append(
            f"the model has no `{EXCLUDE_INPUT}` input: a TensorRT-LLM ensemble then echoes the prompt, "
            "which inflates tokenizer-counted output"
        )
    if ignore_eos and not any(n in declared for n in MIN_TOKENS_INPUTS):
        notes.append(
            "--ignore-eos: the model declares no min_tokens/min_length input; output length is not forced"
        )
    if RETURN_NUM_OUTPUT_TOKENS not in declared:
        notes.append("the server returns no token counts; output tokens are counted with the tokenizer")
    return notes
