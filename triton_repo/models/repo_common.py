"""Helpers shared by the Python-backend models of a generated repository.

Copied into each model's version directory beside `model.py`: the models run inside containers where
swallow-trt is not installed, so this file imports only numpy, transformers, the Triton stub module and
tokenizer_loading.py (trt_build/source/, copied beside it: the one definition of how a tokenizer is loaded).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizer_loading import load_local_tokenizer

TRUE_WORDS = {"1", "true", "t", "yes", "y", "on"}
FALSE_WORDS = {"0", "false", "f", "no", "n", "off"}


FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class BadRequest(ValueError):
    """A client error: answered with a clear message (HTTP 400 where Triton allows), the server keeps
    serving."""


class ThreadPerRequestModel:
    """A decoupled model that answers each request on its own thread, so streams run concurrently on one
    instance. Subclasses define `run(request, sender)`; every request gets a final response, whatever
    happens in it."""

    name = "model"  # shown in unexpected-error messages

    def __init__(self) -> None:
        self.threads: set[threading.Thread] = set()

    def execute(self, requests):
        for request in requests:
            thread = threading.Thread(target=self.serve, args=(request,), daemon=True)
            self.threads.add(thread)
            thread.start()
        return None

    def serve(self, request) -> None:
        sender = request.get_response_sender()
        try:
            self.run(request, sender)
        except BadRequest as error:
            sender.send(error_response(str(error)), flags=FINAL)
        except Exception as error:  # never leave a client without a final response
            sender.send(error_response(f"{self.name} failed: {error!r}", client_error=False), flags=FINAL)
        finally:
            self.threads.discard(threading.current_thread())

    def ended_early(self, request, sender, response, engine_id: str) -> bool:
        """Pass an engine error on, or stop the engine when the client went away; True if either happened.
        Subclasses define `cancel(engine_id)` with their engine's stop request."""
        if response.has_error():
            sender.send(passed_on(response.error()), flags=FINAL)
            return True
        if request.is_cancelled() or sender.is_cancelled():
            self.cancel(engine_id)
            cancelled = pb_utils.TritonError("The request was cancelled.", pb_utils.TritonError.CANCELLED)
            sender.send(pb_utils.InferenceResponse(output_tensors=[], error=cancelled), flags=FINAL)
            return True
        return False

    def finalize(self) -> None:
        for thread in list(self.threads):
            thread.join(timeout=5)


def model_parameters(args: dict[str, str]) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


def flag(value: str | None, default: bool) -> bool:
    text = (value or "").strip().lower()
    return True if text in TRUE_WORDS else False if text in FALSE_WORDS else default


def repository_path(args: dict[str, str], value: str) -> Path:
    """A path parameter; relative ones are relative to the model repository root (it can be moved)."""
    path = Path(value)
    return path if path.is_absolute() else Path(args["model_repository"]).resolve().parent / path


def load_tokenizer(args: dict[str, str], parameters: dict[str, str]):
    """The repository's tokenizer (`tokenizer_dir`), loaded as the toolkit loads it (tokenizer_loading.py, copied
    beside this file)."""
    return load_local_tokenizer(repository_path(args, parameters["tokenizer_dir"]))


def input_array(request, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def scalar(request, name: str, default: Any = None) -> Any:
    """The first element of an optional input (all rows of a request share one value here)."""
    array = input_array(request, name)
    if array is None or array.size == 0:
        return default
    return array.reshape(-1)[0].item()


def strings(array: np.ndarray | None, what: str) -> list[str]:
    """Decode a BYTES tensor's elements, rejecting invalid UTF-8 with a message naming the input."""
    if array is None:
        return []
    out = []
    for item in array.reshape(-1):
        if isinstance(item, str):
            out.append(item)
            continue
        try:
            out.append(bytes(item).decode("utf-8"))
        except UnicodeDecodeError as error:
            raise BadRequest(f"{what} is not valid UTF-8 (byte {error.start}): send UTF-8 text.") from None
    return out


def error_response(message: str, client_error: bool = True):
    """An error response; a client's mistake is INVALID_ARG, which Triton answers over HTTP as 400."""
    code = pb_utils.TritonError.INVALID_ARG if client_error else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


def passed_on(error):
    """The error of a model this one called, as this model's response, its code kept."""
    return pb_utils.InferenceResponse(
        output_tensors=[], error=pb_utils.TritonError(error.message(), error.code())
    )


def text_tensor(name: str, texts: list[str], shape: tuple[int, ...]) -> Any:
    data = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(shape)
    return pb_utils.Tensor(name, data)
