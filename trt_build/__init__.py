"""Everything up to a TensorRT-LLM engine: HF checkpoints, conversion, quantization, planning, build."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("swallow-trt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
