"""Talking to the Triton front model over gRPC streaming (tritonclient's asyncio client).

One channel for the app; one `ModelStreamInfer` call per request, which sends the request and half-closes,
so Triton ends the call after the request's last response. Leaving the iteration early (the client went
away, a stop string matched) cancels the call: Triton then cancels the request, and the front stops the
engine. Input types come from the repository's own table of client inputs (CLIENT_INPUTS).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from triton_repo.openai_front.settings import FRONT_MODELS
from triton_repo.repository.engine_configs import CLIENT_INPUTS

# Triton config type -> (wire type, numpy type) for the inputs the front declares
WIRE_TYPES = {
    "STRING": ("BYTES", np.object_),
    "BOOL": ("BOOL", np.bool_),
    "INT32": ("INT32", np.int32),
    "UINT64": ("UINT64", np.uint64),
    "FP32": ("FP32", np.float32),
}
INPUT_TYPES = {row.tensor.name: WIRE_TYPES[row.tensor.dtype] for row in CLIENT_INPUTS}
UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class TritonUnavailable(Exception):
    """Triton does not answer, or has no ready front model."""


class TritonFailure(Exception):
    """The gRPC call failed for another reason than the model's answer."""


class ModelError(Exception):
    """The front model answered the request with an error (its message is meant for the client)."""


@dataclass(frozen=True)
class Piece:
    """One response of the front: a text delta and the token counts it carries (None when absent)."""

    text: str
    input_tokens: int | None
    output_tokens: int | None


def infer_input(name: str, value: object) -> grpcaio.InferInput:
    """A batch-of-one tensor; lists (stop_words) become one row of several elements."""
    wire, numpy_type = INPUT_TYPES[name]
    row = value if isinstance(value, list) else [value]
    if wire == "BYTES":
        row = [str(item).encode("utf-8") for item in row]
    data = np.array([row], dtype=numpy_type)
    tensor = grpcaio.InferInput(name, list(data.shape), wire)
    tensor.set_data_from_numpy(data)
    return tensor


def _count(result: grpcaio.InferResult, name: str) -> int | None:
    array = result.as_numpy(name)
    return None if array is None or array.size == 0 else int(array.reshape(-1)[0])


def _text(result: grpcaio.InferResult) -> str:
    array = result.as_numpy("text_output")
    return "" if array is None else b"".join(array.reshape(-1)).decode("utf-8")


def _is_final(result: grpcaio.InferResult) -> bool:
    parameters = result.get_response().parameters
    return "triton_final_response" in parameters and parameters["triton_final_response"].bool_param


class TritonFront:
    """The app's connection to tritonserver and the name of the front model it calls."""

    def __init__(self, grpc_url: str, front_model: str | None = None):
        self.client = grpcaio.InferenceServerClient(grpc_url.removeprefix("grpc://"))
        self.fixed_model = front_model
        self.found_model: str | None = None

    async def close(self) -> None:
        await self.client.close()

    async def model(self) -> str:
        """The front model: the one named, else the first of FRONT_MODELS that is ready (remembered)."""
        if self.fixed_model:
            return self.fixed_model
        if self.found_model is None:
            for name in FRONT_MODELS:
                if await self._ready(name):
                    self.found_model = name
                    break
            else:
                raise TritonUnavailable(f"Triton has none of {', '.join(FRONT_MODELS)} ready yet.")
        return self.found_model

    async def _ready(self, name: str) -> bool:
        try:
            return bool(await self.client.is_model_ready(name, client_timeout=5))
        except InferenceServerException:
            return False

    async def ready(self) -> bool:
        """Whether the front model is ready for requests now."""
        try:
            return await self._ready(await self.model())
        except TritonUnavailable:
            return False

    async def stream(self, inputs: dict[str, object]) -> AsyncIterator[Piece]:
        """The front's responses to one request; closing the iterator early cancels the request."""
        model = await self.model()
        request = {
            "model_name": model,
            "inputs": [infer_input(name, value) for name, value in inputs.items()],
            "request_id": f"openai-{uuid.uuid4().hex}",  # unique: nothing a client sends is a key
        }

        async def one_request():
            yield request

        call = self.client.stream_infer(one_request())
        try:
            async for result, error in call:
                if error is not None:
                    raise ModelError(error.message())
                yield Piece(
                    _text(result), _count(result, "num_input_tokens"), _count(result, "num_output_tokens")
                )
                if _is_final(result):
                    return
        except grpc.aio.AioRpcError as error:
            if error.code() in UNAVAILABLE_CODES:
                raise TritonUnavailable(f"Triton does not answer ({error.details()}).") from None
            raise TritonFailure(f"Triton ended the request: {error.code().name} {error.details()}") from None
        finally:
            call.cancel()
