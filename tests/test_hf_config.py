import pytest

from trt_build.common.errors import SwallowTrtError
from trt_build.source.hf_config import hf_config_dict, parse_hf_config
from trt_build.source.tiny_model import PRESETS


@pytest.mark.parametrize("form", ["v4", "v5", "both"])
def test_both_config_forms_read_the_same(form):
    arch = PRESETS["8b-shape"]
    parsed = parse_hf_config(hf_config_dict(arch, form))
    assert parsed == arch
    assert parsed.rope_theta == 500000.0 and parsed.rope_scaling["rope_type"] == "llama3"


def test_v5_form_has_no_v4_rope_keys_and_v4_has_no_v5_keys():
    v5 = hf_config_dict(PRESETS["tiny"], "v5")
    assert (
        "rope_theta" not in v5
        and v5["rope_scaling"] is None
        and v5["rope_parameters"]["rope_theta"] == 500000.0
    )
    v4 = hf_config_dict(PRESETS["tiny"], "v4")
    assert "rope_parameters" not in v4 and "rope_theta" not in v4["rope_scaling"]


def test_old_rope_type_key_is_understood():
    raw = hf_config_dict(PRESETS["tiny"], "v4")
    raw["rope_scaling"] = {"type": "llama3", "factor": 8.0}
    assert parse_hf_config(raw).rope_scaling == {"rope_type": "llama3", "factor": 8.0}


def test_unsupported_architecture_is_refused():
    raw = hf_config_dict(PRESETS["tiny"])
    raw["architectures"] = ["Qwen2ForCausalLM"]
    with pytest.raises(SwallowTrtError, match="Qwen2ForCausalLM.*not supported"):
        parse_hf_config(raw)


def test_missing_keys_are_named():
    raw = hf_config_dict(PRESETS["tiny"])
    del raw["hidden_size"]
    with pytest.raises(SwallowTrtError, match="missing hidden_size"):
        parse_hf_config(raw)
