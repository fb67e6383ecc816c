"""tools/uv_pip.py: uv gets what pip is configured with, so `make setup` installs what pip would."""

from __future__ import annotations

from tools.uv_pip import pip_settings, uv_environment

LISTING = """\
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/srv/old /srv/other'
install.index-url='https://mirror.example/simple'
global.index-url='https://ignored.example/simple'
user.something='not a pip section'
"""


def test_later_sources_win_as_in_pip() -> None:
    settings = pip_settings(LISTING)
    assert settings["find-links"] == "/opt/wheels"  # PIP_FIND_LINKS over the config file
    assert settings["index-url"] == "https://mirror.example/simple"  # [install] over [global]
    assert "something" not in settings


def test_each_setting_becomes_the_uv_variable_in_uvs_form() -> None:
    environment = uv_environment(pip_settings(LISTING))
    assert environment == {
        "UV_INDEX_STRATEGY": "unsafe-best-match",
        "UV_HTTP_TIMEOUT": "180",
        "UV_FIND_LINKS": "/opt/wheels",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "UV_CONSTRAINT": "/etc/xdg/pip/constraints.txt",
        "UV_EXTRA_INDEX_URL": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
        "UV_DEFAULT_INDEX": "https://mirror.example/simple",
    }
    several = uv_environment({"find-links": "/a  /b\n/c"})
    assert several["UV_FIND_LINKS"] == "/a,/b,/c"  # uv separates find-links with commas


def test_no_pip_configuration_leaves_uv_on_its_defaults() -> None:
    assert uv_environment(pip_settings("")) == {"UV_INDEX_STRATEGY": "unsafe-best-match"}
