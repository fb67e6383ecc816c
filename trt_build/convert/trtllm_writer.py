"""The engine target's writer: a TensorRT-LLM checkpoint, config.json and one rank file per GPU.

Every rank file is a stream (docs/trtllm-checkpoint.md §2-4): its layout is computed from
`weight_map.rank_plan` before any data is read, and tensors are produced one group at a time (read only this
rank's slice, transform, write, release), so peak memory is one tensor group whatever the number of layers.
TensorRT-LLM's own converter loads the whole model and is killed for lack of host RAM on 70B. Ranks are
written on `--workers` threads; one failing (or Ctrl-C) cancels the others.

A conversion that changes no value (the default: the model's own dtype, no quantization) moves bytes
(`CopiedRank`) and never imports torch, which takes 2-3 s before a first byte could be written otherwise;
one that casts or quantizes makes its tensors with torch (`trtllm_ranks.RankJob`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trt_build.common.errors import SwallowTrtError
from trt_build.convert.options import ConvertJob, ConvertOptions
from trt_build.convert.streaming import WrittenFile, prefetched, raw_row_blocks, write_files
from trt_build.formats.safetensors_stream import RawRows, TensorSpec
from trt_build.formats.trtllm_config import rank_file, trtllm_config
from trt_build.parallel.rules import check_awq_group, check_parallelism, rank_coordinates
from trt_build.parallel.weight_map import RankTensor, rank_plan
from trt_build.quant.schemes import ENGINE, SCHEMES, schemes_for
from trt_build.source.checkpoint import STORED_AS, SourceCheckpoint, torch_dtype

if TYPE_CHECKING:
    from trt_build.quant.calibration_result import CalibrationResult

PREFETCH_DEPTH = 2  # tensor groups read ahead of the writer, per rank


@dataclass(frozen=True)
class CopiedRank:
    """A rank file whose values are the source's own: unquantized (or weight-only, which trtllm-build quantizes)
    in the dtype the source is stored in. Its tensors are source rows, sliced and concatenated, so they are
    written as bytes without torch, from the moment the source is open."""

    rank: int
    plan: list[RankTensor]
    dtype: str  # the safetensors dtype of the source and the checkpoint
    source: SourceCheckpoint

    def layout(self) -> list[TensorSpec]:
        return [(tensor.name, self.dtype, tensor.shape) for tensor in self.plan]

    def tensors(self) -> Iterator[tuple[str, RawRows]]:
        for tensor in self.plan:
            for piece in tensor.slices:
                for block in raw_row_blocks(self.source, piece):
                    yield tensor.name, block


class RankFile(Protocol):
    """What writing one rank file needs: its layout, then its tensors in that order."""

    rank: int

    def layout(self) -> list[TensorSpec]: ...

    def tensors(self) -> Iterator[tuple[str, Any]]: ...


def _write_rank(
    job: RankFile, directory: Path, sha256: bool, cancel: threading.Event, position: int
) -> tuple[WrittenFile, float]:
    """rank{N}.safetensors: header from the layout, then each tensor group as it is produced."""
    started = time.perf_counter()
    files = [(directory / rank_file(job.rank), job.layout())]
    tensors = prefetched(job.tensors(), PREFETCH_DEPTH, cancel)
    (written,) = write_files(files, tensors, sha256, f"rank{job.rank}", position, cancel)
    return written, time.perf_counter() - started


def _run_ranks(
    jobs: list[RankFile], directory: Path, workers: int, sha256: bool
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

    def rank_files(
        self, source: SourceCheckpoint, calibration: CalibrationResult | None, copy: bool = True
    ) -> list[RankFile]:
        """Copied ranks when no value changes (no calibration, no quantized linear, the stored dtype), else (or
        with `copy=False`) ranks made with torch."""
        options, job = self.job.options, self.job
        stored = {source.dtypes[name] for name in self.source_tensors()}
        unchanged = calibration is None and not SCHEMES[options.quant].needs_data
        if copy and unchanged and stored == {STORED_AS[job.dtype_name]}:
            dtype = STORED_AS[job.dtype_name]
            return [CopiedRank(rank, plan, dtype, source) for rank, plan in enumerate(self.plans)]
        from trt_build.convert.trtllm_linears import RankLinears
        from trt_build.convert.trtllm_ranks import RankJob

        linears = RankLinears(SCHEMES[options.quant].quant_algo)
        return [
            RankJob(
                rank,
                rank_coordinates(rank, options.tp)[0],
                plan,
                torch_dtype(job.dtype_name),
                linears,
                source,
                calibration,
                job.group_size,
                job.fp8_kv_cache,
            )
            for rank, plan in enumerate(self.plans)
        ]

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
        jobs = self.rank_files(source, calibration)
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
