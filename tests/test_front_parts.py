"""The front's parts without a server: per-request stream assembly and the prompt size limits."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from triton_repo.models import tensor_routes
from triton_repo.models.detokenizer import IncrementalDetokenizer
from triton_repo.models.front_stream import FIRST, LAST, FrontStream, combine
from triton_repo.models.prompt_limits import PromptLimits, PromptRefused, longest_token_bytes

RULES = {name: how for name, _, _, how in tensor_routes.ENGINE_STAT_OUTPUTS}


@pytest.fixture(scope="module")
def decode(tokenizer):
    return lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True)


def stream(decode, streaming: bool, echo=()) -> FrontStream:
    return FrontStream(IncrementalDetokenizer(decode), streaming, RULES, echo)


def test_a_streaming_client_gets_each_character_with_the_tokens_it_took(tokenizer, decode):
    ids = tokenizer.encode("紅😀", add_special_tokens=False)  # 1 + 2 tokens
    front = stream(decode, streaming=True)
    sent = [front.add([token], {}) for token in ids]
    assert [(r.text, r.output_tokens) for r in sent if r] == [("紅", 1), ("😀", 2)]
    assert sent[1] is None  # half an emoji: nothing yet
    assert front.finish() is None  # nothing left: the stream ends with an empty final response


def test_a_non_streaming_client_gets_one_response_with_everything(tokenizer, decode):
    ids = tokenizer.encode("紅葉😀", add_special_tokens=False)[:-1]  # ends inside the emoji
    front = stream(
        decode, streaming=False, echo=[128000, *tokenizer.encode("東京", add_special_tokens=False)]
    )
    assert all(front.add([token], {}) is None for token in ids)
    last = front.finish()
    assert last.text == "東京" + decode(ids) and last.text.endswith("\ufffd")
    assert last.output_tokens == len(ids)  # the echoed prompt is not output


def test_tokens_that_make_no_text_are_still_counted_at_the_end(tokenizer, decode):
    front = stream(decode, streaming=True)
    assert front.add(tokenizer.encode("紅", add_special_tokens=False), {}).text == "紅"
    assert front.add([128009], {}) is None  # <|eot_id|> is skipped text
    last = front.finish()
    assert (last.text, last.output_tokens) == ("", 1)


def test_engine_statistics_combine_per_token_first_or_last():
    held: dict[str, np.ndarray] = {}
    for step in range(3):
        combine(
            held,
            {
                "output_log_probs": np.full((1, 1, 1), -step, np.float32),
                "generation_logits": np.full((1, 1, 1, 4), step, np.float32),
                "context_logits": np.full((1, 2, 4), step, np.float32),
                "cum_log_probs": np.full((1, 1), -step, np.float32),
            },
            RULES,
        )
    assert held["output_log_probs"].reshape(-1).tolist() == [0, -1, -2]
    assert held["generation_logits"].shape == (1, 1, 3, 4)
    assert held["context_logits"].max() == 0  # the first response's
    assert held["cum_log_probs"].item() == -2  # the last response's
    assert all(how in (LAST, FIRST) or isinstance(how, int) for how in RULES.values())


def test_statistics_are_sent_once_with_the_response_that_covers_them(tokenizer, decode):
    first, second = tokenizer.encode("😀", add_special_tokens=False)
    front = stream(decode, streaming=True)
    assert front.add([first], {"output_log_probs": np.full((1, 1, 1), -1.0, np.float32)}) is None
    sent = front.add([second], {"output_log_probs": np.full((1, 1, 1), -2.0, np.float32)})
    assert sent.stats["output_log_probs"].reshape(-1).tolist() == [-1.0, -2.0]
    assert front.finish() is None


def test_one_token_of_llama_3_covers_at_most_128_bytes(tokenizer):
    assert longest_token_bytes(tokenizer) == 128  # a run of 128 spaces
    limits = PromptLimits(tokenizer, max_input_len=64)
    assert limits.max_bytes == 128 * 64
    limits.check_bytes("text_input", [limits.max_bytes])
    with pytest.raises(PromptRefused, match=r"text_input is 8193 bytes.*max_input_len.*shorten text_input"):
        limits.check_bytes("text_input", [limits.max_bytes + 1])
    spaces = " " * limits.max_bytes  # the densest text: exactly max_input_len tokens
    assert len(tokenizer.encode(spaces, add_special_tokens=False)) == 64


def test_messages_are_checked_before_rendering(tokenizer):
    limits = PromptLimits(tokenizer, max_input_len=64)
    for raw, message in [
        ("not json", "messages is not valid JSON"),
        ("[" * 100_000, "nested too deeply"),
        ('{"role": "user"}', "must be a JSON list"),
        ('[{"role": "user"}]', "must be a JSON list"),
        (json.dumps([{"role": "user", "content": "紅" * 3000}]), "messages is 9004 bytes of text"),
    ]:
        with pytest.raises(PromptRefused, match=message):
            limits.messages(raw)


@pytest.mark.parametrize(
    "conversation",
    [
        [{"role": "user", "content": "東京の紅葉は?"}],
        [
            {"role": "system", "content": "日本語で答えて😀"},
            {"role": "user", "content": "紅葉は?"},
            {"role": "assistant", "content": "美しいです。"},
            {"role": "user", "content": "富士山は?"},
        ],
    ],
)
def test_rendering_is_the_tokenizer_s_own(tokenizer, conversation):
    limits = PromptLimits(tokenizer, max_input_len=4096)
    expected = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert limits.render(conversation) == expected


def fake_tokenizer(template: str | None) -> SimpleNamespace:
    return SimpleNamespace(
        chat_template=template, special_tokens_map={}, backend_tokenizer=None, get_vocab=lambda: {"abcd": 0}
    )


def test_rendering_stops_at_the_cap_and_stays_in_the_sandbox():
    hundred_megabytes = "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"
    limits = PromptLimits(fake_tokenizer(hundred_megabytes), max_input_len=16)  # 64 bytes
    with pytest.raises(PromptRefused, match="messages renders to over 64 bytes"):
        limits.render([{"role": "user", "content": ""}])
    escape = PromptLimits(fake_tokenizer("{{ messages.__class__.__mro__ }}"), max_input_len=16)
    with pytest.raises(PromptRefused, match="The chat template refused messages"):
        escape.render([{"role": "user", "content": ""}])
    with pytest.raises(PromptRefused, match="no chat template"):
        PromptLimits(fake_tokenizer(None), max_input_len=16).render([])


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_tokens", -(2**31), "a JSON max_tokens of 2147483648 into -2147483648"),  # wrapped by Triton
        ("max_tokens", 0, "max_tokens 0 is out of range: send an integer at least 1"),
        ("max_tokens", 1.5, "send an integer"),
        ("max_tokens", True, "send an integer"),
        ("temperature", -0.5, "temperature -0.5 is out of range"),
        ("temperature", float("inf"), "a finite number"),
        ("top_p", 0.0, "top_p 0.0 is out of range: send a finite number above 0 and at most 1"),
        ("top_p", 1.5, "at most 1"),
        ("top_k", -1, "top_k -1 is out of range"),
        ("min_tokens", -5, "min_tokens -5"),
        ("repetition_penalty", 0.0, "above 0"),
        ("beam_width", 2, "beam_width 2 is not served here: send beam_width 1"),
        ("num_return_sequences", 0, "num_return_sequences 0 is not served here"),
    ],
)
def test_request_values_outside_the_table_are_refused_naming_the_field(name, value, message):
    assert message in tensor_routes.refusal(name, value)


def test_in_range_values_pass_and_the_engine_bound_lowers_max_tokens():
    for name, value in [("max_tokens", 1), ("top_p", 1.0), ("temperature", 0.0), ("seed", 2**64 - 1)]:
        assert tensor_routes.refusal(name, value) is None
    assert tensor_routes.refusal("max_tokens", 4095, high=4095) is None
    assert "at most 4095" in tensor_routes.refusal("max_tokens", 4096, high=4095)
    values = {"top_k": 3, "temperature": -1.0, "seed": None}
    assert tensor_routes.request_refusal(values.get).startswith("temperature -1.0")
    assert tensor_routes.request_refusal({"top_k": 3}.get) is None


@pytest.mark.parametrize("name", ["max_tokens", "min_tokens", "top_k", "top_p", "temperature", "seed"])
def test_the_openai_schema_takes_its_bounds_from_the_same_table(name):
    """Around each bound, the OpenAI front accepts exactly what the Triton fronts accept."""
    import pydantic

    from triton_repo.openai_front.schema import CompletionRequest

    allowed = tensor_routes.RANGES[name]
    step = 1 if allowed.kind is int else 1e-6
    for bound in filter(lambda b: b is not None, (allowed.low, allowed.high)):
        for value in (allowed.kind(bound - step), allowed.kind(bound), allowed.kind(bound + step)):
            try:
                CompletionRequest(model="m", prompt="x", **{name: value})
                accepted = True
            except pydantic.ValidationError as error:
                accepted = False
                assert error.errors()[0]["loc"] == (name,)
            assert accepted == (tensor_routes.refusal(name, value) is None), (name, value)


def test_temperature_above_two_is_an_openai_limit_not_a_triton_one():
    """TensorRT-LLM takes any temperature >= 0; the OpenAI API caps it at 2, so only its front refuses 2.5."""
    import pydantic

    from triton_repo.openai_front.schema import CompletionRequest

    assert tensor_routes.refusal("temperature", 50.0) is None
    CompletionRequest(model="m", prompt="x", temperature=2.0)
    with pytest.raises(pydantic.ValidationError):
        CompletionRequest(model="m", prompt="x", temperature=2.5)
