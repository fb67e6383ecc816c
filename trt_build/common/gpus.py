"""GPU profiles: the hardware numbers the planner and the trtllm-build rules depend on.

A profile is data, one row per GPU. Capacities are the vendor's nominal "GB" taken as 10^9 bytes,
which is slightly *less* than what nvidia-smi reports (an "80 GB" H100 shows 81559 MiB), so plans err
on the safe side. TFLOPs are dense (no 2:4 sparsity); None where no source was found.

Sources (cited per row as [tag]):
  [BM]  docs/metrics.md §4.1 (H100 SXM and H200 SXM: HBM, bandwidth, dense
        BF16/FP8; datasheet figures 1,979/3,958 TFLOPS are with sparsity).
  [A100] NVIDIA A100 datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf) as tabulated at
        glennklockwood.com/garden/processors/A100: 40 GB HBM2 1.555 TB/s; 80 GB HBM2e 2.039 TB/s;
        BF16 312 TFLOPS dense; no FP8 tensor cores.
  [L40S] NVIDIA L40S datasheet (product tables, e.g. mullet.se L40/L40S sheet): 48 GB GDDR6 with ECC,
        864 GB/s, BF16 362.05 TFLOPS dense (733 sparse), FP8 733 TFLOPS dense (1,466 sparse).
  [B200] HGX B200 at 1,000 W per glennklockwood.com/garden/processors/B200: BF16 2,250 / FP8 4,500
        TFLOPS dense, 8 TB/s; memory 180 GB per GPU in HGX B200 systems (nvidia-smi shows 179 GB,
        docs.vultr.com HGX B200 hardware overview; the package carries 192 GB).
  [SPEC] NVIDIA product spec sheets, as tabulated in docs/metrics.md §4.1: L4 24 GB GDDR6 300 GB/s,
        BF16 121 / FP8 242.5 TFLOPS dense (242 / 485 with sparsity); A10G (AWS G5) 24 GB GDDR6 600 GB/s,
        Ampere, no FP8; H100 PCIe 80 GB HBM2e 2.0 TB/s, BF16 756 / FP8 1,513 dense; H100 NVL 94 GB HBM3
        3.9 TB/s, BF16 835 / FP8 1,671 dense; GH200 96 GB HBM3 4.0 TB/s (144 GB HBM3e variant 4.9 TB/s),
        the H100 SXM's GH100 compute.
  [CC]  Compute capability: developer.nvidia.com/cuda-gpus (A100 8.0, A10G 8.6, L4 / L40S 8.9,
        H100 / H200 / GH200 9.0, B200 10.0). FP8 tensor cores exist from 8.9 (Ada) on; TensorRT-LLM gates FP8 context FMHA on
        SM >= 89 (docs/trtllm-checkpoint.md §5.2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from trt_build.common.errors import SwallowTrtError, UsageError

GB = 10**9


@dataclass(frozen=True)
class GpuProfile:
    name: str
    description: str
    memory_bytes: int
    bandwidth_bytes_per_s: int
    compute_capability: tuple[int, int]
    bf16_dense_tflops: float | None
    fp8_dense_tflops: float | None
    nvlink: bool  # TP across GPUs without NVLink (PCIe only) pays for every all-reduce

    @property
    def sm(self) -> int:
        """The SM version as TensorRT-LLM writes it (9.0 -> 90)."""
        return self.compute_capability[0] * 10 + self.compute_capability[1]

    @property
    def fp8(self) -> bool:
        """FP8 tensor cores (Ada / Hopper / Blackwell, SM >= 89)."""
        return self.sm >= 89

    def as_dict(self) -> dict:
        return {**asdict(self), "sm": self.sm, "fp8": self.fp8}


# name -> profile. Keep the names short: they are typed on the command line (GPU=h100).
PROFILES: dict[str, GpuProfile] = {
    p.name: p
    for p in (
        # [BM] [CC]
        GpuProfile("h100", "NVIDIA H100 SXM 80 GB HBM3", 80 * GB, 3_350 * GB, (9, 0), 989.0, 1979.0, True),
        # [BM] [CC]: same GH100 die as H100, more and faster memory
        GpuProfile("h200", "NVIDIA H200 SXM 141 GB HBM3e", 141 * GB, 4_800 * GB, (9, 0), 989.0, 1979.0, True),
        # [A100] [CC]
        GpuProfile("a100-80g", "NVIDIA A100 SXM 80 GB HBM2e", 80 * GB, 2_039 * GB, (8, 0), 312.0, None, True),
        GpuProfile("a100-40g", "NVIDIA A100 SXM 40 GB HBM2", 40 * GB, 1_555 * GB, (8, 0), 312.0, None, True),
        # [L40S] [CC]: PCIe card, no NVLink
        GpuProfile("l40s", "NVIDIA L40S 48 GB GDDR6", 48 * GB, 864 * GB, (8, 9), 362.05, 733.0, False),
        # [SPEC] [CC]: PCIe cards without NVLink (the H100 ones bridge pairs at most: TP > 2 crosses PCIe)
        GpuProfile("l4", "NVIDIA L4 24 GB GDDR6", 24 * GB, 300 * GB, (8, 9), 121.0, 242.5, False),
        GpuProfile("a10g", "NVIDIA A10G 24 GB GDDR6", 24 * GB, 600 * GB, (8, 6), None, None, False),
        GpuProfile(
            "h100-pcie", "NVIDIA H100 PCIe 80 GB HBM2e", 80 * GB, 2_000 * GB, (9, 0), 756.0, 1513.0, False
        ),
        GpuProfile(
            "h100-nvl", "NVIDIA H100 NVL 94 GB HBM3", 94 * GB, 3_900 * GB, (9, 0), 835.0, 1671.0, False
        ),
        # [SPEC] [CC]: Grace Hopper superchip, NVLink between superchips
        GpuProfile("gh200", "NVIDIA GH200 96 GB HBM3", 96 * GB, 4_000 * GB, (9, 0), 989.0, 1979.0, True),
        GpuProfile(
            "gh200-144g", "NVIDIA GH200 144 GB HBM3e", 144 * GB, 4_900 * GB, (9, 0), 989.0, 1979.0, True
        ),
        # [B200] [CC]
        GpuProfile(
            "b200", "NVIDIA B200 (HGX) 180 GB HBM3e", 180 * GB, 8_000 * GB, (10, 0), 2250.0, 4500.0, True
        ),
    )
}


def get_profile(name: str) -> GpuProfile:
    """The profile called `name` (case-insensitive); an unknown name is refused with the known ones."""
    profile = PROFILES.get(name.lower())
    if profile is None:
        raise SwallowTrtError(
            f"Unknown GPU profile {name!r}. Known profiles: {', '.join(PROFILES)}.",
            "Pick the closest one, or add a row to trt_build/common/gpus.py.",
        )
    return profile


# What a plan assumes of a GPU known only by its memory (--gpu-memory-gb without --gpu).
UNKNOWN_GPU = GpuProfile(
    "custom", "a GPU of unknown kind, assumed Hopper (SM 9.0)", 0, 0, (9, 0), None, None, False
)


def gpu_for_plan(name: str | None, memory_gb: float | None) -> GpuProfile:
    """The profile `name` with its memory replaced by `memory_gb` when given (a card with another memory
    size, or a share of one; the name stays, for the build, whose flags do not depend on memory); with only
    `memory_gb`, UNKNOWN_GPU with that memory."""
    if name is None and memory_gb is None:
        raise UsageError("Give --gpu, --gpu-memory-gb, or both.", f"Known GPUs: {', '.join(PROFILES)}.")
    base = UNKNOWN_GPU if name is None else get_profile(name)
    if memory_gb is None:
        return base
    if not 0 < memory_gb < 10_000:
        raise UsageError(f"--gpu-memory-gb {memory_gb:g}: give the memory of one GPU in GB, e.g. 48.")
    return replace(
        base,
        description=f"{base.description}, with {memory_gb:g} GB",
        memory_bytes=int(memory_gb * GB),
    )


def profile_for_compute_capability(major: int, minor: int, memory_bytes: int) -> GpuProfile | None:
    """The profile matching a detected GPU (same SM, closest memory), to check --gpu against the host."""
    matches = [p for p in PROFILES.values() if p.compute_capability == (major, minor)]
    return min(matches, key=lambda p: abs(p.memory_bytes - memory_bytes), default=None)
