"""Errors in the OpenAI shape, `{"error": {"message", "type", "param", "code"}}`, with the right status.

400 for a request the server cannot serve as sent (naming the field), 404 for an unknown model, 503 while
Triton or its front model is not ready, 500 for anything else. No answer ever carries a traceback, and the
log never carries the request's text (only the exception's type and where it happened).
"""

from __future__ import annotations

import logging
import re
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("triton_repo.openai_front")

ERROR_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    503: "service_unavailable",
    500: "internal_error",
}


class OpenAIError(Exception):
    """An answer in the OpenAI error shape. `param` names the request field at fault, if one is."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, dict[str, str | None]]:
        kind = ERROR_TYPES.get(
            self.status, "invalid_request_error" if self.status < 500 else "internal_error"
        )
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param, code)


# How the repository's models (triton_repo/models/) word a request they refuse: over the model's limits or
# malformed. These are the client's to fix (400, naming the field: PROMPT stands for `messages` or `prompt`);
# "<model> failed: ..." and any other message is a fault of the server (500).
PROMPT = "<prompt>"
CLIENT_FAULTS: tuple[tuple[re.Pattern[str], str | None], ...] = (
    (re.compile(r"max_tokens|request_output_len|max_seq_len", re.IGNORECASE), "max_tokens"),
    (re.compile(r"prompt|text_input|messages|template|max_input_len|input_ids", re.IGNORECASE), PROMPT),
    (re.compile(r"not valid UTF-8|stop_words|bad_words|seed|min_tokens", re.IGNORECASE), None),
)
INTERNAL_MARKERS = re.compile(r"\bfailed: |Traceback|Exception\(|Error\(")


def model_error(message: str, prompt_field: str) -> OpenAIError:
    """A Triton model's error message as an OpenAI error: 400 when it is about the request, else 500.
    `prompt_field` is what this endpoint calls its prompt (`messages` or `prompt`)."""
    if not INTERNAL_MARKERS.search(message):
        for pattern, param in CLIENT_FAULTS:
            if pattern.search(message):
                return invalid(message, prompt_field if param == PROMPT else param)
    return OpenAIError(500, f"The model failed: {message}")


TYPE_TAGS = re.compile(r"^(str|int|float|bool|list|dict)$|[\[\-]")  # pydantic names union members so


def _field_name(location: tuple[str | int, ...]) -> str:
    """pydantic's error location as the dotted field name a client sent ("messages.0.role"), without the
    "body" prefix and the names pydantic gives the members of a union ("stop.str" is "stop")."""
    parts = [str(part) for part in location if part != "body" and not TYPE_TAGS.search(str(part))]
    return ".".join(parts) or "body"


def validation_error(error: RequestValidationError) -> OpenAIError:
    """The first problem pydantic found, as a 400 that names the field."""
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request", "type": ""}
    field = _field_name(tuple(first.get("loc", ())))
    if first.get("type") == "extra_forbidden":
        return invalid(f"{field} is not supported by this server; remove it from the request.", field)
    if first.get("type") in ("json_invalid", "model_attributes_type") and field in ("body", "0"):
        return invalid("The request body is not a JSON object.", None)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return invalid(f"{field}: {message}", field)


def install_handlers(app: FastAPI) -> None:
    """Every error the app can meet leaves it in the OpenAI shape."""

    @app.exception_handler(OpenAIError)
    async def _openai(_: Request, error: OpenAIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, error: RequestValidationError) -> JSONResponse:
        return validation_error(error).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        status = error.status_code
        message = "Not found." if status == 404 else str(error.detail)
        return OpenAIError(status, message).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        where = "".join(traceback.format_tb(error.__traceback__))  # code lines only, never the request
        log.error("internal error (%s) in %s\n%s", type(error).__name__, request.url.path, where)
        return OpenAIError(500, "Internal server error; the server log has the details.").response()
