"""Every front path answers exactly, against a real tritonserver on the CPU engine.

`ensemble` and `tensorrt_llm_bls`, over HTTP (`generate`, `generate_stream`) and gRPC (streamed or not),
with and without a client request id, one at a time and 32 at once with some ids shared: the streamed
deltas concatenate byte for byte to the non-streamed answer, which is the full decode of the tokens the
model walks (tests/served_models.py), and carry no U+FFFD the full decode lacks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.front_clients import ask
from tests.served_models import PROMPT, answer
from triton_repo.models.detokenizer import REPLACEMENT
from triton_repo.repository.engine_configs import FRONTS
from trt_build.source.chain_model import CHAIN_SENTENCE

PROTOCOLS = ("http", "grpc")
IDS = (None, "same-id-for-everyone")


@pytest.fixture(scope="module")
def server(cycle_triton):
    return cycle_triton


def assert_exact(deltas: list[str], expected: str) -> None:
    """Deltas join to the full decode; only the last may show a U+FFFD, and only one the decode has."""
    assert "".join(deltas) == expected, deltas
    assert not any(REPLACEMENT in delta for delta in deltas[:-1]), deltas


@pytest.mark.slow
@pytest.mark.parametrize("request_id", IDS, ids=("no-id", "with-id"))
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", FRONTS)
def test_streamed_equals_non_streamed_equals_the_full_decode(server, tokenizer, model, protocol, request_id):
    for max_tokens in (21, 10):  # 21 ends on a whole character, 10 inside 齉
        expected = answer(tokenizer, max_tokens)
        fields = {"text_input": PROMPT, "max_tokens": max_tokens}
        whole = ask(server, protocol, model, fields, request_id, stream=False)
        deltas = ask(server, protocol, model, fields, request_id, stream=True)
        assert whole == [expected]
        assert_exact(deltas, expected)
        assert [delta for delta in deltas if delta] == list(expected)  # streamed as each character completes
    assert expected.endswith(REPLACEMENT) and REPLACEMENT not in answer(tokenizer, 21)


@pytest.mark.slow
@pytest.mark.parametrize("model", FRONTS)
def test_an_echoed_prompt_is_the_same_streamed_or_not(server, tokenizer, model):
    fields = {"text_input": PROMPT, "max_tokens": 9, "exclude_input_in_output": False}
    expected = PROMPT + answer(tokenizer, 9)
    assert ask(server, "http", model, fields, None, stream=False) == [expected]
    assert_exact(ask(server, "grpc", model, fields, None, stream=True), expected)


@pytest.mark.slow
def test_32_concurrent_streams_with_and_without_shared_ids_are_all_exact(server, tokenizer):
    """Every combination of front and protocol, a third without an id, a third all sharing one id, each
    stream with its own length, so text crossing between streams would show."""

    def one(index: int) -> tuple[list[str], str]:
        model, protocol = FRONTS[index % 2], PROTOCOLS[index // 2 % 2]
        request_id = (None, "shared", f"own-{index}")[index % 3]
        max_tokens = 9 + index
        deltas = ask(
            server, protocol, model, {"text_input": PROMPT, "max_tokens": max_tokens}, request_id, True
        )
        return deltas, answer(tokenizer, max_tokens)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    for deltas, expected in results:
        assert_exact(deltas, expected)


@pytest.fixture(scope="module")
def chain(chain_triton):
    return chain_triton


@pytest.mark.slow
def test_the_chain_sentence_comes_back_exactly_on_every_path_32_at_once(chain):
    """The Japanese chain model answers its sentence (kanji and emoji split over tokens, a ZWJ sequence, a
    flag, a variation selector, half-width kana, a combining mark, 𠮷) to any prompt: 32 concurrent
    requests over every front, protocol, streaming mode and id choice, plain and chat prompts."""

    def one(index: int) -> tuple[list[str], bool]:
        model, protocol = FRONTS[index % 2], PROTOCOLS[index // 2 % 2]
        stream = index % 8 < 6 or protocol == "grpc"
        request_id = (None, "shared", f"own-{index}")[index % 3]
        fields = {"text_input": f"質問{index}は?", "max_tokens": 200}
        if index % 4 == 3:
            fields["apply_chat_template"] = True
        return ask(chain, protocol, model, fields, request_id, stream), stream

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    for deltas, streamed in results:
        assert_exact(deltas, CHAIN_SENTENCE)
        assert len(deltas) > 20 if streamed else len(deltas) == 1


@pytest.mark.slow
def test_postprocessing_decodes_exactly_the_ids_it_is_given_and_keeps_no_state(server, tokenizer):
    first, second = tokenizer.encode("😀", add_special_tokens=False)

    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))

    def decode(ids: list[int]) -> str:
        tokens = httpclient.InferInput("TOKENS_BATCH", [1, 1, len(ids)], "INT32")
        tokens.set_data_from_numpy(np.array([[ids]], dtype=np.int32))
        length = httpclient.InferInput("SEQUENCE_LENGTH", [1, 1], "INT32")
        length.set_data_from_numpy(np.array([[len(ids)]], dtype=np.int32))
        try:
            result = client.infer("postprocessing", [tokens, length], request_id="one-id")
        except InferenceServerException as error:
            return f"{error.status()}: {error.message()}"
        return result.as_numpy("OUTPUT").reshape(-1)[0].decode("utf-8")

    assert decode([first]) == tokenizer.decode([first]) and REPLACEMENT in decode([first])
    assert decode([second]) == tokenizer.decode([second])  # nothing of the first call carried over
    assert decode([first, second]) == "😀"
    refused = decode([first] * 5000)
    assert refused.startswith("400") and "TOKENS_BATCH" in refused and "max_seq_len" in refused
