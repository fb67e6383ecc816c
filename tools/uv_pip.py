"""`uv pip` with this machine's pip configuration, for the Makefile's environments.

uv installs the same packages as pip (the same resolver results here) in seconds rather than minutes, but it
reads no pip configuration. A machine whose pip finds its torch wheel, indexes or constraints through pip.conf
or PIP_* variables would otherwise get different packages (here: the CUDA torch from PyPI instead of the local
CPU wheel). So the settings pip reports (`pip config list`) are passed on as uv's own variables, with pip's
rule of taking the best version from every index.

    python tools/uv_pip.py install --python VENV/bin/python PACKAGE...   (any `uv pip` arguments)
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

# pip option -> (uv variable, separator uv wants between several values)
UV_VARIABLES = {
    "index-url": ("UV_DEFAULT_INDEX", " "),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "trusted-host": ("UV_INSECURE_HOST", " "),
    "cert": ("SSL_CERT_FILE", None),
    "timeout": ("UV_HTTP_TIMEOUT", None),
    "default-timeout": ("UV_HTTP_TIMEOUT", None),
}
# later sources win, as in pip: the global section, then the install section, then PIP_* variables
PRECEDENCE = ("global", "install", ":env:")


def pip_settings(listing: str) -> dict[str, str]:
    """pip's effective options from `pip config list` output (lines `section.key='value'`)."""
    found: dict[str, dict[str, str]] = {}
    for line in listing.splitlines():
        name, equals, value = line.partition("=")
        section, dot, key = name.rpartition(".")
        if not equals or not dot or section not in PRECEDENCE:
            continue
        found.setdefault(section, {})[key] = ast.literal_eval(value)
    settings: dict[str, str] = {}
    for section in PRECEDENCE:
        settings.update(found.get(section, {}))
    return settings


def uv_environment(settings: dict[str, str]) -> dict[str, str]:
    """uv's variables for pip's settings; options uv has no use for are left out."""
    environment = {"UV_INDEX_STRATEGY": "unsafe-best-match"}  # pip picks the best version of all indexes
    for option, value in settings.items():
        if option in UV_VARIABLES:
            variable, separator = UV_VARIABLES[option]
            environment[variable] = separator.join(value.split()) if separator else value
    return environment


def main(arguments: list[str]) -> int:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        sys.exit("uv is not installed: python -m pip install uv")
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    environment = {**os.environ, **uv_environment(pip_settings(listing))}
    return subprocess.run([uv, "pip", *arguments], env=environment).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
