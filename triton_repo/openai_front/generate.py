"""One answer from the Triton front: text deltas, then how it finished and its token counts.

Chat and completions, streamed or not, all run through here, so a streamed answer is by construction the
non-streamed one in pieces. Token counts are the front's (num_input_tokens, and num_output_tokens summed
over responses as each response counts its own tokens): the repository's tokenizer, its chat template and
its one BOS. An answer a stop string ended counts the tokens generated up to the one that completed it. `finish_reason` is "length" when the engine used all of max_tokens, else "stop" (the end id
`<|eot_id|>`, a stop word or a stop string).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from triton_repo.openai_front.errors import OpenAIError, model_error
from triton_repo.openai_front.schema import Generation
from triton_repo.openai_front.stops import StopText
from triton_repo.openai_front.triton_client import ModelError, TritonFailure, TritonFront, TritonUnavailable


@dataclass(frozen=True)
class Finish:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


async def answer(front: TritonFront, generation: Generation) -> AsyncIterator[str | Finish]:
    """Non-empty text deltas, then one Finish. Raises OpenAIError (nothing else) for a failed request."""
    stops = StopText(generation.stops)
    prompt_tokens = completion_tokens = 0
    stopped = False
    pieces = front.stream(generation.inputs)
    try:
        async for piece in pieces:
            if piece.input_tokens is not None:
                prompt_tokens = piece.input_tokens
            completion_tokens += piece.output_tokens or 0
            text, stopped = stops.push(piece.text)
            if text:
                yield text
            if stopped:
                break
    except ModelError as error:
        raise model_error(str(error), generation.prompt_field) from None
    except TritonFailure as error:
        raise OpenAIError(500, str(error)) from None
    except TritonUnavailable as error:
        raise OpenAIError(503, f"{error} Try again when the server is ready.", code="unavailable") from None
    finally:
        await pieces.aclose()  # cancels the Triton request if it is still running
    rest = "" if stopped else stops.flush()
    if rest:
        yield rest
    reason = "stop" if stopped or completion_tokens < generation.max_tokens else "length"
    yield Finish(reason, prompt_tokens, completion_tokens)
