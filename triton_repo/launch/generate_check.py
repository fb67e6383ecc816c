"""What a Triton HTTP `generate` / `generate_stream` body may hold, checked before tritonserver parses it.

tritonserver turns the JSON fields of a generate request into input tensors in its own C++ code, before
any model runs: a string, float or null where an INT32 belongs is a 500 "Unable to parse 'data'" naming no
field, an integer of 2**32 or more wraps silently into INT32, an unknown field becomes a request parameter
nobody reads, and `stream: true` on the one-answer endpoint is a 200 whose body is an error (docs/triton.md
§6.4). The HTTP gate (http_gate.py) asks this module first, with the model's own input list from
`/v2/models/<model>/config`, and answers 400 with the message: every message names the field and says what
to send. Value ranges come from the one table the models check too (tensor_routes.RANGES). As in Triton, the
`parameters` object may hold inputs too; its other entries are request parameters (scalars only).
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any

from tritonclient.utils import TRITON_RESERVED_REQUEST_PARAMS, TRITON_RESERVED_REQUEST_PARAMS_PREFIX

from triton_repo.models.tensor_routes import RANGES, refusal

GENERATE, GENERATE_STREAM = "generate", "generate_stream"
# top-level fields the generate extension reads itself rather than as inputs
RESERVED_FIELDS = ("id", "parameters")

# Triton config type -> (what a JSON value must be, the bounds of an integer type)
INTEGER_BOUNDS = {
    "TYPE_INT8": (-(2**7), 2**7 - 1),
    "TYPE_INT16": (-(2**15), 2**15 - 1),
    "TYPE_INT32": (-(2**31), 2**31 - 1),
    "TYPE_INT64": (-(2**63), 2**63 - 1),
    "TYPE_UINT8": (0, 2**8 - 1),
    "TYPE_UINT16": (0, 2**16 - 1),
    "TYPE_UINT32": (0, 2**32 - 1),
    "TYPE_UINT64": (0, 2**64 - 1),
}
FLOAT_TYPES = ("TYPE_FP16", "TYPE_BF16", "TYPE_FP32", "TYPE_FP64")


@dataclass(frozen=True)
class ModelInput:
    """One input of a served model, as its config declares it."""

    name: str
    data_type: str  # TYPE_INT32, TYPE_STRING, ...
    dims: tuple[int, ...]
    optional: bool
    batched: bool = False  # the model batches: a batch dimension comes first

    @property
    def elements(self) -> int | None:
        """How many values the input holds (None: any number, a -1 dimension)."""
        return None if any(dim < 0 for dim in self.dims) else math.prod(self.dims)


def model_inputs(config: dict[str, Any]) -> dict[str, ModelInput]:
    """The inputs of a model config as `/v2/models/<model>/config` returns it."""
    return {
        entry["name"]: ModelInput(
            entry["name"],
            entry.get("data_type", "TYPE_INVALID"),
            tuple(int(dim) for dim in entry.get("dims", ())),
            bool(entry.get("optional", False)),
            int(config.get("max_batch_size", 0)) > 0,
        )
        for entry in config.get("input", [])
    }


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _value_refusal(field: ModelInput, value: object) -> str | None:
    """Why one JSON value cannot be this input's value (the type first, then the range)."""
    kind = field.data_type
    if kind == "TYPE_STRING":
        return None if isinstance(value, str) else f"{field.name} must be a string, not {_shown(value)}."
    if kind == "TYPE_BOOL":
        return (
            None if isinstance(value, bool) else f"{field.name} must be true or false, not {_shown(value)}."
        )
    if kind in INTEGER_BOUNDS:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{field.name} must be an integer, not {_shown(value)}."
        problem = refusal(field.name, value) if field.name in RANGES else None
        low, high = INTEGER_BOUNDS[kind]
        if problem or not low <= value <= high:
            return problem or f"{field.name} {value} is out of range: send an integer from {low} to {high}."
        return None
    if kind in FLOAT_TYPES:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{field.name} must be a number, not {_shown(value)}."
        if field.name in RANGES:
            return refusal(field.name, value)
        return None if math.isfinite(value) else f"{field.name} {value} is not a finite number."
    return None  # a type the JSON form cannot carry anyway: tritonserver says so itself


def field_refusal(field: ModelInput, value: object) -> str | None:
    """Why `value` (a JSON value, or a list of them) cannot be sent as `field`, or None."""
    if value is None:
        return f"{field.name} is null: send a value or leave the field out."
    values = value if isinstance(value, list) else [value]
    if field.elements is not None and len(values) != field.elements:
        return f"{field.name} takes {field.elements} value(s), not {len(values)}."
    for item in values:
        problem = _value_refusal(field, item)
        if problem:
            return problem
    return None


def parameter_refusal(name: str, value: object) -> str | None:
    """Why `value` cannot be the request parameter `name` (an entry of `parameters` that is no input)."""
    if name in TRITON_RESERVED_REQUEST_PARAMS or name.startswith(TRITON_RESERVED_REQUEST_PARAMS_PREFIX):
        return f"parameters.{name} is reserved by Triton: leave it out."
    if isinstance(value, (str, bool)) or (isinstance(value, int) and -(2**63) <= value < 2**63):
        return None
    if isinstance(value, float) and math.isfinite(value):
        return None
    return (
        f"parameters.{name} must be a string, an integer, a finite number or true/false, not {_shown(value)}."
    )


def generate_refusal(body: object, inputs: dict[str, ModelInput], model: str, endpoint: str) -> str | None:
    """Why a generate request for `model` (its `inputs`) cannot be served, or None to pass it on."""
    if not isinstance(body, dict):
        return f"The body of a {endpoint} request must be a JSON object of fields, not {_shown(body)}."
    if not isinstance(body.get("id", ""), str):
        return f"id must be a string, not {_shown(body['id'])}."
    nested = body.get("parameters", {})
    if not isinstance(nested, dict):
        return f"parameters must be a JSON object of fields, not {_shown(nested)}."
    for name, value in body.items():
        if name in RESERVED_FIELDS:
            continue
        field = inputs.get(name)
        if field is None:
            close = difflib.get_close_matches(name, list(inputs), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            return f"{name} is not a field of {model}: {hint}its fields are {', '.join(sorted(inputs))}."
        problem = field_refusal(field, value)
        if problem:
            return problem
    for name, value in nested.items():
        if name in inputs and name in body:
            return f"{name} is sent twice, at the top level and in parameters: send it once."
        problem = field_refusal(inputs[name], value) if name in inputs else parameter_refusal(name, value)
        if problem:
            return problem
    fields = {**body, **nested}
    missing = [field.name for field in inputs.values() if not field.optional and field.name not in fields]
    if missing:
        return f"{model} needs {', '.join(missing)}: send {'it' if len(missing) == 1 else 'them'}."
    if endpoint == GENERATE and fields.get("stream") is True:
        return (
            f"stream true asks for events, but {endpoint} answers once: "
            f"use /v2/models/{model}/{GENERATE_STREAM}, or send stream false."
        )
    return None
