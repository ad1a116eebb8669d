"""Settings: environment variables, file locations, and network profiles.

This is the one module that reads `GONKA_*` environment variables. Paths come from
platformdirs unless `GONKA_HOME` is set, in which case everything lives under it:

    $GONKA_HOME/config.toml   configuration (optional)
    $GONKA_HOME/keys/         encrypted key files (0700)
    $GONKA_HOME/data/         other state
    $GONKA_HOME/cache/
    $GONKA_HOME/logs/

The configuration file is TOML and optional; it can pick the default network, override a
built-in profile's fields, or add profiles:

    default_network = "devnet"

    [networks.mainnet]
    rest = ["https://node3.gonka.ai/chain-api"]

    [networks.mytestnet]
    chain_id = "gonka-testnet-1"
    rest = ["http://10.0.0.5:1317"]
    gas_price = "0.1"          # ngonka per unit of gas; the fee is gas x gas_price
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gonka_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

APP_NAME = "gonka"

ENV_HOME = "GONKA_HOME"
ENV_KEYRING_PASSWORD = "GONKA_KEYRING_PASSWORD"  # noqa: S105 - the variable's name, not a secret
ENV_NETWORK = "GONKA_NETWORK"
ENV_NODE = "GONKA_NODE"
ENV_DEBUG = "GONKA_DEBUG"
ENV_MLNODE_TOKEN = "GONKA_MLNODE_TOKEN"  # noqa: S105 - the variable's name, not a secret
#: The real ML node's name for its callback cadence; `gonka mlnode serve` honours it too.
ENV_POC_CALLBACK_INTERVAL = "POC_CALLBACK_INTERVAL_SEC"

#: Every environment variable gonka reads, with what it does (shown in `gonka --help`).
ENVIRONMENT: dict[str, str] = {
    ENV_HOME: "put config, keys, data, cache and logs under this one directory",
    ENV_KEYRING_PASSWORD: "password that unlocks keys without a prompt (for services)",
    ENV_NETWORK: "network profile to use when --network is not given (default: mainnet, or "
    "default_network in the config file)",
    ENV_NODE: "node REST URL to use when --node is not given; alone, it picks the network of "
    "that node's chain",
    ENV_DEBUG: "set to 1 to show tracebacks on errors",
    ENV_MLNODE_TOKEN: "gonka mlnode serve|status: the bearer token, when --token is not given "
    "(keeps it out of the process list)",
    ENV_POC_CALLBACK_INTERVAL: "gonka mlnode serve: seconds between PoC callback posts to the "
    "host's API (default 5, as the real ML node)",
}


@dataclass(frozen=True)
class Paths:
    """Where gonka keeps its files."""

    config_file: Path
    keys_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path

    def to_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


def paths() -> Paths:
    """Return the file locations, honouring `GONKA_HOME`."""
    home = os.environ.get(ENV_HOME)
    if home:
        root = Path(home).expanduser()
        return Paths(
            config_file=root / "config.toml",
            keys_dir=root / "keys",
            data_dir=root / "data",
            cache_dir=root / "cache",
            log_dir=root / "logs",
        )
    import platformdirs

    data = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return Paths(
        config_file=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml",
        keys_dir=data / "keys",
        data_dir=data,
        cache_dir=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
    )


def keyring_password() -> str | None:
    """The password from `GONKA_KEYRING_PASSWORD`, or None when unset."""
    value = os.environ.get(ENV_KEYRING_PASSWORD)
    return value if value else None


def debug() -> bool:
    return os.environ.get(ENV_DEBUG, "") not in ("", "0", "false", "no")


def mlnode_token() -> str | None:
    """The ML node's bearer token from `GONKA_MLNODE_TOKEN`, or None when unset."""
    return os.environ.get(ENV_MLNODE_TOKEN) or None


def poc_callback_interval_s() -> float | None:
    """`POC_CALLBACK_INTERVAL_SEC` as seconds, None when unset; ConfigError when not a
    positive number."""
    raw = os.environ.get(ENV_POC_CALLBACK_INTERVAL, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(
            f"{ENV_POC_CALLBACK_INTERVAL}={raw!r} is not a positive number of seconds; fix or "
            "unset it"
        )
    return value


def network_from_env() -> str | None:
    return os.environ.get(ENV_NETWORK) or None


def node_from_env() -> str | None:
    return os.environ.get(ENV_NODE) or None


# --- network profiles -------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkProfile:
    """How to reach and sign for one network."""

    name: str
    chain_id: str
    rest_urls: tuple[str, ...]
    prefix: str = "gonka"
    denom: str = "ngonka"
    #: ngonka per unit of gas; the default fee is ceil(gas_limit x gas_price).
    gas_price: Decimal = field(default=Decimal(0))
    #: How the network was picked, for messages: CHOSEN_DEFAULT, CHOSEN_BY_OPTION (--network),
    #: CHOSEN_BY_ENV (GONKA_NETWORK) or CHOSEN_BY_NODE (the chain of the node given alone).
    chosen_by: str = field(default="default", compare=False)
    #: Whether `rest_urls` is a node the user gave (--node or GONKA_NODE), not the profile's list.
    node_given: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "chain_id": self.chain_id,
            "rest_urls": list(self.rest_urls),
            "prefix": self.prefix,
            "denom": self.denom,
            "gas_price": str(self.gas_price),
        }


#: Public REST gateways of gonka-mainnet (the Cosmos REST API behind `/chain-api`), tried in
#: order. Sources: the Gonka docs and the Cosmos chain registry.
MAINNET_REST = (
    "https://node3.gonka.ai/chain-api",
    "http://node1.gonka.ai:8000/chain-api",
    "http://node2.gonka.ai:8000/chain-api",
    "http://gonka.spv.re:8000/chain-api",
)

DEVNET_PORT = 1317

CHOSEN_DEFAULT = "default"
CHOSEN_BY_OPTION = "--network"
CHOSEN_BY_ENV = ENV_NETWORK
CHOSEN_BY_NODE = "node"

BUILTIN_NETWORKS: dict[str, NetworkProfile] = {
    "mainnet": NetworkProfile(name="mainnet", chain_id="gonka-mainnet", rest_urls=MAINNET_REST),
    "devnet": NetworkProfile(
        name="devnet",
        chain_id="gonka-devnet",
        rest_urls=(f"http://127.0.0.1:{DEVNET_PORT}",),
    ),
}


@dataclass(frozen=True)
class Config:
    default_network: str
    networks: dict[str, NetworkProfile]
    source: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "default_network": self.default_network,
            "networks": {n: p.to_dict() for n, p in self.networks.items()},
            "source": str(self.source) if self.source else None,
        }


def load_config(path: Path | None = None) -> Config:
    """Read the config file (if any) over the built-in profiles."""
    path = path or paths().config_file
    networks = dict(BUILTIN_NETWORKS)
    default = "mainnet"
    if not path.exists():
        return Config(default_network=default, networks=networks, source=None)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}; fix or remove it") from exc

    def bad(what: str) -> ConfigError:
        return ConfigError(f"config file {path}: {what}")

    unknown = set(raw) - {"default_network", "networks"}
    if unknown:
        raise bad(f"unknown setting {sorted(unknown)[0]!r}")
    sections = raw.get("networks", {})
    if not isinstance(sections, dict):
        raise bad("[networks] must be a table")
    for name, section in sections.items():
        if not isinstance(section, dict):
            raise bad(f"[networks.{name}] must be a table")
        networks[name] = _profile_from_toml(name, section, networks.get(name), bad)
    default = raw.get("default_network", default)
    if not isinstance(default, str) or default not in networks:
        raise bad(f"default_network {default!r} is not a known network ({', '.join(networks)})")
    return Config(default_network=default, networks=networks, source=path)


def _profile_from_toml(
    name: str, section: dict[str, Any], base: NetworkProfile | None, bad: Any
) -> NetworkProfile:
    allowed = {"chain_id", "rest", "prefix", "denom", "gas_price"}
    unknown = set(section) - allowed
    if unknown:
        raise bad(f"[networks.{name}] has unknown key {sorted(unknown)[0]!r}")
    if base is None and not {"chain_id", "rest"} <= set(section):
        raise bad(f"[networks.{name}] needs chain_id and rest")
    changes: dict[str, Any] = {}
    for key in ("chain_id", "prefix", "denom"):
        if key in section:
            if not isinstance(section[key], str) or not section[key]:
                raise bad(f"networks.{name}.{key} must be a non-empty string")
            changes[key] = section[key]
    if "rest" in section:
        rest = section["rest"]
        if isinstance(rest, str):
            rest = [rest]
        if not isinstance(rest, list) or not rest:
            raise bad(f"networks.{name}.rest must be a list of URLs")
        try:
            changes["rest_urls"] = tuple(normalize_url(u) for u in rest)
        except ConfigError as exc:
            raise bad(f"networks.{name}.rest: {exc}") from exc
    if "gas_price" in section:
        try:
            price = Decimal(str(section["gas_price"]))
        except InvalidOperation:
            price = Decimal(-1)
        if not price.is_finite() or price < 0:
            raise bad(f"networks.{name}.gas_price must be a number >= 0 (ngonka per gas)")
        changes["gas_price"] = price
    if base is None:
        return NetworkProfile(
            name=name,
            chain_id=changes.pop("chain_id"),
            rest_urls=changes.pop("rest_urls"),
            **changes,
        )
    return replace(base, **changes)


def normalize_url(url: object) -> str:
    """Check a node URL and strip its trailing slash."""
    if not isinstance(url, str):
        raise ConfigError(f"node URL {url!r} is not a string")
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"node URL {url!r} must start with http:// or https://")
    return url.strip().rstrip("/")


def resolve_network(
    config: Config, network: str | None = None, node: str | None = None
) -> NetworkProfile:
    """The profile for `--network NAME` (or the default), with `--node URL` replacing its nodes."""
    if network:
        name, chosen_by = network, CHOSEN_BY_OPTION
    elif network_from_env():
        name, chosen_by = network_from_env() or "", CHOSEN_BY_ENV
    else:
        name, chosen_by = config.default_network, CHOSEN_DEFAULT
    profile = config.networks.get(name)
    if profile is None:
        raise ConfigError(
            f"unknown network {name!r}; known: {', '.join(sorted(config.networks))} "
            f"(add one under [networks.{name}] in the config file)"
        )
    profile = replace(profile, chosen_by=chosen_by)
    node = node or node_from_env()
    if node:
        profile = replace(profile, rest_urls=(normalize_url(node),), node_given=True)
    return profile


def network_is_chosen(network: str | None = None) -> bool:
    """Whether the user named a network (`--network` or `GONKA_NETWORK`), not the default."""
    return bool(network or network_from_env())


def profile_for_chain(config: Config, chain_id: str, url: str) -> NetworkProfile:
    """The profile of the node at `url`, whose chain is `chain_id`: the known profile with that
    chain id (served by that node), else one named after the chain id with default fields."""
    for profile in config.networks.values():
        if profile.chain_id == chain_id:
            return replace(
                profile, rest_urls=(normalize_url(url),), chosen_by=CHOSEN_BY_NODE, node_given=True
            )
    return NetworkProfile(
        name=chain_id,
        chain_id=chain_id,
        rest_urls=(normalize_url(url),),
        chosen_by=CHOSEN_BY_NODE,
        node_given=True,
    )
