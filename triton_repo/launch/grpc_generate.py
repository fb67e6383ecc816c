"""Triton's HTTP generate extension answered over tritonserver's gRPC stream, for the HTTP gate.

Why: tritonserver 2.51 hands every HTTP generate response (and each answer's start and end) to its HTTP
thread through a socket pair and drops it when that pair is full (docs/triton.md §6.4); its gRPC stream has
no such hand-off. So the gate turns a checked generate body into one `ModelStreamInfer` request, mapped as
tritonserver's own HTTP code maps it (`ConvertGenerateRequest`): a field that names an input becomes that
input, shaped to its dims; any other field inside `parameters` becomes a request parameter; `id` is the
request id. Each response becomes the JSON tritonserver would write (`ExactMappingOutput`): the outputs by
name, a one-element tensor as a scalar, the response parameters, `id`, `model_name` and `model_version`,
keys sorted.

An error in the stream carries its message but not its code. Once answers have been sent, tritonserver's
HTTP stream sends the error as an event too; before, the HTTP status depends on the code, so the gate has
tritonserver's HTTP endpoint answer the request itself. (tritonserver's `triton_grpc_error` header, which
ends the stream with a status instead, was tried: 2.51 reports INTERNAL for every error of a decoupled model
and, under concurrent errors, closed the connection that other streams shared.)
"""

from __future__ import annotations

import json
import math
from typing import Any

from tritonclient.grpc import service_pb2

from triton_repo.client.wire import decode, encode
from triton_repo.launch.generate_check import RESERVED_FIELDS, ModelInput

# a response parameter the gRPC stream adds and the HTTP generate answer does not have
FINAL_FLAG = "triton_final_response"


def wire_type(field: ModelInput) -> str:
    """The protocol's datatype name for a config type (TYPE_STRING is BYTES)."""
    name = field.data_type.removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def tensor_shape(field: ModelInput, count: int) -> list[int]:
    """Triton's shape for `count` values: fixed dims as declared, the innermost variable one (or the batch)
    takes the rest, any other variable one is 1. The gate has checked that `count` fits."""
    dims = [-1, *field.dims] if field.batched else list(field.dims)
    rest = count // math.prod(dim for dim in dims if dim >= 0)
    shape = []
    for dim in reversed(dims):
        shape.append(dim if dim >= 0 else rest)
        rest = rest if dim >= 0 else 1
    return shape[::-1]


def _set_parameter(parameter: service_pb2.InferParameter, value: object) -> None:
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, str):
        parameter.string_param = value
    else:
        parameter.double_param = float(value)


def stream_request(
    body: dict[str, Any], model: str, version: str, inputs: dict[str, ModelInput]
) -> service_pb2.ModelInferRequest:
    """The request for a generate body that passed generate_refusal."""
    nested = body.get("parameters") or {}
    tensors = {name: value for name, value in body.items() if name not in RESERVED_FIELDS}
    tensors.update((name, value) for name, value in nested.items() if name in inputs)
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version, id=body.get("id", ""))
    for name, value in tensors.items():
        field, values = inputs[name], value if isinstance(value, list) else [value]
        tensor = request.inputs.add(name=name, datatype=wire_type(field))
        tensor.shape.extend(tensor_shape(field, len(values)))
        request.raw_input_contents.append(encode(tensor.datatype, values))
    for name, value in nested.items():
        if name not in inputs:
            _set_parameter(request.parameters[name], value)
    return request


def response_fields(response: service_pb2.ModelInferResponse) -> dict[str, object]:
    """One response as tritonserver's generate writes it."""
    fields: dict[str, object] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        fields["id"] = response.id
    for name, parameter in response.parameters.items():
        if name != FINAL_FLAG:
            fields[name] = getattr(parameter, parameter.WhichOneof("parameter_choice"))
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=False):
        values = [_json_value(value) for value in decode(output.datatype, raw)]
        fields[output.name] = values[0] if len(values) == 1 else values
    return dict(sorted(fields.items()))


def _json_value(value: object) -> object:
    """A BYTES element as the text tritonserver's JSON holds."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def is_final(response: service_pb2.ModelInferResponse) -> bool:
    parameters = response.parameters
    return FINAL_FLAG in parameters and parameters[FINAL_FLAG].bool_param


def json_bytes(fields: dict[str, object]) -> bytes:
    """Compact, characters unescaped: as tritonserver writes JSON."""
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_bytes(fields: dict[str, object]) -> bytes:
    """One server-sent event, as tritonserver frames a generate_stream response."""
    return b"data: " + json_bytes(fields) + b"\n\n"
