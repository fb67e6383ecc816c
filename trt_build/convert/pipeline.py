"""`swallow-trt convert`: Hugging Face Llama safetensors -> a checkpoint TensorRT-LLM loads, in bounded memory.

One skeleton for both targets: refuse an existing output, read config.json, list the source files and
start hashing them on a thread (which then runs beside torch's import if the job needs torch, the calibration
and the writing), refuse what the format cannot hold, resolve the dtype, open and check the source once,
range-check it for float16, calibrate it (or reuse a calibration), and write everything into a directory that
appears whole or not at all, with the calibration and a manifest. What is written is the writer's business:
`TrtllmWriter` (engine target: config.json + rank files) or `ModelOptWriter` (pytorch target: ModelOpt unified
HF checkpoint).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trt_build import __version__
from trt_build.common.manifest import write_manifest
from trt_build.common.outdir import atomic_output_dir, check_output
from trt_build.common.targets import resolve_target
from trt_build.convert.options import ConvertJob, ConvertOptions
from trt_build.quant.schemes import ENGINE, kv_cache_dtype_named, needs_calibration
from trt_build.source.files import SourceHasher, safetensors_files
from trt_build.source.hf_config import read_hf_config

if TYPE_CHECKING:
    from trt_build.quant.calibration_result import CalibrationResult
    from trt_build.source.checkpoint import SourceCheckpoint


class CheckpointWriter(Protocol):
    """What one checkpoint format adds to the skeleton."""

    target: str
    format: str

    @classmethod
    def refuse(cls, options: ConvertOptions) -> None:
        """Refuse options the format cannot hold, before any tensor is read."""

    def source_tensors(self) -> set[str]:
        """The HF tensors it reads."""

    def quantization(self) -> dict[str, Any]:
        """The quantization block its config holds."""

    def options_record(self) -> dict[str, Any]:
        """The manifest's `options`."""

    def write(
        self, directory: Path, source: SourceCheckpoint, calibration: CalibrationResult | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Configs and tensor files into `directory`; returns (its manifest records, its timings)."""


def writer_for(target: str) -> type[CheckpointWriter]:
    """The writer of a target's format, imported once the source is being hashed: the ModelOpt writer imports
    torch (2-3 s), which then overlaps the hashing. The engine writer imports torch only for a job that casts
    or quantizes (`TrtllmWriter.rank_files`)."""
    if target == ENGINE:
        from trt_build.convert.trtllm_writer import TrtllmWriter

        return TrtllmWriter
    from trt_build.convert.modelopt_writer import ModelOptWriter

    return ModelOptWriter


def convert(options: ConvertOptions) -> Path:
    """Convert `options.model_dir` into a checkpoint of `options.target` at `options.output`; returns it."""
    started = time.perf_counter()
    output, model_dir = Path(options.output), Path(options.model_dir)
    target = resolve_target(options.target)
    check_output(output, options.overwrite, [model_dir])  # before calibration, which can take hours
    quant, quant_options = options.quant, options.quant_options
    kv_cache_dtype_named(quant_options.kv_cache_dtype)
    arch = read_hf_config(model_dir)
    files = safetensors_files(model_dir)
    hasher = SourceHasher([*files, model_dir / "config.json"], model_dir, compute=options.sha256)
    hasher.start()  # while torch is imported below
    try:
        writer_type = writer_for(target)
        writer_type.refuse(options)
        from trt_build.convert.streaming import release_freed_memory_eagerly
        from trt_build.source.checkpoint import open_source, resolve_dtype, torch_dtype

        release_freed_memory_eagerly()
        dtype_name = resolve_dtype(options.dtype, arch)
        writer = writer_type(ConvertJob(options, arch, dtype_name))
        needed = writer.source_tensors()
        source = open_source(model_dir, arch, needed, files)
        calibration, calibration_record = None, None
        if needs_calibration(quant, quant_options.kv_cache_dtype):
            from trt_build.convert.calibration import keep_calibration, run_calibration

            if dtype_name == "float16":  # a weight float16 cannot hold: refused now, not after calibration
                source.check_range(needed, torch_dtype(dtype_name))
            calibration, calibration_record = run_calibration(source, arch, quant, quant_options)
        with atomic_output_dir(output, options.overwrite, [model_dir]) as tmp:
            write_started = time.perf_counter()
            records, writer_timings = writer.write(tmp, source, calibration)
            write_seconds = time.perf_counter() - write_started
            if calibration is not None:  # extra files are harmless to trtllm-build
                keep_calibration(tmp, calibration, calibration_record)
            source_files = hasher.result()
            write_manifest(
                tmp,
                "convert",
                target=writer.target,
                format=writer.format,
                tool_version=__version__,
                options=writer.options_record(),
                quantization=writer.quantization(),
                source={"model_dir": str(model_dir.resolve()), "files": source_files},
                **records,
                calibration=calibration_record,
                timings={
                    "calibration_seconds": calibration_record["seconds"] if calibration_record else 0.0,
                    "convert_seconds": round(write_seconds, 3),
                    "total_seconds": round(time.perf_counter() - started, 3),
                    **writer_timings,
                    "source_sha256_seconds": round(hasher.seconds, 3),
                },
            )
    finally:
        hasher.stop.set()
    return output


def convert_checkpoint(model_dir: Path, output: Path, **options: Any) -> Path:
    """`convert` with the options as keywords (`ConvertOptions`' fields): the Python caller's shorthand."""
    return convert(ConvertOptions(Path(model_dir), Path(output), **options))
