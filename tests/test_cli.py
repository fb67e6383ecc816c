import subprocess
import sys

import pytest
from click.testing import CliRunner

from trt_build import __version__
from trt_build.cli import COMMANDS, main


def test_help_lists_every_command_with_its_description():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name, (_, description) in COMMANDS.items():
        assert name in result.output
        assert description.split()[0] in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "trt_build.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "tiny-model" in result.stdout


def test_models_lists_the_registry():
    result = CliRunner().invoke(main, ["models"])
    assert "tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.5" in result.output
    assert "70.6B" in result.output
