"""`python -m trt_build.cli`: the same as the `swallow-trt` script."""

from trt_build.cli import main

main(prog_name="swallow-trt")
