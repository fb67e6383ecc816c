"""What an OpenAI front needs to know: where Triton is, which model to call, what to call it, where to listen."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 9000  # the port Triton's own OpenAI frontend uses
# The Triton models that take OpenAI-shaped requests (CLIENT_INPUTS), in the order they are preferred when
# none is named: the BLS keeps detokenizer state per request and stops the engine when a client goes away.
FRONT_MODELS = ("tensorrt_llm_bls", "ensemble")


@dataclass(frozen=True)
class OpenAIFrontSettings:
    """`grpc_url` is Triton's gRPC host:port. `front_model` None: the first of FRONT_MODELS Triton has
    ready. `served_model_name` None: the front model's name. `default_max_tokens`: when a request sets
    neither max_tokens nor max_completion_tokens (the repository refuses more than max_seq_len allows).
    `max_body_bytes`: larger request bodies are refused (413) before they are read whole."""

    grpc_url: str = "127.0.0.1:8001"
    front_model: str | None = None
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    default_max_tokens: int = 1024
    max_body_bytes: int = 16 << 20
