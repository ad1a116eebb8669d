"""Paths, the config file and network profiles."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gonka_cli import settings
from gonka_cli.errors import ConfigError


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text)
    return path


def test_gonka_home_holds_every_path(gonka_home: Path) -> None:
    paths = settings.paths()
    for path in (paths.config_file, paths.keys_dir, paths.data_dir, paths.cache_dir, paths.log_dir):
        assert path.is_relative_to(gonka_home)
    assert paths.keys_dir == gonka_home / "keys"


def test_without_gonka_home_paths_come_from_platformdirs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GONKA_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    paths = settings.paths()
    assert paths.config_file == tmp_path / "cfg" / "gonka" / "config.toml"
    assert paths.keys_dir == tmp_path / "data" / "gonka" / "keys"


def test_builtin_profiles_without_a_config_file() -> None:
    config = settings.load_config()
    assert config.source is None and config.default_network == "mainnet"
    mainnet = settings.resolve_network(config)
    assert mainnet.chain_id == "gonka-mainnet" and mainnet.prefix == "gonka"
    assert mainnet.denom == "ngonka" and len(mainnet.rest_urls) >= 2
    devnet = settings.resolve_network(config, "devnet")
    assert devnet.chain_id == "gonka-devnet"
    assert all(u.startswith("http://127.0.0.1") for u in devnet.rest_urls)


def test_config_overrides_and_adds_networks(gonka_home: Path) -> None:
    write_config(
        gonka_home,
        """
default_network = "test"
[networks.mainnet]
rest = ["https://example.org/chain-api/"]
[networks.test]
chain_id = "gonka-test-1"
rest = ["http://127.0.0.1:9999"]
gas_price = "0.25"
""",
    )
    config = settings.load_config()
    assert config.networks["mainnet"].rest_urls == ("https://example.org/chain-api",)
    assert config.networks["mainnet"].chain_id == "gonka-mainnet"
    test = settings.resolve_network(config)
    assert (test.name, test.chain_id, test.gas_price) == ("test", "gonka-test-1", Decimal("0.25"))


def test_node_option_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = settings.load_config()
    assert settings.resolve_network(config, node="http://h:1/").rest_urls == ("http://h:1",)
    monkeypatch.setenv("GONKA_NETWORK", "devnet")
    monkeypatch.setenv("GONKA_NODE", "http://other:2")
    profile = settings.resolve_network(config)
    assert profile.name == "devnet" and profile.rest_urls == ("http://other:2",)
    assert settings.resolve_network(config, "mainnet", "http://x:3").rest_urls == ("http://x:3",)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("default_network = [", "cannot read config file"),
        ("colour = 'red'", "unknown setting 'colour'"),
        ("default_network = 'moon'", "default_network 'moon'"),
        ("[networks.x]\nchain_id = 'c'", "needs chain_id and rest"),
        ("[networks.mainnet]\nrest = ['ftp://x']", "http"),
        ("[networks.mainnet]\nrest = []", "list of URLs"),
        ("[networks.mainnet]\ngas_price = '-1'", "gas_price"),
        ("[networks.mainnet]\nspeed = 1", "unknown key 'speed'"),
        ("networks = 3", "must be a table"),
    ],
    ids=[
        "syntax",
        "unknown-setting",
        "unknown-default",
        "incomplete",
        "bad-url",
        "empty-rest",
        "negative-gas-price",
        "unknown-key",
        "not-a-table",
    ],
)
def test_bad_config_files_name_the_problem(gonka_home: Path, text: str, fragment: str) -> None:
    path = write_config(gonka_home, text)
    with pytest.raises(ConfigError) as info:
        settings.load_config()
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_network_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: devnet, mainnet"):
        settings.resolve_network(settings.load_config(), "moon")


def test_bad_node_url() -> None:
    with pytest.raises(ConfigError, match="http"):
        settings.resolve_network(settings.load_config(), node="localhost:1317")


def test_cli_reports_a_broken_config_in_one_line(gonka_home: Path) -> None:
    from typer.testing import CliRunner

    from gonka_cli.cli.main import app

    write_config(gonka_home, "default_network = [")
    result = CliRunner().invoke(
        app, ["wallet", "balance", "gonka1f85frkfw89cgpva0vgpyuldjgu6uhyd86zuv9p"]
    )
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "Error: cannot read config file"
    )


def test_environment_variables_are_documented() -> None:
    assert set(settings.ENVIRONMENT) == {
        "GONKA_HOME",
        "GONKA_KEYRING_PASSWORD",
        "GONKA_NETWORK",
        "GONKA_NODE",
        "GONKA_DEBUG",
        "GONKA_MLNODE_TOKEN",
        "POC_CALLBACK_INTERVAL_SEC",
    }


def test_resolve_network_records_how_the_network_was_chosen(
    gonka_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings.load_config()
    default = settings.resolve_network(config)
    assert (default.name, default.chosen_by, default.node_given) == ("mainnet", "default", False)
    named = settings.resolve_network(config, "devnet", "http://127.0.0.1:9/")
    assert (named.name, named.chosen_by, named.node_given) == ("devnet", "--network", True)
    assert named.rest_urls == ("http://127.0.0.1:9",)
    monkeypatch.setenv("GONKA_NETWORK", "devnet")
    assert settings.resolve_network(config).chosen_by == "GONKA_NETWORK"
    assert settings.network_is_chosen() and settings.network_is_chosen("mainnet")
    monkeypatch.delenv("GONKA_NETWORK")
    assert not settings.network_is_chosen()
    # How it was chosen does not make two profiles different.
    assert settings.resolve_network(config, "mainnet") == default


def test_profile_for_chain_matches_a_known_chain_id_or_names_a_new_one(gonka_home: Path) -> None:
    write_config(
        gonka_home,
        '[networks.mytestnet]\nchain_id = "gonka-testnet-1"\nrest = ["http://10.0.0.5:1317"]\n'
        'gas_price = "0.5"\n',
    )
    config = settings.load_config()

    devnet = settings.profile_for_chain(config, "gonka-devnet", "http://127.0.0.1:5000/")
    testnet = settings.profile_for_chain(config, "gonka-testnet-1", "http://10.0.0.6:1317")
    unknown = settings.profile_for_chain(config, "other-chain", "http://127.0.0.1:5001")

    assert (devnet.name, devnet.chain_id, devnet.rest_urls) == (
        "devnet",
        "gonka-devnet",
        ("http://127.0.0.1:5000",),
    )
    assert (testnet.name, testnet.gas_price) == ("mytestnet", Decimal("0.5"))
    assert testnet.rest_urls == ("http://10.0.0.6:1317",)
    assert (unknown.name, unknown.chain_id, unknown.prefix, unknown.denom) == (
        "other-chain",
        "other-chain",
        "gonka",
        "ngonka",
    )
    assert all(p.chosen_by == "node" and p.node_given for p in (devnet, testnet, unknown))
