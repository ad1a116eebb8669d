"""Options shared by commands, and the small factories every command group uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gonka_cli import settings

if TYPE_CHECKING:
    from gonka_cli.chain.client import ChainClient
    from gonka_cli.wallet.keystore import Keystore

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
NetworkOpt = Annotated[
    str | None,
    typer.Option(
        "--network",
        help="Network profile: mainnet, devnet or one from the config file "
        f"(or {settings.ENV_NETWORK}).",
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


def network_profile(network: str | None, node: str | None) -> settings.NetworkProfile:
    return settings.resolve_network(settings.load_config(), network, node)


def keystore() -> Keystore:
    from gonka_cli.wallet.keystore import Keystore

    return Keystore(settings.paths().keys_dir)


def chain_client(profile: settings.NetworkProfile) -> ChainClient:
    from gonka_cli.chain.client import ChainClient

    return ChainClient(profile)
