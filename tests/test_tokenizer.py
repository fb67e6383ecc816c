from trt_build.source.tokenizer import BOS_ID, END_OF_TEXT_ID, EOM_ID, EOT_ID, VOCAB_SIZE

# Ids of Meta's Llama 3 tokenizer (also what the hub's Llama 3.1 / Swallow tokenizers give).
KNOWN_IDS = {
    "東京の紅葉した公園で": [111344, 16144, 113000, 105065, 56051, 119951, 16556],
    "東京の紅葉した公園で、子供たちが遊んでいます。": [
        111344,
        16144,
        113000,
        105065,
        56051,
        119951,
        16556,
        5486,
        127032,
        105459,
        29295,
        109739,
        104127,
        61689,
        1811,
    ],
    "Hello, world! How's it going?": [9906, 11, 1917, 0, 2650, 596, 433, 2133, 30],
}


def test_known_ids(tokenizer):
    for text, ids in KNOWN_IDS.items():
        assert tokenizer.encode(text, add_special_tokens=False) == ids
        assert tokenizer.encode(text) == [BOS_ID, *ids]


def test_special_tokens(tokenizer):
    assert len(tokenizer) == VOCAB_SIZE
    assert tokenizer.bos_token_id == BOS_ID
    assert tokenizer.eos_token_id == EOT_ID
    ids = {
        name: tokenizer.convert_tokens_to_ids(name)
        for name in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")
    }
    assert ids == {"<|end_of_text|>": END_OF_TEXT_ID, "<|eom_id|>": EOM_ID, "<|eot_id|>": EOT_ID}
    assert tokenizer.convert_ids_to_tokens(128255) == "<|reserved_special_token_247|>"


def test_round_trip_mixed_scripts(tokenizer):
    for text in ["ｶﾀｶﾅと　全角スペース", "絵文字👍🏽と改行\n\n終わり", "def f(x):\n    return x**2  # 二乗"]:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_chat_template_has_one_bos(tokenizer):
    messages = [{"role": "system", "content": "日本語で答えて"}, {"role": "user", "content": "こんにちは"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n日本語で答えて<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nこんにちは<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids.count(BOS_ID) == 1 and ids[0] == BOS_ID
