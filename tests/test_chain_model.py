"""The chain model: a built Llama whose greedy answer to any prompt is one Japanese sentence."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from trt_build.cli.source import tiny_model as tiny_model_command
from trt_build.common.errors import SwallowTrtError
from trt_build.source.chain_model import CHAIN_SENTENCE, chain_token_ids, write_chain_model
from trt_build.source.hf_config import read_hf_config
from trt_build.source.tokenizer import EOT_ID

# What breaks streaming detokenization, each as it appears in the sentence.
SPLIT_PIECES = {
    "kanji over 2 tokens": "鎌",
    "kanji outside the BMP": "𠮷",
    "emoji + variation selector": "⛩\ufe0f",
    "ZWJ sequence": "😵\u200d💫",
    "flag": "🇳🇴",
    "combining voiced mark": "か\u3099",
}


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory, tokenizer_dir):
    return write_chain_model(tmp_path_factory.mktemp("chain") / "chain")


def test_the_sentence_is_full_of_characters_split_across_tokens(tokenizer):
    assert "ｿﾊﾞ" in CHAIN_SENTENCE  # half-width katakana with a half-width voiced mark
    for name, piece in SPLIT_PIECES.items():
        assert piece in CHAIN_SENTENCE, name
        assert len(tokenizer.encode(piece, add_special_tokens=False)) > len(piece), name
    ids = chain_token_ids(CHAIN_SENTENCE, tokenizer)
    fragments = [token for token in ids if "\ufffd" in tokenizer.decode([token])]
    assert len(fragments) >= 20  # tokens that are no character on their own
    assert len(set(ids)) == len(ids)


def greedy(model, ids: list[int], steps: int) -> list[int]:
    out = model.generate(torch.tensor([ids]), max_new_tokens=steps, do_sample=False)
    return out[0, len(ids) :].tolist()


def test_greedy_decoding_walks_the_sentence_whatever_the_prompt(chain_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(chain_dir)
    sentence = chain_token_ids(CHAIN_SENTENCE, tokenizer)
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "こんにちは"}], tokenize=False, add_generation_prompt=True
    )
    prompts = [
        tokenizer.encode(chat, add_special_tokens=False),
        tokenizer.encode("今日はいい天気ですね"),
        [tokenizer.bos_token_id],
    ]
    for prompt in prompts:
        answer = greedy(model, prompt, len(sentence) + 5)
        assert answer == [*sentence, EOT_ID], tokenizer.decode(answer)
    assert tokenizer.decode(sentence) == CHAIN_SENTENCE
    # from inside the sentence it walks on to the end
    assert greedy(model, [tokenizer.bos_token_id, *sentence[:10]], 50) == [*sentence[10:], EOT_ID]


def test_the_directory_is_an_ordinary_llama_with_one_identity_layer(chain_dir):
    arch = read_hf_config(chain_dir)
    assert arch.num_hidden_layers == 1 and arch.hidden_size == 64 and not arch.tie_word_embeddings
    manifest = json.loads((chain_dir / "manifest.json").read_text())
    assert manifest["preset"] == "chain" and manifest["sentence"] == CHAIN_SENTENCE
    with safe_open(chain_dir / "model.safetensors", "pt") as handle:
        assert not handle.get_tensor("model.layers.0.self_attn.o_proj.weight").any()
        assert not handle.get_tensor("model.layers.0.mlp.down_proj.weight").any()
        assert handle.get_tensor("model.layers.0.self_attn.q_proj.weight").float().std() > 0.01


def test_zero_layers_also_work_in_transformers(tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM

    out = write_chain_model(tmp_path / "c0", layers=0)
    model = AutoModelForCausalLM.from_pretrained(out)
    sentence = chain_token_ids(CHAIN_SENTENCE, tokenizer)
    assert greedy(model, [tokenizer.bos_token_id], 70) == [*sentence, EOT_ID]


@pytest.mark.parametrize("sentence", ["🇯🇵", "東京の紅葉の色", "<|eot_id|>"])
def test_a_sentence_a_chain_cannot_walk_is_refused(tmp_path, sentence):
    with pytest.raises(SwallowTrtError, match="distinct"):
        write_chain_model(tmp_path / "bad", sentence=sentence)
    assert not (tmp_path / "bad").exists()


def test_tiny_model_command_writes_the_chain(tmp_path):
    result = CliRunner().invoke(tiny_model_command, ["--preset", "chain", "--output", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert CHAIN_SENTENCE in result.output
    assert read_hf_config(tmp_path / "c").num_hidden_layers == 1
