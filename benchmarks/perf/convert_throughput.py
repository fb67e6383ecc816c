"""Conversion throughput and memory: `swallow-trt convert --tp 2` against a plain file copy.

Run:  .venv/bin/python benchmarks/perf/convert_throughput.py [--layers 2 8] [--work-dir DIR] [--output-dir DIR]

For each layer count it writes an `8b-shape` model (the real Llama-3.1-8B layer dimensions, random
weights), then on the same disk (or in --output-dir) times
  copy      shutil.copy of the model's files into a new directory, then sync;
  convert   `swallow-trt convert --tp 2` in a subprocess, then sync (the default: manifest with sha256
            of every source and rank file, hashed on threads while the data streams);
  no-sha    the same with --no-sha256, to show what the hashing costs;
  fetched   the default convert of the same files with their sha256 already known, as after `swallow-trt
            fetch` (its manifest records the hub's digests) or from the Hugging Face cache (blob names): only
            the rank files are hashed. The model is hard-linked into a directory with such a manifest;
and reads each convert process's own peak RSS and CPU seconds from os.wait4's rusage. Models are generated in a
subprocess too: this process must stay small, because Linux carries the parent's RSS high-water mark
into a forked child's ru_maxrss.

Metrics (definitions; each time is the best of --repeat alternating runs, since other load on a
shared machine only adds time; peak RSS is the largest seen):
  copy_s        wall seconds of the copy including the sync that writes it to disk
  convert_s     wall seconds of the default convert subprocess (start-up included) plus the sync
  nosha_s       the same with --no-sha256
  fetched_s     the default convert with the source digests known (a fetch manifest)
  ratio         convert_s / copy_s          target <= 2.0 below 8 layers, <= 1.3 from 8 (fixed costs amortize)
  cpu_s         user + system CPU seconds of the convert process (on a shared machine wall time is noisy;
                cpu_s - nosha_cpu_s is what hashing costs)
  peak_rss_gb   ru_maxrss of the convert process, GB                target <= 2.5
  rss_growth    peak RSS at the most layers / at the fewest - 1     target within +-10%, or +-128 MB: peak RSS
                includes the source pages mapped for the row blocks in flight (64 MB each, a handful at most),
                how many of them meet at the peak varies from run to run, not with the layer count
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TARGET_TIME_RATIO = 2.0
TARGET_TIME_RATIO_FROM_8_LAYERS = 1.3
TARGET_PEAK_RSS_GB = 2.5
TARGET_RSS_GROWTH = 0.10
RSS_SLACK_GB = 0.128  # two 64 MB row blocks of mapped source pages


@dataclass
class Measurement:
    layers: int
    model_gb: float
    output_gb: float
    copy_s: float
    convert_s: float
    nosha_s: float
    fetched_s: float
    peak_rss_gb: float
    cpu_s: float
    nosha_cpu_s: float

    @property
    def ratio(self) -> float:
        return self.convert_s / self.copy_s

    @property
    def nosha_ratio(self) -> float:
        return self.nosha_s / self.copy_s

    @property
    def fetched_ratio(self) -> float:
        return self.fetched_s / self.copy_s

    @property
    def target_ratio(self) -> float:
        return TARGET_TIME_RATIO if self.layers < 8 else TARGET_TIME_RATIO_FROM_8_LAYERS


def _dir_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.iterdir() if item.is_file())


def _timed_copy(source: Path, target: Path) -> float:
    os.sync()
    started = time.perf_counter()
    target.mkdir()
    for item in sorted(source.iterdir()):
        if item.is_file():
            shutil.copy(item, target / item.name)
    os.sync()
    seconds = time.perf_counter() - started
    shutil.rmtree(target)
    return seconds


def _timed_convert(source: Path, target: Path, options: list[str]) -> tuple[float, int, int, float]:
    """(seconds, peak RSS bytes, output bytes, CPU seconds) of one convert subprocess."""
    command = [sys.executable, "-m", "trt_build.cli", "convert", "--model-dir", str(source)]
    command += ["--output", str(target), *options]
    os.sync()
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    os.sync()
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"convert failed: {' '.join(command)}")
    size = _dir_bytes(target)
    shutil.rmtree(target)
    return seconds, usage.ru_maxrss * 1024, size, usage.ru_utime + usage.ru_stime


def _as_fetched(model: Path, target: Path) -> Path:
    """`model`'s files hard-linked into `target` with a fetch manifest recording their sha256, as `swallow-trt
    fetch` records the hub's: convert then reuses the digests instead of hashing the source."""
    from trt_build.common.manifest import describe_files, write_manifest

    target.mkdir()
    for item in sorted(model.iterdir()):
        if item.is_file() and item.name != "manifest.json":
            os.link(item, target / item.name)
    write_manifest(target, "fetch", files=describe_files(sorted(target.iterdir()), target))
    return target


def measure(layers: int, work_dir: Path, output_dir: Path, tp: int, workers: int, repeat: int) -> Measurement:
    model = work_dir / f"8b-shape-{layers}l"
    print(f"writing 8b-shape model with {layers} layers ...", flush=True)
    generate = [sys.executable, "-m", "trt_build.cli", "tiny-model", "--preset", "8b-shape"]
    subprocess.run(
        [*generate, "--layers", str(layers), "--output", str(model), "--overwrite"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fetched = _as_fetched(model, work_dir / f"8b-shape-{layers}l-fetched")
    options = ["--tp", str(tp), "--workers", str(workers)]
    times: dict[str, list[float]] = {"copy": [], "convert": [], "nosha": [], "fetched": []}
    cpu: dict[str, list[float]] = {"convert": [], "nosha": []}
    peaks, output = [], 0
    try:
        for _ in range(repeat):
            times["copy"].append(_timed_copy(model, output_dir / "copy"))
            seconds, peak, output, used = _timed_convert(model, output_dir / "ckpt", options)
            times["convert"].append(seconds)
            cpu["convert"].append(used)
            peaks.append(peak)
            seconds, peak, _, used = _timed_convert(model, output_dir / "ckpt", [*options, "--no-sha256"])
            times["nosha"].append(seconds)
            cpu["nosha"].append(used)
            peaks.append(peak)
            seconds, peak, _, _ = _timed_convert(fetched, output_dir / "ckpt", options)
            times["fetched"].append(seconds)
            peaks.append(peak)
        print(
            "  runs (s): "
            + "  ".join(f"{key} {[round(t, 2) for t in value]}" for key, value in times.items())
        )
        best = {key: min(value) for key, value in times.items()}
        return Measurement(
            layers,
            _dir_bytes(model) / 1e9,
            output / 1e9,
            best["copy"],
            best["convert"],
            best["nosha"],
            best["fetched"],
            max(peaks) / 1e9,
            min(cpu["convert"]),
            min(cpu["nosha"]),
        )
    finally:
        for path in (model, fetched, output_dir / "copy", output_dir / "ckpt"):
            shutil.rmtree(path, ignore_errors=True)


def report(results: list[Measurement], tp: int, workers: int) -> bool:
    print(f"\nswallow-trt convert --tp {tp} --workers {workers} vs shutil.copy (8b-shape, same disk)")
    print(
        f"{'layers':>6} {'model GB':>9} {'out GB':>7} {'copy s':>7} {'convert s':>10} {'ratio':>6} "
        f"{'no-sha256 s':>12} {'ratio':>6} {'fetched s':>10} {'ratio':>6} {'cpu s':>6} {'no-sha cpu s':>13} "
        f"{'peak RSS GB':>12}"
    )
    for m in results:
        print(
            f"{m.layers:>6} {m.model_gb:>9.2f} {m.output_gb:>7.2f} {m.copy_s:>7.2f} {m.convert_s:>10.2f} "
            f"{m.ratio:>6.2f} {m.nosha_s:>12.2f} {m.nosha_ratio:>6.2f} {m.fetched_s:>10.2f} {m.fetched_ratio:>6.2f} "
            f"{m.cpu_s:>6.1f} {m.nosha_cpu_s:>13.1f} "
            f"{m.peak_rss_gb:>12.2f}"
        )
    growth = results[-1].peak_rss_gb / results[0].peak_rss_gb - 1
    checks = {
        f"convert time <= {TARGET_TIME_RATIO}x copy below 8 layers, {TARGET_TIME_RATIO_FROM_8_LAYERS}x from 8 "
        "(default, with sha256)": all(m.ratio <= m.target_ratio for m in results),
        "the same with the source digests known (fetched)": all(
            m.fetched_ratio <= m.target_ratio for m in results
        ),
        f"convert time <= {TARGET_TIME_RATIO}x copy (--no-sha256)": all(
            m.nosha_ratio <= TARGET_TIME_RATIO for m in results
        ),
        f"peak RSS <= {TARGET_PEAK_RSS_GB} GB": all(m.peak_rss_gb <= TARGET_PEAK_RSS_GB for m in results),
        f"peak RSS {results[0].layers} -> {results[-1].layers} layers within {TARGET_RSS_GROWTH:.0%} "
        f"or {RSS_SLACK_GB * 1000:.0f} MB (measured {growth:+.1%})": abs(growth) <= TARGET_RSS_GROWTH
        or abs(results[-1].peak_rss_gb - results[0].peak_rss_gb) <= RSS_SLACK_GB,
    }
    for name, ok in checks.items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    return all(checks.values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--tp", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="convert --workers (2: one thread per rank)")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each; the best is kept")
    parser.add_argument(
        "--work-dir", type=Path, help="where models are written (default: a temp dir in /tmp)"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where the copies and conversions are written (default: the work dir); on a RAM disk (/dev/shm) "
        "no disk is involved, which shows how long the work itself takes",
    )
    args = parser.parse_args()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="convert-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    output_dir = args.output_dir or work_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"work dir {work_dir} ({shutil.disk_usage(work_dir).free / 1e9:.0f} GB free, {os.cpu_count()} CPUs)"
    )
    try:
        results = [
            measure(layers, work_dir, output_dir, args.tp, args.workers, args.repeat)
            for layers in sorted(args.layers)
        ]
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    sys.exit(0 if report(results, args.tp, args.workers) else 1)


if __name__ == "__main__":
    main()
