"""The engine target's writer: a TensorRT-LLM checkpoint, config.json and one rank file per GPU.

Every rank file is a stream (docs/trtllm-checkpoint.md §2-4): its layout is computed from
`weight_map.rank_plan` before any data is read, and tensors are produced one group at a time (read only this
rank's slice, transform, write, release), so peak memory is one tensor group whatever the number of layers.
TensorRT-LLM's own converter loads the whole model and is killed for lack of host RAM on 70B. Ranks are
written on `--workers` threads; one failing (or Ctrl-C) cancels the others.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trt_build.common.errors import SwallowTrtError
from trt_build.convert.options import ConvertJob, ConvertOptions
from trt_build.convert.streaming import WrittenFile, prefetched, row_blocks, write_files
from trt_build.convert.trtllm_linears import LinearWeight, RankLinears
from trt_build.formats.safetensors_stream import TensorSpec
from trt_build.formats.trtllm_checkpoint import kv_cache_scale, kv_cache_scale_name
from trt_build.formats.trtllm_config import rank_file, trtllm_config
from trt_build.parallel.rules import check_awq_group, check_parallelism, rank_coordinates
from trt_build.parallel.weight_map import RankTensor, Split, rank_plan
from trt_build.quant.calibration_result import CalibrationResult
from trt_build.quant.schemes import ENGINE, SCHEMES, schemes_for
from trt_build.source.checkpoint import TORCH_DTYPES, SourceCheckpoint

PREFETCH_DEPTH = 2  # tensor groups read ahead of the writer, per rank


@dataclass(frozen=True)
class RankJob:
    """Everything that decides one rank file: its layout is a function of this alone."""

    rank: int
    tp_rank: int
    plan: list[RankTensor]
    dtype: torch.dtype
    linears: RankLinears
    source: SourceCheckpoint
    calibration: CalibrationResult | None = None
    group_size: int = 128
    fp8_kv_cache: bool = False  # add attention.kv_cache_scaling_factor after each layer's qkv

    def linear(self, tensor: RankTensor) -> LinearWeight:
        return LinearWeight(tensor, self.dtype, self.tp_rank, self.calibration, self.group_size)

    def _kv_scale_name(self, tensor: RankTensor) -> str | None:
        """The KV cache scale that follows this tensor (the qkv of a layer), if any."""
        if not (self.fp8_kv_cache and tensor.rule.split is Split.QKV):
            return None
        return kv_cache_scale_name(tensor.name.removesuffix(".weight"))

    def layout(self) -> list[TensorSpec]:
        """Every (name, dtype, shape) of the rank file, computed before any data is read."""
        specs: list[TensorSpec] = []
        for tensor in self.plan:
            if tensor.rule.linear:
                specs += self.linears.layout(self.linear(tensor))
            else:
                specs.append((tensor.name, self.dtype, tensor.shape))
            if kv_name := self._kv_scale_name(tensor):
                specs.append((kv_name, torch.float32, (1,)))
        return specs

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) in layout order; large plain tensors come as consecutive row blocks."""
        for tensor in self.plan:
            if tensor.rule.linear:
                parts = [self.source.read(piece, dtype=self.dtype) for piece in tensor.slices]
                weight = parts[0] if len(parts) == 1 else torch.cat(parts)
                del parts
                yield from self.linears.tensors(self.linear(tensor), weight)
                del weight
                if kv_name := self._kv_scale_name(tensor):
                    assert self.calibration is not None
                    yield kv_name, kv_cache_scale(*self.calibration.kv_amax(tensor.layer))
            else:
                for piece in tensor.slices:
                    for block in row_blocks(self.source, piece, self.dtype):
                        yield tensor.name, block


def _write_rank(
    job: RankJob, directory: Path, sha256: bool, cancel: threading.Event, position: int
) -> tuple[WrittenFile, float]:
    """rank{N}.safetensors: header from the layout, then each tensor group as it is produced."""
    started = time.perf_counter()
    files = [(directory / rank_file(job.rank), job.layout())]
    tensors = prefetched(job.tensors(), PREFETCH_DEPTH, cancel)
    (written,) = write_files(files, tensors, sha256, f"rank{job.rank}", position, cancel)
    return written, time.perf_counter() - started


def _run_ranks(
    jobs: list[RankJob], directory: Path, workers: int, sha256: bool
) -> list[tuple[WrittenFile, float]]:
    """Write ranks on `workers` threads; any failure or interrupt cancels the others before returning."""
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convert-rank") as pool:
        futures: list[Future[tuple[WrittenFile, float]]] = [
            pool.submit(_write_rank, job, directory, sha256, cancel, index % workers)
            for index, job in enumerate(jobs)
        ]
        try:
            pending = set(futures)
            while pending:  # short waits keep the main thread responsive to Ctrl-C / SIGTERM
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                for future in finished:
                    if future.exception() is not None:
                        raise future.exception()  # type: ignore[misc]
        except BaseException:
            cancel.set()
            for future in futures:
                future.cancel()
            wait(futures)
            raise
    return [future.result() for future in futures]


class TrtllmWriter:
    """`convert --target engine`: the TensorRT-LLM checkpoint of a job."""

    target = ENGINE
    format = "TensorRT-LLM checkpoint"
    schemes = schemes_for(ENGINE)

    @classmethod
    def refuse(cls, options: ConvertOptions) -> None:
        """Options this format cannot hold, refused before any tensor is read."""
        if options.quant not in cls.schemes:
            raise SwallowTrtError(
                f"--quant {options.quant!r} is not known.", f"Choose one of {', '.join(cls.schemes)}."
            )

    def __init__(self, job: ConvertJob):
        options, arch = job.options, job.arch
        check_parallelism(arch, options.tp, options.pp)
        if SCHEMES[options.quant].group_size:
            check_awq_group(arch, options.tp, job.group_size)
        self.job = job
        self.plans = [
            rank_plan(arch, options.tp, options.pp, rank, options.use_parallel_embedding)
            for rank in range(options.tp * options.pp)
        ]

    def source_tensors(self) -> set[str]:
        return {piece.hf for plan in self.plans for tensor in plan for piece in tensor.slices}

    def quantization(self) -> dict[str, Any]:
        """The config.json `quantization` block."""
        return SCHEMES[self.job.options.quant].trtllm_block(self.job.group_size, self.job.kv_cache_dtype)

    def options_record(self) -> dict[str, Any]:
        options = self.job.options
        return self.job.record(
            tp=options.tp,
            pp=options.pp,
            workers=options.workers,
            use_parallel_embedding=options.use_parallel_embedding,
        )

    def write(
        self, directory: Path, source: SourceCheckpoint, calibration: CalibrationResult | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """config.json and the rank files; returns (the manifest's `ranks`, the writer's timings)."""
        options, job = self.job.options, self.job
        config = trtllm_config(
            job.arch,
            job.dtype_name,
            options.tp,
            options.pp,
            self.quantization(),
            options.use_parallel_embedding,
        )
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        linears = RankLinears(SCHEMES[options.quant].quant_algo)
        jobs = [
            RankJob(
                rank,
                rank_coordinates(rank, options.tp)[0],
                plan,
                TORCH_DTYPES[job.dtype_name],
                linears,
                source,
                calibration,
                job.group_size,
                job.fp8_kv_cache,
            )
            for rank, plan in enumerate(self.plans)
        ]
        results = _run_ranks(jobs, directory, max(1, min(options.workers, len(jobs))), options.sha256)
        ranks = [
            {
                "name": written.name,
                "bytes": written.bytes,
                "sha256": written.sha256,
                "tensors": written.tensors,
                "seconds": seconds,
                "hash_seconds": written.hash_seconds,
            }
            for written, seconds in results
        ]
        timings = {
            "per_rank_seconds": [round(seconds, 3) for _, seconds in results],
            "rank_sha256_seconds": [round(written.hash_seconds, 3) for written, _ in results],
        }
        return {"ranks": ranks}, timings
