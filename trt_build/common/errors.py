"""The toolkit's one error type: what went wrong and what to do about it.

Library code raises `SwallowTrtError` (never a click exception, never `SystemExit`), so every stage can be
used from Python; the command layer (`trt_build.cli`) is the only place that turns it into a CLI message and
an exit status, as huggingface_hub's CLI does with its own errors.
"""

from __future__ import annotations

# The exit status of a command that could not run here for want of a GPU toolchain (trtllm-build,
# trtllm-serve, an NVIDIA driver): nothing was done, and the command to run on a GPU host was printed.
NO_GPU_TOOLCHAIN = 3


class SwallowTrtError(Exception):
    """A problem the user can fix. `problem` says what is wrong (naming the file, option or tensor), `fix`
    what to do; `exit_code` is the status the CLI exits with (1 unless a stage documents another)."""

    def __init__(self, problem: str, fix: str = "", exit_code: int = 1):
        self.problem, self.fix, self.exit_code = problem, fix, exit_code
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.problem} {self.fix}".strip()


class UsageError(SwallowTrtError):
    """Options that contradict each other or a value an option cannot take: the CLI answers it as click
    answers its own usage errors (the usage line, exit status 2)."""

    def __init__(self, problem: str, fix: str = ""):
        super().__init__(problem, fix, exit_code=2)
