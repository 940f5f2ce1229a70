"""Tests of the AstroLogin settings: environment defaults and the API URL guard."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from IPython.core.error import UsageError
from traitlets import TraitError
from traitlets.config import Config

from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.credentials import get_token
from astro_jupyter.errors import InvalidInputError
from astro_jupyter.settings import AstroLogin


@pytest.mark.parametrize("value", ["99999", "-5", "abc", "12.5"])
def test_bad_callback_port_env(monkeypatch, value):
    monkeypatch.setenv("ASTRO_JUPYTER_CALLBACK_PORT", value)
    with pytest.raises(InvalidInputError) as caught:
        AstroLogin.instance().callback_port  # noqa: B018 - reading the trait runs the check
    message = str(caught.value)
    assert "$ASTRO_JUPYTER_CALLBACK_PORT" in message
    assert repr(value) in message
    assert "0 to 65535" in message


def test_callback_port_env_and_default(monkeypatch):
    assert AstroLogin.instance().callback_port == 12345
    AstroLogin.clear_instance()
    monkeypatch.setenv("ASTRO_JUPYTER_CALLBACK_PORT", "0")
    assert AstroLogin.instance().callback_port == 0


@pytest.mark.parametrize("value", ["127.0.0.1:18080", "ftp://127.0.0.1/", "http://"])
def test_bad_api_url_env(monkeypatch, value):
    monkeypatch.setenv("ASTRO_JUPYTER_API_URL", value)
    with pytest.raises(InvalidInputError) as caught:
        AstroLogin.instance().api_url  # noqa: B018 - reading the trait runs the check
    assert "Invalid $ASTRO_JUPYTER_API_URL" in str(caught.value)


def test_api_url_env_normalised(monkeypatch):
    monkeypatch.setenv("ASTRO_JUPYTER_API_URL", " http://127.0.0.1:8888 ")
    assert AstroLogin.instance().api_url == "http://127.0.0.1:8888/"


def test_default_domain_follows_api_url(monkeypatch):
    assert AstroLogin.instance().default_domain() == "astronomer.io"
    AstroLogin.instance().api_url = "http://127.0.0.1:8888/"
    assert AstroLogin.instance().default_domain() == "localhost"


@pytest.mark.parametrize(
    "domain", ["astronomer.io", "astronomer-dev.io", "pr1234.astronomer-dev.io"]
)
def test_api_url_refused_for_cloud_domains(domain):
    settings = AstroLogin.instance()
    settings.api_url = "http://127.0.0.1:8888/"
    with pytest.raises(InvalidInputError) as caught:
        settings.api_base_url_for(domain)
    assert f"not the API of {domain}" in str(caught.value)


def test_api_url_allowed_for_own_domains():
    settings = AstroLogin.instance()
    settings.api_url = "http://127.0.0.1:8888/"
    assert settings.api_base_url_for("localhost") == "http://127.0.0.1:8888/"
    assert settings.api_base_url_for("control-plane.test") == "http://127.0.0.1:8888/"
    settings.api_url = "https://api.astronomer.io/"
    assert settings.api_base_url_for("astronomer.io") == "https://api.astronomer.io/"


@pytest.mark.usefixtures("emulator_settings")
def test_login_without_domain_uses_localhost(shell, emulator, capsys, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt="": "1")
    shell.run_line_magic("astro_login", f"-t {emulator.mint_access_token('ada@example.com')}")
    assert "Logged in to localhost as ada@example.com." in capsys.readouterr().out
    assert ConfigStore().read_context("astronomer.io") is None


@pytest.mark.usefixtures("emulator_settings")
def test_cloud_context_never_sent_to_api_url(shell, emulator, astro_config_path):
    store = ConfigStore(astro_config_path)
    store.save_login(
        ContextRecord(
            domain="astronomer.io",
            token="real-access-token",
            refresh_token="real-refresh-token",
            expires_at=datetime.now(timezone.utc) + timedelta(minutes=1),
            user_email="ada@example.com",
        )
    )
    before = astro_config_path.read_bytes()

    with pytest.raises(InvalidInputError, match="not the API of astronomer.io"):
        get_token(store=store)
    with pytest.raises(UsageError, match="not the API of astronomer.io"):
        shell.run_line_magic("astro_login", "-e ada@example.com -l")

    assert emulator.requests == []
    assert astro_config_path.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "value"),
    [("callback_timeout_s", 1e12), ("http_timeout_s", 1e9), ("callback_timeout_s", 0.0)],
)
def test_timeouts_bounded(name, value):
    from traitlets import TraitError

    with pytest.raises(TraitError, match=f"{name} must be more than 0 and at most"):
        setattr(AstroLogin.instance(), name, value)


def test_api_token_env_with_line_break(monkeypatch):
    monkeypatch.setenv("ASTRO_API_TOKEN", "first-half\nsecond-half")
    with pytest.raises(InvalidInputError) as caught:
        get_token()
    assert "line breaks" in str(caught.value)
    assert "second-half" not in str(caught.value)


@pytest.mark.parametrize(
    "value",
    ["http://[::1", "http://127.0.0.1:99999/", "http://127.0.0.1:abc/", "http://user:pw@127.0.0.1/"],
    ids=["bad-ipv6", "port-too-large", "port-not-number", "credentials"],
)
def test_bad_api_url_env_forms(monkeypatch, value):
    monkeypatch.setenv("ASTRO_JUPYTER_API_URL", value)
    with pytest.raises(InvalidInputError) as caught:
        AstroLogin.instance().api_url  # noqa: B018 - reading the trait runs the check
    assert "pw" not in str(caught.value)


def test_non_ascii_digit_port_env(monkeypatch):
    monkeypatch.setenv("ASTRO_JUPYTER_CALLBACK_PORT", "²")
    with pytest.raises(InvalidInputError, match="expected a TCP port"):
        AstroLogin.instance().callback_port  # noqa: B018 - reading the trait runs the check


@pytest.mark.usefixtures("emulator_settings")
def test_context_key_in_context_value(emulator, astro_config_path):
    astro_config_path.parent.mkdir(parents=True)
    astro_config_path.write_text(
        "context: astronomer_io\n"
        "contexts:\n"
        "    astronomer_io:\n"
        "        domain: astronomer.io\n"
        "        token: Bearer hand-written-access\n"
        "        refreshtoken: hand-written-refresh\n"
        f"        expiresin: {(datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()}\n"
    )
    with pytest.raises(InvalidInputError, match="not the API of astronomer.io"):
        get_token()
    assert emulator.requests == []


def test_config_lists_settings_with_help(shell, capsys):
    shell.run_line_magic("config", "AstroLogin")
    listing = " ".join(capsys.readouterr().out.split())

    settings = AstroLogin.class_traits(config=True)
    assert "show_traceback" in settings
    for name, trait in settings.items():
        assert trait.help, f"AstroLogin.{name} has no help text"
        assert f"AstroLogin.{name}=" in listing
        assert " ".join(trait.help.split()[:6]) in listing



def _apply_rejected(settings: AstroLogin, name: str, value: object) -> None:
    """Apply a value the way %config does, which rejects it."""
    with pytest.raises(TraitError):
        settings.update_config(Config({"AstroLogin": {name: value}}))


def test_rejected_config_keeps_env_values(monkeypatch):
    monkeypatch.setenv("ASTRO_JUPYTER_API_URL", "http://127.0.0.1:18080/")
    monkeypatch.setenv("ASTRO_JUPYTER_CALLBACK_PORT", "23456")
    settings = AstroLogin()

    _apply_rejected(settings, "api_url", "ftp://nope/")
    _apply_rejected(settings, "callback_port", 99999)

    assert settings.api_url == "http://127.0.0.1:18080/"
    assert settings.callback_port == 23456
    assert settings.default_domain() == "localhost"


def test_rejected_config_keeps_default_port():
    settings = AstroLogin()
    _apply_rejected(settings, "callback_port", 99999)
    assert settings.callback_port == 12345


def test_env_set_after_start_applies(monkeypatch):
    # Autoload creates the settings when the kernel starts; %env in a cell
    # before the first login must still count.
    settings = AstroLogin()
    monkeypatch.setenv("ASTRO_JUPYTER_API_URL", "http://127.0.0.1:18080/")
    monkeypatch.setenv("ASTRO_JUPYTER_CALLBACK_PORT", "0")

    assert settings.api_url == "http://127.0.0.1:18080/"
    assert settings.callback_port == 0
