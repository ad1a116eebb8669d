"""Options shared by commands, and the small factories every command group uses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gonka_cli import settings
from gonka_cli.errors import NodeUnreachable

if TYPE_CHECKING:
    from gonka_cli.chain.client import ChainClient
    from gonka_cli.wallet.keystore import Keystore

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
NetworkOpt = Annotated[
    str | None,
    typer.Option(
        "--network",
        help="Network profile: mainnet, devnet or one from the config file. Default: mainnet "
        f"(or the config file's default_network, or {settings.ENV_NETWORK}); with --node alone, "
        "the network of that node's chain.",
        show_default=False,
    ),
]
#: `wallet faucet`: only a devnet has a faucet, so that is its default.
FaucetNetworkOpt = Annotated[
    str | None,
    typer.Option(
        "--network",
        help="Network profile: devnet or one from the config file. Default: devnet; with "
        "--node alone, the network of that node's chain.",
        show_default=False,
    ),
]
NodeOpt = Annotated[
    str | None,
    typer.Option(
        "--node",
        help=f"REST URL of a node to use instead of the profile's list (or {settings.ENV_NODE}).",
        show_default=False,
    ),
]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="Read the keystore password from this file's first line "
        f"(else {settings.ENV_KEYRING_PASSWORD}, else a prompt).",
        dir_okay=False,
        show_default=False,
    ),
]
TempLimitOpt = Annotated[
    float | None,
    typer.Option(
        "--temp-limit",
        help="Pause a GPU above this temperature (°C) until it has cooled by 5 °C.",
        show_default=False,
    ),
]

#: How the chain client ends a `NodeUnreachable` message; replaced by advice that fits.
_GENERIC_HINT = "; check the connection or pass --node URL"


def network_profile(network: str | None, node: str | None) -> settings.NetworkProfile:
    """The profile named by `--network` (or the default), served by `--node` when given."""
    return settings.resolve_network(settings.load_config(), network, node)


def chain_profile(
    network: str | None, node: str | None, *, default: str | None = None
) -> settings.NetworkProfile:
    """The profile for a command that talks to the chain.

    `--node URL` alone (no `--network`, no `GONKA_NETWORK`) follows that node: its chain id,
    read from the node, picks the known profile with that chain id, or names a new one after it.
    Otherwise, as `network_profile`, with `default` in place of the configured default network.
    """
    config = settings.load_config()
    url = node or settings.node_from_env()
    if url and not settings.network_is_chosen(network):
        asked = settings.resolve_network(config, default, url)
        with connect(asked) as client:
            chain_id = client.node_info().chain_id
        return settings.profile_for_chain(config, chain_id, url)
    return settings.resolve_network(config, network or default, node)


def keystore() -> Keystore:
    from gonka_cli.wallet.keystore import Keystore

    return Keystore(settings.paths().keys_dir)


def chain_client(profile: settings.NetworkProfile) -> ChainClient:
    from gonka_cli.chain.client import ChainClient

    return ChainClient(profile)


@contextlib.contextmanager
def connect(profile: settings.NetworkProfile) -> Iterator[ChainClient]:
    """A client of the profile's nodes, closed afterwards; when no node answers, the error
    says what to do about it (start the devnet, or pick another network)."""
    client = chain_client(profile)
    try:
        yield client
    except NodeUnreachable as exc:
        raise NodeUnreachable(unreachable_message(str(exc), profile)) from None
    finally:
        client.close()


def unreachable_message(message: str, profile: settings.NetworkProfile) -> str:
    """`message` (no node answered: tried ...) with advice that fits how the nodes were chosen."""
    if profile.node_given:
        return message  # the user's own URL: the generic advice fits
    base = message.removesuffix(_GENERIC_HINT)
    if profile.chain_id == settings.BUILTIN_NETWORKS["devnet"].chain_id:
        return f"{base}; is the devnet node running? start it with `gonka node start`"
    if profile.chosen_by == settings.CHOSEN_DEFAULT:
        return (
            f"{base}; network {profile.name!r} is the default: check the connection, or choose "
            f"another network with --network devnet (or {settings.ENV_NETWORK}=devnet) or a "
            "node with --node URL"
        )
    return message
