"""Conversion throughput and memory: `swallow-trt convert --tp 2` against a plain file copy.

Run:  .venv/bin/python benchmarks/convert_throughput.py [--layers 2 8] [--work-dir DIR]

For each layer count it writes an `8b-shape` model (the real Llama-3.1-8B layer dimensions, random
weights), then on the same disk times
  copy     shutil.copy of the model's files into a new directory, then sync;
  convert  `swallow-trt convert --tp 2` in a subprocess, then sync;
and reads the convert process's own peak RSS from os.wait4's rusage. Models are generated in a
subprocess too: this process must stay small, because Linux carries the parent's RSS high-water mark
into a forked child's ru_maxrss.

Metrics (definitions):
  (each timing is the best of --repeat alternating runs; peak RSS is the largest seen)
  copy_s        wall seconds of the copy including the sync that writes it to disk
  convert_s     wall seconds of the convert subprocess (start-up included) plus the sync
  time_ratio    convert_s / copy_s                       target <= 2.0
  peak_rss_gb   ru_maxrss of the convert process, GB     target <= 2.5
  rss_growth    peak RSS at the most layers / at the fewest - 1   target within +-10%
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
TARGET_PEAK_RSS_GB = 2.5
TARGET_RSS_GROWTH = 0.10


@dataclass
class Measurement:
    layers: int
    model_gb: float
    output_gb: float
    copy_s: float
    convert_s: float
    peak_rss_gb: float

    @property
    def time_ratio(self) -> float:
        return self.convert_s / self.copy_s


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
    return time.perf_counter() - started


def _timed_convert(source: Path, target: Path, tp: int, workers: int) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of one convert subprocess."""
    command = [sys.executable, "-m", "trt_build.cli", "convert", "--model-dir", str(source)]
    command += ["--output", str(target), "--tp", str(tp), "--workers", str(workers)]
    os.sync()
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    os.sync()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"convert failed with exit code {process.returncode}: {' '.join(command)}")
    return seconds, usage.ru_maxrss * 1024


def measure(layers: int, work_dir: Path, tp: int, workers: int, repeat: int) -> Measurement:
    """Best of `repeat` alternating copy/convert runs: other load on a shared machine only adds time."""
    model = work_dir / f"8b-shape-{layers}l"
    print(f"writing 8b-shape model with {layers} layers ...", flush=True)
    generate = [sys.executable, "-m", "trt_build.cli", "tiny-model", "--preset", "8b-shape"]
    subprocess.run([*generate, "--layers", str(layers), "--output", str(model), "--overwrite"], check=True)
    copy_times, convert_times, peaks = [], [], []
    copy, checkpoint = work_dir / f"copy-{layers}l", work_dir / f"ckpt-{layers}l"
    try:
        for _ in range(repeat):
            copy_times.append(_timed_copy(model, copy))
            convert_seconds, peak = _timed_convert(model, checkpoint, tp, workers)
            convert_times.append(convert_seconds)
            peaks.append(peak)
            output_gb = _dir_bytes(checkpoint) / 1e9
            shutil.rmtree(copy)
            shutil.rmtree(checkpoint)
        print(
            f"  copy s {[round(t, 2) for t in copy_times]}  convert s {[round(t, 2) for t in convert_times]}"
        )
        return Measurement(
            layers, _dir_bytes(model) / 1e9, output_gb, min(copy_times), min(convert_times), max(peaks) / 1e9
        )
    finally:
        for path in (model, copy, checkpoint):
            shutil.rmtree(path, ignore_errors=True)


def report(results: list[Measurement], tp: int, workers: int) -> bool:
    print(f"\nswallow-trt convert --tp {tp} --workers {workers} vs shutil.copy (8b-shape, same disk)")
    header = f"{'layers':>6} {'model GB':>9} {'out GB':>7} {'copy s':>7} {'convert s':>10} {'ratio':>6} {'peak RSS GB':>12}"
    print(header)
    for m in results:
        print(
            f"{m.layers:>6} {m.model_gb:>9.2f} {m.output_gb:>7.2f} {m.copy_s:>7.2f} {m.convert_s:>10.2f} "
            f"{m.time_ratio:>6.2f} {m.peak_rss_gb:>12.2f}"
        )
    growth = results[-1].peak_rss_gb / results[0].peak_rss_gb - 1
    checks = {
        f"convert time <= {TARGET_TIME_RATIO}x copy": all(m.time_ratio <= TARGET_TIME_RATIO for m in results),
        f"peak RSS <= {TARGET_PEAK_RSS_GB} GB": all(m.peak_rss_gb <= TARGET_PEAK_RSS_GB for m in results),
        f"peak RSS {results[0].layers} -> {results[-1].layers} layers within {TARGET_RSS_GROWTH:.0%} "
        f"(measured {growth:+.1%})": abs(growth) <= TARGET_RSS_GROWTH,
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
    parser.add_argument("--repeat", type=int, default=2, help="alternating copy/convert runs; best is kept")
    parser.add_argument(
        "--work-dir", type=Path, help="where models are written (default: a temp dir in /tmp)"
    )
    args = parser.parse_args()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="convert-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"work dir {work_dir} ({shutil.disk_usage(work_dir).free / 1e9:.0f} GB free)")
    results = [
        measure(layers, work_dir, args.tp, args.workers, args.repeat) for layers in sorted(args.layers)
    ]
    if args.work_dir is None:
        shutil.rmtree(work_dir, ignore_errors=True)
    sys.exit(0 if report(results, args.tp, args.workers) else 1)


if __name__ == "__main__":
    main()
