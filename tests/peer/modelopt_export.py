"""Peer reference: quantize a HF Llama directory with NVIDIA ModelOpt and export its unified checkpoint.

Run with the ModelOpt peer venv (`make modelopt-peer`), not the project venv:
    .venv-modelopt/bin/python tests/peer/modelopt_export.py MODEL_DIR OUTPUT_DIR:MODE [OUTPUT_DIR:MODE ...]
MODE: fp8 | fp8_kv | int4_awq; several exports share one process (importing ModelOpt takes seconds). Calibration is ModelOpt's own (random token ids, CPU); the test compares
names, dtypes, shapes, scale sharing and weight-only values with `swallow-trt convert --target pytorch`.
Standalone on purpose: this venv has transformers 4.57 and ModelOpt 0.47, not the project's packages.
"""

from __future__ import annotations

import copy
import json
import sys
import warnings
from pathlib import Path

import torch


def quant_config(mode: str):
    import modelopt.torch.quantization as mtq

    if mode == "fp8":
        return copy.deepcopy(mtq.FP8_DEFAULT_CFG)
    if mode == "fp8_kv":
        config = copy.deepcopy(mtq.FP8_DEFAULT_CFG)
        config["quant_cfg"] = [*config["quant_cfg"], *copy.deepcopy(mtq.FP8_KV_CFG["quant_cfg"])]
        return config
    if mode == "int4_awq":
        return copy.deepcopy(mtq.INT4_AWQ_CFG)
    raise SystemExit(f"unknown mode {mode!r} (fp8, fp8_kv, int4_awq)")


def main(model_dir: str, output: str, mode: str) -> None:
    import modelopt.torch.quantization as mtq
    from modelopt import __version__ as modelopt_version
    from modelopt.torch.export import export_hf_checkpoint
    from transformers import LlamaForCausalLM

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16, use_safetensors=True)
    model.eval()
    vocab = model.config.vocab_size
    batches = [torch.randint(0, vocab, (2, 64), generator=torch.Generator().manual_seed(i)) for i in range(4)]

    def forward_loop(m) -> None:
        with torch.no_grad():
            for ids in batches:
                m(input_ids=ids)

    model = mtq.quantize(model, quant_config(mode), forward_loop)
    with torch.no_grad():
        export_hf_checkpoint(model, export_dir=output)
    (Path(output) / "peer.json").write_text(
        json.dumps({"modelopt": modelopt_version, "mode": mode, "torch": torch.__version__}) + "\n"
    )
    print(f"exported {mode} with modelopt {modelopt_version} to {output}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or not all(":" in export for export in sys.argv[2:]):
        raise SystemExit(__doc__)
    for export in sys.argv[2:]:
        output, mode = export.rsplit(":", 1)
        main(sys.argv[1], output, mode)
