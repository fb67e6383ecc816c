"""Calibration peak RSS is flat in the number of layers (a benchmark, not a test).

Writes `8b-shape` models with 4 and 8 decoder layers, calibrates each in its own subprocess (so each
peak RSS is its own), and prints peak RSS, seconds per layer and the 8-vs-4 ratio (target: within 10%).

    .venv/bin/python benchmarks/perf/calibration_memory.py --calib-size 16 --calib-seq-len 256
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

LAYER_COUNTS = (4, 8)


def _worker(model_dir: Path, scheme: str, calib_size: int, seq_len: int, device: str) -> None:
    from trt_build.quant.calib_data import calibration_tokens
    from trt_build.quant.calibrate import calibrate_model
    from trt_build.source.hf_config import read_hf_config

    arch = read_hf_config(model_dir)
    batch = calibration_tokens(
        "builtin", calib_size, seq_len, max_position_embeddings=arch.max_position_embeddings
    )
    start = time.perf_counter()
    result = calibrate_model(
        model_dir, scheme, batch.tokens, device=device, awq_search_tokens=512, show_progress=False
    )
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = {
        "layers": result.num_layers,
        "peak_rss_mib": peak_kib / 1024,
        "total_s": seconds,
        "seconds_per_layer": result.info["seconds_per_layer"],
    }
    print("RESULT " + json.dumps(report))


def _run(model_dir: Path, scheme: str, calib_size: int, seq_len: int, device: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        str(model_dir),
        "--scheme",
        scheme,
        "--calib-size",
        str(calib_size),
        "--calib-seq-len",
        str(seq_len),
        "--device",
        device,
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise click.ClickException(f"calibration of {model_dir} failed:\n{completed.stderr[-3000:]}")
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@click.command()
@click.option("--scheme", default="fp8", show_default=True, help="fp8 (max calibration) or int4_awq.")
@click.option("--calib-size", default=16, show_default=True)
@click.option("--calib-seq-len", default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--work-dir", type=click.Path(path_type=Path), help="Where to write the models (default: a temp dir)."
)
@click.option("--worker", type=click.Path(path_type=Path), hidden=True)
def main(
    scheme: str, calib_size: int, calib_seq_len: int, device: str, work_dir: Path | None, worker: Path | None
) -> None:
    if worker is not None:
        _worker(worker, scheme, calib_size, calib_seq_len, device)
        return
    from trt_build.source.tiny_model import write_tiny_model

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        results = {}
        for layers in LAYER_COUNTS:
            model_dir = write_tiny_model(Path(tmp) / f"8b-shape-{layers}l", preset="8b-shape", layers=layers)
            results[layers] = _run(model_dir, scheme, calib_size, calib_seq_len, device)
    click.echo(f"calibration ({scheme}, {calib_size} x {calib_seq_len} tokens, {device}), 8b-shape model")
    click.echo(f"{'layers':>6} {'peak RSS MiB':>13} {'total s':>8} {'s/layer mean':>13}  s per layer")
    for layers, result in results.items():
        per_layer = result["seconds_per_layer"]
        click.echo(
            f"{layers:>6} {result['peak_rss_mib']:>13.0f} {result['total_s']:>8.1f} "
            f"{sum(per_layer) / len(per_layer):>13.2f}  {' '.join(f'{s:.1f}' for s in per_layer)}"
        )
    small, large = (results[n]["peak_rss_mib"] for n in LAYER_COUNTS)
    ratio = large / small
    verdict = "flat (within 10%)" if abs(ratio - 1) <= 0.10 else "NOT flat (over 10%)"
    click.echo(f"peak RSS ratio {LAYER_COUNTS[1]} / {LAYER_COUNTS[0]} layers: {ratio:.3f} -> {verdict}")


if __name__ == "__main__":
    main()
