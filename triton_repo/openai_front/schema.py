"""The requests, as pydantic models that follow the OpenAI API, turned into one `Generation` for Triton.

What the Triton front can honour is accepted; every other field of the OpenAI API is refused with a 400
that names it (pydantic's `extra="forbid"`), never silently ignored. Fields that only have a meaning this
server does not support (`n`, `logprobs`, `echo`, ...) are accepted at their neutral value alone.
Extensions that vLLM-style clients send (`top_k`, `min_tokens`, `ignore_eos`) are honoured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from triton_repo.models.tensor_routes import RANGES

MAX_STOP_STRINGS = 4  # as the OpenAI API
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(Strict):
    include_usage: StrictBool = False


class ChatMessage(Strict):
    role: StrictStr
    content: object  # checked below, so that an error names `messages.N.content` alone

    @field_validator("role")
    @classmethod
    def known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not supported; use one of {', '.join(sorted(ROLES))}")
        return role

    @field_validator("content")
    @classmethod
    def text_only(cls, content: object) -> str:
        """A string, or a list of text parts ({"type": "text", "text": ...}) joined by newlines as vLLM
        does; images, audio and files are refused."""
        if isinstance(content, str):
            return content
        if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
            raise ValueError("must be a string or a list of text parts")
        texts = []
        for part in content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str) or len(part) != 2:
                raise ValueError(f"only text parts are supported (got {str(part.get('type'))[:40]!r})")
            texts.append(part["text"])
        return "\n".join(texts)

    def as_template_message(self) -> dict[str, str]:
        return {"role": ROLES[self.role], "content": str(self.content)}


def ranged(name: str, high: float | None = None) -> Any:
    """The type of a field the Triton front reads as `name`, with the bounds it checks (RANGES); `high`: a
    lower upper bound the OpenAI API itself sets."""
    allowed = RANGES[name]
    low = {"gt": allowed.low} if allowed.above else {"ge": allowed.low}
    return Annotated[allowed.kind, Field(strict=True, allow_inf_nan=False, le=high or allowed.high, **low)]


# OpenAI fields whose other values ask for what this server does not do: accepted at these values only.
NEUTRAL: dict[str, tuple[object, ...]] = {
    "n": (1,),
    "logprobs": (False, 0),
    "top_logprobs": (0,),
    "echo": (False,),
    "best_of": (1,),
    "store": (False,),
}


def neutral_only(value: object, info: ValidationInfo) -> object:
    allowed = NEUTRAL[info.field_name]
    if value is not None and not any(type(value) is type(ok) and value == ok for ok in allowed):
        shown = " or ".join(json.dumps(v) for v in allowed)
        raise ValueError(f"this server supports only {shown} (got {json.dumps(value)})")
    return value


class SamplingFields(Strict):
    """What chat and completions requests share."""

    model: StrictStr
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: ranged("max_tokens") | None = None
    stop: object = ()  # a string or a list of strings, checked below
    temperature: ranged("temperature", high=2.0) | None = None  # the OpenAI API's bound
    top_p: ranged("top_p") | None = None
    seed: ranged("seed") | None = None
    presence_penalty: ranged("presence_penalty") | None = None
    frequency_penalty: ranged("frequency_penalty") | None = None
    n: Annotated[int, Field(strict=True)] | None = None
    user: StrictStr | None = None  # an end-user id for abuse monitoring; it changes no answer
    # vLLM-style extensions (benchmark clients send them)
    top_k: ranged("top_k") | None = None
    min_tokens: ranged("min_tokens") | None = None
    ignore_eos: StrictBool | None = None

    _neutral = field_validator(*NEUTRAL, check_fields=False)(neutral_only)

    @field_validator("stop")
    @classmethod
    def few_stops(cls, stop: object) -> tuple[str, ...]:
        """The stop strings, empty ones dropped."""
        stops = [stop] if isinstance(stop, str) else [] if stop is None else stop
        if not isinstance(stops, list) or not all(isinstance(item, str) for item in stops):
            raise ValueError("must be a string or a list of strings")
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed (got {len(stops)})")
        return tuple(item for item in stops if item)

    @field_validator("stream_options")
    @classmethod
    def options_need_stream(cls, options: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if options is not None and not info.data.get("stream"):
            raise ValueError("only allowed when stream is true")
        return options

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: ranged("max_tokens") | None = None
    logprobs: StrictBool | None = None
    top_logprobs: int | None = None
    store: bool | None = None

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingFields):
    prompt: object  # one text, as a string or a list of one string: checked below
    logprobs: int | None = None
    echo: bool | None = None
    best_of: Annotated[int, Field(strict=True)] | None = None

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    @field_validator("prompt")
    @classmethod
    def one_text(cls, prompt: object) -> str:
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and prompt and all(isinstance(item, str) for item in prompt):
            raise ValueError(f"one prompt per request is supported (got {len(prompt)})")
        raise ValueError("must be text (a string); token-id prompts are not supported")


@dataclass(frozen=True)
class Generation:
    """One request to the Triton front, in its input names (CLIENT_INPUTS)."""

    inputs: dict[str, object]
    max_tokens: int
    stops: tuple[str, ...] = ()
    prompt_field: str = "prompt"  # the request field a prompt-length error is about


def generation(request: ChatCompletionRequest | CompletionRequest, default_max_tokens: int) -> Generation:
    """The front's inputs for a request: always streamed from Triton, with token counts returned."""
    max_tokens = request.requested_max_tokens() or default_max_tokens
    inputs: dict[str, object] = {
        "max_tokens": max_tokens,
        "stream": True,
        "exclude_input_in_output": True,
        "return_num_input_tokens": True,
        "return_num_output_tokens": True,
    }
    if isinstance(request, ChatCompletionRequest):
        conversation = [message.as_template_message() for message in request.messages]
        inputs["text_input"] = ""
        inputs["messages"] = json.dumps(conversation, ensure_ascii=False)  # rendered by the repository
        prompt_field = "messages"
    else:
        inputs["text_input"] = request.prompt
        prompt_field = "prompt"
    stops = request.stop
    if stops:
        inputs["stop_words"] = list(stops)  # the engine stops early; the text is cut here (stops.py)
    sampling = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "min_tokens": max_tokens if request.ignore_eos else request.min_tokens,
    }
    inputs.update({name: value for name, value in sampling.items() if value is not None})
    return Generation(inputs, max_tokens, stops, prompt_field)
