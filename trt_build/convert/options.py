"""What `convert` and `calibrate` are asked to do: their options, gathered once (the CLI fills them, and so
can any Python caller), and what the conversion skeleton resolves from them before reading any weight."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trt_build.quant.schemes import AWQ_GROUP_SIZE, SCHEMES
from trt_build.source.hf_config import LlamaArchitecture

DTYPE_CHOICES = ("auto", "bfloat16", "float16")
DEFAULT_MAX_SHARD_BYTES = 5 << 30  # transformers' save_pretrained default (5 GB), for the unified checkpoint


@dataclass(frozen=True)
class QuantOptions:
    """Options of `--quant` schemes beyond the scheme name (the calibration and its inputs)."""

    kv_cache_dtype: str = "auto"  # auto (the model dtype) | fp8
    group_size: int = AWQ_GROUP_SIZE  # AWQ group size
    calib_data: str = "builtin"  # builtin | FILE.jsonl | FILE.txt
    calib_size: int = 128
    calib_seq_len: int = 512
    device: str = "cpu"  # where calibration runs
    calibration_dir: Path | None = None  # reuse a saved CalibrationResult instead of calibrating


@dataclass(frozen=True)
class ConvertOptions:
    """Everything `swallow-trt convert` is told."""

    model_dir: Path
    output: Path
    target: str = "engine"  # engine (TensorRT-LLM checkpoint) | pytorch (ModelOpt unified) | auto
    dtype: str = "auto"  # one of DTYPE_CHOICES; auto = the model's config.json dtype
    tp: int = 1
    pp: int = 1
    quant: str = "none"
    quant_options: QuantOptions = field(default_factory=QuantOptions)
    workers: int = 1  # ranks converted concurrently (engine target)
    overwrite: bool = False
    use_parallel_embedding: bool = False  # engine target: shard the embedding over TP ranks
    sha256: bool = True  # hash source and output files for the manifest (about 1 s of CPU per GB)
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES  # pytorch target: largest safetensors shard


@dataclass(frozen=True)
class ConvertJob:
    """What the skeleton resolved before reading any weight, handed to the checkpoint writer."""

    options: ConvertOptions
    arch: LlamaArchitecture
    dtype_name: str  # bfloat16 | float16 | float32

    @property
    def group_size(self) -> int:
        return self.options.quant_options.group_size

    @property
    def kv_cache_dtype(self) -> str:
        return self.options.quant_options.kv_cache_dtype

    @property
    def fp8_kv_cache(self) -> bool:
        return self.kv_cache_dtype == "fp8"

    def record(self, **specific: Any) -> dict[str, Any]:
        """The manifest's `options`: what every target records, then the target's own `specific` ones."""
        options = self.options
        return {
            "model_dir": str(options.model_dir),
            "dtype": self.dtype_name,
            "quant": options.quant,
            "kv_cache_dtype": self.kv_cache_dtype,
            "group_size": self.group_size if SCHEMES[options.quant].group_size else None,
            "sha256": options.sha256,
            **specific,
        }


@dataclass(frozen=True)
class CalibrateOptions:
    """Everything `swallow-trt calibrate` is told: calibrate a model on its own, for any later format."""

    model_dir: Path
    output: Path
    quant: str = "fp8"
    calibration: QuantOptions = field(default_factory=QuantOptions)  # its data, size, device, group size
    overwrite: bool = False
