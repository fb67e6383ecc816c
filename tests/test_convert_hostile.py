"""convert (and what shares its reader) on hostile or damaged input: every case is refused with a message naming
the file and field, before any work, never deleting a source or leaving half-written output."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from trt_build.cli import main
from trt_build.common import outdir
from trt_build.common.errors import SwallowTrtError
from trt_build.convert import calibration
from trt_build.convert.pipeline import convert_checkpoint
from trt_build.formats.trtllm_config import architecture_from_checkpoint, trtllm_config
from trt_build.source.hf_config import SHAPE_LIMITS, hf_config_dict, parse_hf_config
from trt_build.source.tiny_model import PRESETS, hf_tensor_layout, random_tensor

SMALL = dataclasses.replace(
    PRESETS["tiny"], vocab_size=256
)  # about 0.3 MB of weights: cheap to copy and damage


def small_model(path: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    arch = dataclasses.replace(SMALL, dtype=str(dtype).removeprefix("torch."))
    path.mkdir(parents=True)
    tensors = {name: random_tensor(name, dt, shape, 5) for name, dt, shape in hf_tensor_layout(arch, dtype)}
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(hf_config_dict(arch)))
    return path


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def names(parent: Path) -> list[str]:
    return sorted(path.name for path in parent.iterdir())


# --- 1. files named by the index stay inside the model directory --------------------------------------


def write_index(model: Path, hostile: str) -> None:
    """An index mapping every tensor to the real file and the last one to `hostile`."""
    tensors = [name for name, _, _ in hf_tensor_layout(SMALL, torch.bfloat16)]
    weight_map = dict.fromkeys(tensors, "model.safetensors") | {tensors[-1]: hostile}
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


@pytest.mark.parametrize(
    "hostile",
    ["../../outside/x.safetensors", "/etc/passwd", "a/../../x.safetensors", "sub/model.safetensors"],
)
def test_index_naming_a_file_outside_the_model_is_refused(tmp_path: Path, hostile: str) -> None:
    model = small_model(tmp_path / "model")
    outside = tmp_path / "elsewhere"
    small_model(outside)
    (model / "sub").symlink_to(outside, target_is_directory=True)  # a directory symlink escapes too
    write_index(model, hostile)
    with pytest.raises(SwallowTrtError) as error:
        convert_checkpoint(model, tmp_path / "ckpt")
    assert "model.safetensors.index.json maps tensor 'lm_head.weight'" in error.value.message
    assert repr(hostile) in error.value.message and "not a file inside" in error.value.message
    assert not (tmp_path / "ckpt").exists()


def test_index_naming_a_symlinked_blob_is_read(tmp_path: Path) -> None:
    """HF snapshots are symlinks into the cache's blobs/: the file may live anywhere, its name may not."""
    model = small_model(tmp_path / "model")
    blob = tmp_path / "blobs" / "0123abcd"
    blob.parent.mkdir()
    shutil.move(model / "model.safetensors", blob)
    (model / "model.safetensors").symlink_to(blob)
    write_index(model, "model.safetensors")
    out = convert_checkpoint(model, tmp_path / "ckpt")
    assert (out / "rank0.safetensors").is_file()


# --- 2. the output never overlaps the source -------------------------------------------------------------


@pytest.mark.parametrize("where", ["same", "inside source", "source inside"])
def test_output_overlapping_the_source_is_refused_and_the_source_survives(tmp_path: Path, where: str) -> None:
    model = small_model(tmp_path / "out" / "model")
    output = {"same": model, "inside source": model / "ckpt", "source inside": tmp_path / "out"}[where]
    before = digest(model / "model.safetensors")
    code, text = cli("convert", "--model-dir", str(model), "--output", str(output), "--overwrite")
    assert code == 1 and "Error: the output" in text and "the input" in text
    assert digest(model / "model.safetensors") == before
    assert names(model) == ["config.json", "model.safetensors"]
    code, text = cli("calibrate", "--model-dir", str(model), "--output", str(output), "--overwrite")
    assert code == 1 and "Error: the output" in text
    assert names(model) == ["config.json", "model.safetensors"]


def test_build_and_repo_refuse_to_write_over_their_input(tmp_path: Path, tokenizer_dir: Path) -> None:
    model = small_model(tmp_path / "model")
    ckpt = convert_checkpoint(model, tmp_path / "ckpt")
    before = names(ckpt)
    commands = [
        ["build", "--checkpoint", str(ckpt), "--output", str(ckpt), "--gpu", "h100", "--target", "engine"],
        ["build", "--checkpoint", str(model), "--output", str(model), "--gpu", "h100", "--target", "pytorch"],
        [
            "repo",
            "--checkpoint",
            str(ckpt),
            "--tokenizer",
            str(tokenizer_dir),
            "--output",
            str(ckpt / "repo"),
        ],
    ]
    for command in commands:
        code, text = cli(*command, "--overwrite")
        assert code == 1 and "Error: the output" in text, text
    assert names(ckpt) == before and names(model) == ["config.json", "model.safetensors"]


def test_output_symlinked_to_the_source_is_refused(tmp_path: Path) -> None:
    model = small_model(tmp_path / "model")
    (tmp_path / "link").symlink_to(model, target_is_directory=True)
    with pytest.raises(SwallowTrtError, match="the output .*link is the input"):
        outdir.check_output(tmp_path / "link", True, [model])


# --- 3. config.json: numbers in range, before anything is read ---------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"num_hidden_layers": 0}, "num_hidden_layers is 0"),
        ({"num_hidden_layers": 1_000_000}, "num_hidden_layers is 1000000"),
        ({"hidden_size": "4096"}, "hidden_size is '4096'"),
        ({"vocab_size": -1}, "vocab_size is -1"),
        ({"intermediate_size": True}, "intermediate_size is True"),
        ({"num_attention_heads": 8.0}, "num_attention_heads is 8.0"),
        ({"max_position_embeddings": 1 << 40}, "max_position_embeddings is 1099511627776"),
        ({"vocab_size": (1 << 20) + 1}, f"from 1 to {SHAPE_LIMITS['vocab_size']}"),
        ({"num_key_value_heads": 3}, "must be a multiple of num_key_value_heads 3"),
        ({"head_dim": None, "hidden_size": 60}, "hidden_size 60 is not divisible by num_attention_heads 8"),
        ({"head_dim": 7}, "the head size 7 even"),
        ({"rms_norm_eps": "tiny"}, "rms_norm_eps holds a value that is not a number"),
        (
            {"rope_parameters": {"rope_theta": "x"}},
            "the RoPE settings (rope_theta, rope_scaling, rope_parameters) holds",
        ),
    ],
)
def test_config_numbers_are_checked(tmp_path: Path, changes: dict, field: str) -> None:
    raw = hf_config_dict(SMALL) | changes
    with pytest.raises(SwallowTrtError, match="config.json") as error:
        parse_hf_config(raw)
    assert field in error.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "is not valid JSON"), ("[1, 2]", "holds a JSON list, not an object")],
)
def test_broken_config_file_fails_fast_in_convert_and_plan(tmp_path: Path, text: str, message: str) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(text)
    (model / "model.safetensors").write_bytes(b"never read")  # damaged too: config.json is refused first
    for command in (
        ["convert", "--model-dir", str(model), "--output", str(tmp_path / "ckpt")],
        ["plan", "--model", str(model), "--gpu", "h100"],
    ):
        code, text_out = cli(*command)
        assert code == 1 and f"{model / 'config.json'} {message}" in text_out, text_out
    assert names(tmp_path) == ["model"]


def test_plan_shares_the_range_checks(tmp_path: Path) -> None:
    model = small_model(tmp_path / "model")
    config = json.loads((model / "config.json").read_text()) | {"num_hidden_layers": 5000}
    (model / "config.json").write_text(json.dumps(config))
    code, text = cli("plan", "--model", str(model), "--gpu", "h100")
    assert code == 1 and "config.json: num_hidden_layers is 5000" in text
    trtllm = trtllm_config(SMALL, "bfloat16", 1, 1, {}) | {"num_hidden_layers": 5000}
    with pytest.raises(SwallowTrtError, match="num_hidden_layers is 5000"):
        architecture_from_checkpoint(trtllm)


# --- 4. damaged safetensors files ------------------------------------------------------------------------


def rewrite_header(path: Path, change) -> None:
    """Apply `change` to the parsed JSON header of a safetensors file, keeping its data."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    change(header)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + length :])


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def absurd_length(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 1 << 60) + raw[8:])


def overlapping(path: Path) -> None:
    rewrite_header(path, lambda h: h["model.norm.weight"].update(data_offsets=[0, 128]))


def past_end(path: Path) -> None:
    def change(header: dict) -> None:
        start, stop = header["lm_head.weight"]["data_offsets"]
        header["lm_head.weight"]["data_offsets"] = [start + (1 << 30), stop + (1 << 30)]

    rewrite_header(path, change)


@pytest.mark.parametrize("damage", [truncate, absurd_length, overlapping, past_end])
def test_damaged_safetensors_is_named_without_a_traceback(tmp_path: Path, damage) -> None:
    model = small_model(tmp_path / "model")
    damage(model / "model.safetensors")
    code, text = cli("convert", "--model-dir", str(model), "--output", str(tmp_path / "ckpt"))
    assert code == 1 and "Traceback" not in text
    assert f"Error: {model / 'model.safetensors'} is not a valid safetensors file" in text
    assert "Download or convert it again" in text
    assert names(tmp_path) == ["model"]


def test_source_truncated_during_conversion_is_named(tmp_path: Path) -> None:
    """Rows are read from the file's mapped pages; a file cut short after it was opened is an error naming it,
    not a crash."""
    from trt_build.parallel.weight_map import SourceSlice
    from trt_build.source.checkpoint import SourceCheckpoint

    model = small_model(tmp_path / "model")
    source = SourceCheckpoint(model)
    last = max(source.offsets, key=source.offsets.__getitem__)  # the tensor at the end of the file
    whole = SourceSlice(last, 0, source.shapes[last][0])
    assert source.read_rows(whole, 0, whole.row_stop).rows == whole.row_stop
    path = model / "model.safetensors"
    os.truncate(path, source.offsets[last] + 1)
    with pytest.raises(SwallowTrtError, match=rf"cannot read tensor {last} from .* changed since"):
        source.read_rows(whole, 0, whole.row_stop)


# --- 5. header dtypes agree with config.json -------------------------------------------------------------


def test_tensor_relabelled_in_the_header_is_refused(tmp_path: Path) -> None:
    model = small_model(tmp_path / "model")
    rewrite_header(
        model / "model.safetensors", lambda h: h["model.layers.1.mlp.up_proj.weight"].update(dtype="F16")
    )
    with pytest.raises(SwallowTrtError) as error:
        convert_checkpoint(model, tmp_path / "ckpt")
    message = error.value.message
    assert "tensor model.layers.1.mlp.up_proj.weight in model.safetensors is stored as F16" in message
    assert "config.json's dtype is bfloat16 (BF16)" in message
    assert names(tmp_path) == ["model"]


def test_float16_model_with_float16_tensors_converts(tmp_path: Path) -> None:
    model = small_model(tmp_path / "model", torch.float16)
    out = convert_checkpoint(model, tmp_path / "ckpt")
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"


# --- 6. an output that cannot be written is refused before any work -------------------------------------


def test_unwritable_output_is_refused_before_calibration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = small_model(tmp_path / "model")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: ask access() as an ordinary user would be answered
        real = os.access
        monkeypatch.setattr(
            outdir.os, "access", lambda path, mode: False if Path(path) == locked else real(path, mode)
        )

    def calibrated(*args, **kwargs):
        raise AssertionError("calibration ran before the output was checked")

    monkeypatch.setattr(calibration, "run_calibration", calibrated)
    with pytest.raises(SwallowTrtError, match=f"cannot write {locked}/new/ckpt: {locked} is not writable"):
        convert_checkpoint(model, locked / "new" / "ckpt", quant="fp8")
    locked.chmod(0o755)
    assert names(locked) == []


# --- 7. leftovers of killed runs -----------------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_dead_runs_are_removed_and_live_ones_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = small_model(tmp_path / "model")
    dead = dead_pid()
    partial = tmp_path / f".ckpt.partial-{dead}-abc123"
    partial.mkdir()
    (partial / "rank0.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / f".ckpt.old-{dead}").write_bytes(b"old")  # an --overwrite of a file, killed mid-swap
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = tmp_path / f".ckpt.partial-{live.pid}-xyz"
        running.mkdir()
        (running / "rank0.safetensors").write_bytes(b"y" * 2_000_000)
        legacy = tmp_path / ".ckpt.partial-qwertyui"  # named before PIDs were
        legacy.mkdir()
        convert_checkpoint(model, tmp_path / "ckpt")
    finally:
        live.kill()
        live.wait()
    assert names(tmp_path) == sorted(
        [".ckpt.partial-qwertyui", f".ckpt.partial-{live.pid}-xyz", "ckpt", "model"]
    )
    err = capsys.readouterr().err
    assert f"removed {partial} (0.0 MB), left by process {dead}, which has ended" in err
    assert f"removed {tmp_path / f'.ckpt.old-{dead}'}" in err
    assert f"{running} (2.0 MB) belongs to running process {live.pid}" in err
    assert f"{legacy} (0.0 MB) belongs to an unknown process" in err


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_overwriting_a_file_or_symlink_leaves_no_old_copy(tmp_path: Path, kind: str) -> None:
    model = small_model(tmp_path / "model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours to delete")
    output = tmp_path / "ckpt"
    if kind == "file":
        output.write_text("a file")
    else:
        output.symlink_to(elsewhere, target_is_directory=True)
    convert_checkpoint(model, output, overwrite=True)
    assert output.is_dir() and not output.is_symlink() and (output / "rank0.safetensors").is_file()
    assert names(tmp_path) == ["ckpt", "elsewhere", "model"]
    assert (elsewhere / "keep.txt").read_text() == "not ours to delete"


# --- 8. the wrong kind of directory, the wrong source ---------------------------------------------------


def test_trtllm_checkpoint_given_to_convert_is_named(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(trtllm_config(SMALL, "bfloat16", 1, 1, {})))
    (ckpt / "rank0.safetensors").write_bytes(b"")
    code, text = cli("convert", "--model-dir", str(ckpt), "--output", str(tmp_path / "out"))
    assert code == 1 and "this is already a TensorRT-LLM checkpoint" in text
    assert "Give the Hugging Face model directory" in text and "architecture missing" not in text


def test_verify_against_another_model_of_the_same_shape_says_so(tmp_path: Path) -> None:
    model, other = small_model(tmp_path / "model"), tmp_path / "other"
    shutil.copytree(model, other)
    tensors = {
        name: random_tensor(name, dt, shape, 6) for name, dt, shape in hf_tensor_layout(SMALL, torch.bfloat16)
    }
    save_file(tensors, other / "model.safetensors", metadata={"format": "pt"})  # same sizes, other weights
    ckpt = convert_checkpoint(model, tmp_path / "ckpt")
    code, text = cli("verify", "--model-dir", str(other), "--checkpoint", str(ckpt))
    assert (
        code == 1
        and "Error: this checkpoint was not made from this model: model.safetensors has sha256" in text
    )
    assert f"Pass the --model-dir it was converted from ({model.resolve()})" in text
    assert "FAILED" not in text


# --- 9. hashes recorded while streaming are the files' ---------------------------------------------------


def test_manifest_hashes_are_hashlibs_of_the_files(tmp_path: Path) -> None:
    model = small_model(tmp_path / "model")
    out = convert_checkpoint(model, tmp_path / "ckpt", tp=2, pp=2, workers=3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {rank["name"]: rank["sha256"] for rank in manifest["ranks"]} == {
        f"rank{r}.safetensors": digest(out / f"rank{r}.safetensors") for r in range(4)
    }
    assert {entry["name"]: entry["sha256"] for entry in manifest["source"]["files"]} == {
        name: digest(model / name) for name in ("config.json", "model.safetensors")
    }
