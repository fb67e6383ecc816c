import subprocess
import sys

import pytest

from trt_build.common.outdir import atomic_output_dir


def test_error_leaves_nothing(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(final) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_leaves_nothing(tmp_path):
    script = f"""
import os, signal
from pathlib import Path
from trt_build.common.outdir import atomic_output_dir
with atomic_output_dir(Path({str(tmp_path / "out")!r})) as tmp:
    (tmp / "half.bin").write_bytes(b"x")
    os.kill(os.getpid(), signal.SIGTERM)
    (tmp / "never.bin").write_bytes(b"y")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0 and "Terminated" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_success_renames_into_place(tmp_path):
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "done.txt").write_text("ok")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out" / "done.txt").read_text() == "ok"


def test_output_has_ordinary_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
