"""`gonka wallet ...`: keys in an encrypted keystore, balances, and sending GNK."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from gonka_cli.chain.amount import describe, format_gnk, parse_amount
from gonka_cli.cli.options import (
    FaucetNetworkOpt,
    JsonOpt,
    NetworkOpt,
    NodeOpt,
    PasswordFileOpt,
    YesOpt,
    chain_profile,
    connect,
    keystore,
    network_profile,
)
from gonka_cli.cli.output import Output, stdin_is_terminal
from gonka_cli.crypto import GONKA_COIN_TYPE
from gonka_cli.errors import (
    ChainError,
    InputError,
    InvalidAddress,
    InvalidKeyName,
    KeyNotFound,
    KeystoreCorrupt,
)
from gonka_cli.settings import NetworkProfile

if TYPE_CHECKING:
    from gonka_cli.chain.client import ChainClient, TxResult
    from gonka_cli.crypto.secp256k1 import PrivateKey
    from gonka_cli.wallet.keystore import KeyInfo
    from gonka_cli.wallet.transfer import SendPlan

app = typer.Typer(
    help="Keys in an encrypted keystore, balances, and sending GNK.",
    no_args_is_help=True,
)

TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the transaction to be in a block.")
]
_HASH = re.compile(r"^[0-9A-Fa-f]{64}$")


# --- keys -------------------------------------------------------------------------------


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Name for the new key.")],
    words: Annotated[int, typer.Option("--words", help="Mnemonic length: 12 or 24 words.")] = 24,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask whether the mnemonic was written down.")
    ] = False,
    password_file: PasswordFileOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Create a key from a new BIP39 mnemonic (path m/44'/1200'/0'/0/0).

    The mnemonic is shown once: write it down. Example: gonka wallet create alice
    """
    out = Output(json_mode)
    if words not in (12, 24):
        raise InputError(f"--words must be 12 or 24, not {words}")
    store = keystore()
    store.check_new(name)
    out.can_confirm(yes, "creating a key (you must confirm the mnemonic was written down)")
    password = out.password(password_file, key_name=name, new=True)
    from gonka_cli.crypto import hd

    mnemonic = hd.generate_mnemonic(words)
    path = hd.HDPath.bip44()
    if not json_mode:
        out.err.print(
            f"Write these {words} words down, in order, and keep them offline. They are the only "
            "way to recover this key: anyone who has them can spend its GNK.",
            style="bold yellow",
            markup=False,
        )
        out.out.print(Panel(_columns(mnemonic.split()), title="mnemonic", expand=False))
    out.confirm(
        "Have you written down the mnemonic?",
        yes=yes,
        refused="nothing was saved; run the command again when you are ready to write it down",
    )
    info = store.add_mnemonic(name, mnemonic, password, path=path)
    data = {**info.to_dict(), "mnemonic": mnemonic}
    out.result(data, lambda c: _print_key(c, info.to_dict(), "Created key"))


@app.command("import")
def import_(
    name: Annotated[str, typer.Argument(help="Name for the imported key.")],
    from_hex: Annotated[
        bool,
        typer.Option(
            "--hex",
            help="Import a raw private key: 64 hex characters, as "
            "`inferenced keys export --unarmored-hex` prints.",
        ),
    ] = False,
    coin_type: Annotated[
        int,
        typer.Option(
            "--coin-type", help="BIP44 coin type: 1200 for Gonka, 118 for wallets made elsewhere."
        ),
    ] = GONKA_COIN_TYPE,
    account: Annotated[int, typer.Option("--account", help="BIP44 account.")] = 0,
    index: Annotated[int, typer.Option("--index", help="BIP44 address index.")] = 0,
    bip39_passphrase: Annotated[
        bool,
        typer.Option(
            "--bip39-passphrase",
            help="The mnemonic has a BIP39 passphrase (asked for; on stdin, the second line).",
        ),
    ] = False,
    password_file: PasswordFileOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Import a key from a mnemonic or a raw private key.

    The secret is read from a hidden prompt, or from stdin when stdin is not a terminal.
    Example: gonka wallet import alice < mnemonic.txt
    """
    from gonka_cli.crypto import hd

    out = Output(json_mode)
    store = keystore()
    store.check_new(name)
    if from_hex:
        if bip39_passphrase or coin_type != GONKA_COIN_TYPE or account or index:
            raise InputError(
                "--hex takes a raw key: --coin-type, --account, --index and "
                "--bip39-passphrase do not apply"
            )
        from gonka_cli.crypto.secp256k1 import PrivateKey

        secret_text = _read_secret(out, "Private key (64 hex characters)")
        private_key = PrivateKey.from_hex(secret_text)
        password = out.password(password_file, key_name=name, new=True)
        info = store.add_private_key(name, private_key, password)
    else:
        path = hd.HDPath.bip44(coin_type, account, index)
        if stdin_is_terminal():
            mnemonic = out.prompt_secret("Mnemonic (12 to 24 words)")
            passphrase = (
                out.prompt_secret("BIP39 passphrase", confirm=True) if bip39_passphrase else ""
            )
        else:
            text = sys.stdin.read()
            if bip39_passphrase:
                lines = text.splitlines()
                mnemonic = lines[0] if lines else ""
                passphrase = lines[1] if len(lines) > 1 else ""
                if not passphrase:
                    raise InputError(
                        "--bip39-passphrase: put the passphrase on the second line of stdin"
                    )
            else:
                mnemonic, passphrase = text, ""
        hd.validate_mnemonic(mnemonic)
        password = out.password(password_file, key_name=name, new=True)
        info = store.add_mnemonic(name, mnemonic, password, path=path, bip39_passphrase=passphrase)
    out.result(info.to_dict(), lambda c: _print_key(c, info.to_dict(), "Imported key"))


@app.command("list")
def list_(json_mode: JsonOpt = False) -> None:
    """List the keys in the keystore (no password needed).

    Example: gonka wallet list --json
    """
    out = Output(json_mode)
    store = keystore()
    keys, unreadable = store.list()
    for bad in unreadable:
        out.warn(bad.error)
    data = {
        "keys_dir": str(store.directory),
        "keys": [k.to_dict() for k in keys],
        "unreadable": [u.to_dict() for u in unreadable],
    }

    def render(c: Console) -> None:
        if not keys:
            c.print(
                f"No keys yet in {store.directory}. Create one: gonka wallet create NAME",
                markup=False,
            )
            return
        table = Table(box=None, pad_edge=False)
        for column in ("name", "address", "path"):
            table.add_column(column, overflow="fold")
        for k in keys:
            table.add_row(k.name, k.address, k.path or "(imported from hex)")
        c.print(table)

    out.result(data, render)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Key name.")],
    json_mode: JsonOpt = False,
) -> None:
    """Show a key's address, public key and derivation path (no password needed).

    Example: gonka wallet show alice
    """
    out = Output(json_mode)
    info = keystore().get(name)
    out.result(info.to_dict(), lambda c: _print_key(c, info.to_dict(), None))


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="Key name.")],
    as_hex: Annotated[
        bool,
        typer.Option("--hex", help="Export the raw private key (hex) instead of the mnemonic."),
    ] = False,
    yes: YesOpt = False,
    password_file: PasswordFileOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Print a key's mnemonic, or with --hex its private key (`inferenced keys import-hex` form).

    Anyone who sees it can spend the key's GNK. Example: gonka wallet export alice --hex
    """
    out = Output(json_mode)
    from gonka_cli.wallet.keystore import mnemonic_of

    store = keystore()
    info = store.get(name)
    out.can_confirm(yes, "export")
    what = "private key" if as_hex else "mnemonic"
    out.confirm(
        f"Print the {what} of key {name!r}? Anyone who sees it can spend its GNK",
        yes=yes,
        refused="nothing was shown",
    )
    secret = out.unlock(store, name, password_file)
    data: dict[str, Any] = {"name": name, "address": info.address}
    if as_hex:
        data["private_key_hex"] = secret.private_key.to_hex()
        text = data["private_key_hex"]
    else:
        data["mnemonic"] = mnemonic_of(secret, name)
        data["path"] = info.path
        data["bip39_passphrase_set"] = bool(secret.bip39_passphrase)
        text = data["mnemonic"]
    out.result(data, lambda c: c.print(text, markup=False))


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Key name.")],
    yes: YesOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Delete a key from the keystore. Its funds stay on chain, reachable only with its mnemonic.

    Example: gonka wallet delete old-key
    """
    out = Output(json_mode)
    store = keystore()
    try:
        info: dict[str, Any] = store.get(name).to_dict()
        what = f"key {name!r} ({info['address']})"
    except KeystoreCorrupt as exc:  # an unreadable file can still be deleted
        out.warn(str(exc))
        info = {"name": name, "address": None, "file": str(store.path_of(name))}
        what = f"the unreadable key file {info['file']}"
    out.can_confirm(yes, "delete")
    out.confirm(
        f"Delete {what}? Without its mnemonic its funds are lost",
        yes=yes,
        refused="nothing was deleted",
    )
    store.delete(name)
    out.result({"deleted": info}, lambda c: c.print(f"Deleted {what}.", markup=False))


# --- chain ------------------------------------------------------------------------------


@app.command()
def balance(
    target: Annotated[str, typer.Argument(metavar="NAME|ADDRESS", help="Key name or address.")],
    network: NetworkOpt = None,
    node: NodeOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Show the spendable GNK of a key or address.

    Example: gonka wallet balance alice --network devnet
    """
    out = Output(json_mode)
    address, _ = _resolve_address(target, network_profile(network, node))
    profile = chain_profile(network, node)
    with connect(profile) as client, out.status(f"Asking {client.url}..."):
        bal = client.balance(address, profile.denom)
    data = {
        "address": address,
        "network": profile.name,
        "denom": bal.denom,
        "spendable_ngonka": str(bal.spendable),
        "spendable_gnk": format_gnk(bal.spendable),
        "total_ngonka": str(bal.total),
        "total_gnk": format_gnk(bal.total),
    }

    def render(c: Console) -> None:
        c.print(f"{address}: {describe(bal.spendable)} spendable", markup=False)
        if bal.total != bal.spendable:
            c.print(
                f"{' ' * len(address)}  {describe(bal.total)} in total (some is locked)",
                markup=False,
            )

    out.result(data, render)


@app.command()
def faucet(
    target: Annotated[str, typer.Argument(metavar="NAME|ADDRESS", help="Key name or address.")],
    amount: Annotated[
        str | None,
        typer.Option("--amount", help="How much, e.g. 1000gnk (default: the faucet's amount)."),
    ] = None,
    network: FaucetNetworkOpt = None,
    node: NodeOpt = None,
    wait: Annotated[bool, typer.Option(help="Wait until the transfer is in a block.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the block.")] = 60.0,
    json_mode: JsonOpt = False,
) -> None:
    """Get free devnet GNK from a local node's faucet (devnet only).

    Example: gonka wallet faucet alice
    """
    out = Output(json_mode)
    profile = network_profile(network or "devnet", node)
    if profile.chain_id == "gonka-mainnet":
        raise InputError(
            "there is no faucet on gonka-mainnet; use --network devnet with `gonka node start`"
        )
    address, _ = _resolve_address(target, profile)
    amount_ngonka = parse_amount(amount) if amount else None
    profile = chain_profile(network, node, default="devnet")
    with connect(profile) as client:
        info = client.node_info()
        if info.chain_id == "gonka-mainnet":
            raise InputError(f"{client.url} is a gonka-mainnet node: it has no faucet")
        txhash, given = client.faucet(address, amount_ngonka)
        result = _wait(out, client, txhash, timeout) if wait else None
        if result is not None and not result.ok:
            raise ChainError(f"the faucet's transfer {txhash} failed: {result.raw_log}")
        bal = client.balance(address, profile.denom) if result is not None else None
    received = sum(t.amount for t in result.transfers) if result else given
    data = {
        "address": address,
        "txhash": txhash,
        "height": result.height if result else None,
        "amount_ngonka": str(received),
        "balance_ngonka": str(bal.spendable) if bal else None,
    }

    def render(c: Console) -> None:
        if result is None:
            c.print(f"Faucet transfer {txhash} sent to {address}.", markup=False)
            return
        c.print(
            f"Received {describe(received)} from the faucet (block {result.height}); "
            f"{address} now holds {describe(bal.spendable if bal else 0)}.",
            markup=False,
        )

    out.result(data, render)


# ignore_unknown_options: a negative amount (-1gnk) reaches the amount check, not the option parser.
@app.command(context_settings={"ignore_unknown_options": True})
def send(
    sender: Annotated[
        str, typer.Argument(metavar="FROM", help="Key name (or its address) to send from.")
    ],
    recipient: Annotated[
        str, typer.Argument(metavar="TO", help="Recipient: an address (gonka1...) or a key name.")
    ],
    amount: Annotated[str, typer.Argument(help="Amount, e.g. 1.5gnk or 1500000000ngonka.")],
    memo: Annotated[str, typer.Option("--memo", help="Memo (at most 256 bytes).")] = "",
    fee: Annotated[
        str | None,
        typer.Option(
            "--fee",
            help="Fee, e.g. 0.0001gnk (default: gas limit x the network's gas price).",
            show_default=False,
        ),
    ] = None,
    gas: Annotated[
        str, typer.Option("--gas", help="Gas limit: auto (simulate, x1.3) or a number.")
    ] = "auto",
    yes: YesOpt = False,
    timeout: TimeoutOpt = 60.0,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Sign without touching the network; print the signed transaction."
        ),
    ] = False,
    chain_id: Annotated[
        str | None,
        typer.Option("--chain-id", help="With --offline: the chain id.", show_default=False),
    ] = None,
    account_number: Annotated[
        int | None,
        typer.Option(
            "--account-number",
            help="With --offline: the sender's account number.",
            show_default=False,
        ),
    ] = None,
    sequence: Annotated[
        int | None,
        typer.Option(
            "--sequence", help="With --offline: the sender's next sequence.", show_default=False
        ),
    ] = None,
    password_file: PasswordFileOpt = None,
    network: NetworkOpt = None,
    node: NodeOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Send GNK: check the chain, estimate gas, confirm, sign, broadcast, wait for the block.

    Example: gonka wallet send alice gonka1... 1.5gnk --memo "thanks" (or TO a key name: bob)
    """
    from gonka_cli.wallet import transfer

    out = Output(json_mode)
    profile = network_profile(network, node)
    key = _resolve_key(sender, profile)
    amount_ngonka = parse_amount(amount)
    fee_ngonka = parse_amount(fee, what="fee", allow_zero=True) if fee is not None else None
    gas_limit = _parse_gas(gas)
    to_address = _resolve_recipient(recipient, profile)
    out.can_confirm(yes, "send")
    offline_values = {"--chain-id": chain_id, "--account-number": account_number,
                      "--sequence": sequence}  # fmt: skip

    if not offline:
        if any(v is not None for v in offline_values.values()):
            raise InputError("--chain-id, --account-number and --sequence go with --offline")
        profile = chain_profile(network, node)
        with connect(profile) as client:
            with out.status(f"Checking {client.url} and the account..."):
                plan = transfer.plan_send(
                    client, profile, key, to_address, amount_ngonka,
                    fee_ngonka=fee_ngonka, gas_limit=gas_limit, memo=memo,
                )  # fmt: skip
            private_key = _approve(out, plan, key, yes, password_file, "Sign and send?")
            with out.status("Broadcasting..."):
                sent = transfer.submit(client, plan, private_key)
            if sent.retried:
                out.info(f"Sequence moved: signed again with sequence {sent.plan.sequence}.")
            out.info(f"Transaction {sent.txhash} accepted by the node.")
            result = _wait(out, client, sent.txhash, timeout)
        out.result(
            {**sent.plan.to_dict(), **result.to_dict()},
            lambda c: c.print(
                f"Sent {describe(plan.amount_ngonka)} to {plan.to_address}.\n"
                f"Transaction {result.txhash} is in block {result.height}.",
                markup=False,
            ),
        )
        return

    missing = [flag for flag, value in offline_values.items() if value is None]
    if missing:
        raise InputError(f"--offline needs {', '.join(missing)} (the node cannot be asked)")
    plan = transfer.offline_plan(
        profile, key, to_address, amount_ngonka,
        chain_id=chain_id or "", account_number=account_number or 0, sequence=sequence or 0,
        fee_ngonka=fee_ngonka, gas_limit=gas_limit, memo=memo,
    )  # fmt: skip
    private_key = _approve(out, plan, key, yes, password_file, "Sign this transaction?")
    signed = transfer.sign_offline(plan, private_key)

    def render_offline(c: Console) -> None:
        c.print(f"Signed transaction {signed.txhash} (not sent). Broadcast it later with:")
        c.print(f"gonka wallet broadcast {signed.tx_bytes_b64}", markup=False, soft_wrap=True)

    out.result(signed.to_dict(), render_offline)


def _wait(out: Output, client: ChainClient, txhash: str, timeout: float) -> TxResult:
    """Wait for the block; if the user stops waiting, say how to follow the sent transaction."""
    from gonka_cli.wallet import transfer

    try:
        with out.status("Waiting for it to be in a block..."):
            return transfer.wait_for_block(client, txhash, timeout_s=timeout)
    except KeyboardInterrupt:
        out.warn(f"transaction {txhash} was sent; follow it with `gonka wallet tx {txhash}`")
        raise


def _approve(
    out: Output, plan: SendPlan, key: KeyInfo, yes: bool, password_file: Path | None, question: str
) -> PrivateKey:
    """Show the plan, ask, and unlock the key: what stands between a plan and a signature."""
    if not (out.json_mode and yes):
        _print_plan(out.err, plan)
    out.confirm(question, yes=yes, refused="cancelled; nothing was signed or sent")
    return out.unlock(keystore(), key.name, password_file).private_key


@app.command()
def broadcast(
    tx_bytes: Annotated[
        str,
        typer.Argument(
            metavar="TX_BYTES_B64",
            help="The tx_bytes that `send --offline` printed, or - to read them from stdin.",
        ),
    ],
    timeout: TimeoutOpt = 60.0,
    network: NetworkOpt = None,
    node: NodeOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Broadcast a transaction signed earlier with `send --offline`, and wait for its block.

    Example: jq -r .tx_bytes signed.json | gonka wallet broadcast -
    """
    from gonka_cli.wallet import transfer

    out = Output(json_mode)
    network_profile(network, node)  # a bad --network or --node fails before stdin is read
    text = sys.stdin.read() if tx_bytes == "-" else tx_bytes
    decoded = transfer.decode_tx_bytes(text)
    profile = chain_profile(network, node)
    with connect(profile) as client:
        with out.status("Broadcasting..."):
            txhash = transfer.broadcast_signed(client, profile, decoded)
        out.info(f"Transaction {txhash} accepted by the node.")
        result = _wait(out, client, txhash, timeout)
    out.result(
        result.to_dict(),
        lambda c: c.print(
            f"Transaction {result.txhash} is in block {result.height}.", markup=False
        ),
    )


@app.command()
def tx(
    txhash: Annotated[
        str, typer.Argument(metavar="HASH", help="Transaction hash (64 hex characters).")
    ],
    network: NetworkOpt = None,
    node: NodeOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Show a transaction: its block, result, fee and transfers.

    Example: gonka wallet tx 61C87B6853590FFE339D8423E439CD9E4E742424357FFEF4108280E1443DE245
    """
    out = Output(json_mode)
    if not _HASH.match(txhash.strip()):
        raise InputError(f"invalid transaction hash {txhash!r}: expected 64 hex characters")
    profile = chain_profile(network, node)
    with connect(profile) as client, out.status(f"Asking {client.url}..."):
        result = client.require_tx(txhash.strip().upper())
    data = result.to_dict()

    def render(c: Console) -> None:
        rows = [
            ("hash", result.txhash),
            ("status", "success" if result.ok else f"failed: {data['error']}"),
            ("height", str(result.height)),
            ("time", result.timestamp or "-"),
            ("fee", describe(result.fee_ngonka)),
            ("gas", f"{result.gas_used} used of {result.gas_wanted}"),
        ]
        if result.memo:
            rows.append(("memo", result.memo))
        for t in result.transfers:
            rows.append(
                ("transfer", f"{t.from_address} -> {t.to_address}: {_coin_text(t.amount, t.denom)}")
            )
        for other in result.other_messages:
            rows.append(("message", other))
        c.print(Output.fields(rows))

    out.result(data, render)


@app.command()
def history(
    target: Annotated[str, typer.Argument(metavar="NAME|ADDRESS", help="Key name or address.")],
    limit: Annotated[int, typer.Option("--limit", help="How many transfers to show (1-100).")] = 20,
    network: NetworkOpt = None,
    node: NodeOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Recent sends and receives of a key or address, newest first.

    Example: gonka wallet history alice --limit 5
    """
    from gonka_cli.wallet import transfer

    out = Output(json_mode)
    address, _ = _resolve_address(target, network_profile(network, node))
    profile = chain_profile(network, node)
    with connect(profile) as client, out.status(f"Asking {client.url}..."):
        entries = transfer.history(client, address, limit=limit)
    data = {
        "address": address,
        "network": profile.name,
        "transfers": [e.to_dict() for e in entries],
    }

    def render(c: Console) -> None:
        if not entries:
            c.print(f"No transfers found for {address}.", markup=False)
            return
        # One line per transfer, so a narrow terminal wraps lines instead of hiding columns.
        header = ["height", "time", "amount", "direction", "counterparty", "transaction"]
        rows = [
            [
                str(e.height),
                e.timestamp or "-",
                {"out": "-", "in": "+", "self": " "}[e.direction] + describe(e.amount_ngonka),
                {"out": "to", "in": "from", "self": "self"}[e.direction],
                e.counterparty,
                e.txhash + ("" if e.ok else "  FAILED"),
            ]
            for e in entries
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows]:
            cells = [
                cell.rjust(width) if i in (0, 2) else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=False))
            ]
            c.print("  ".join([*cells, row[-1]]), markup=False)

    out.result(data, render)


# --- helpers ----------------------------------------------------------------------------


def _columns(words: list[str]) -> Table:
    table = Table.grid(padding=(0, 3))
    rows = (len(words) + 3) // 4
    for _ in range(4):
        table.add_column()
    for r in range(rows):
        table.add_row(
            *[
                f"{r + col * rows + 1:>2}. {words[r + col * rows]}"
                if r + col * rows < len(words)
                else ""
                for col in range(4)
            ]
        )
    return table


def _print_key(c: Console, info: dict[str, Any], heading: str | None) -> None:
    if heading:
        c.print(f"{heading} {info['name']!r}.", markup=False)
    c.print(
        Output.fields(
            [
                ("name", info["name"]),
                ("address", info["address"]),
                ("pubkey", info["pubkey_hex"]),
                ("path", info["path"] or "(imported from hex)"),
                ("file", info["file"]),
            ]
        )
    )


def _print_plan(c: Console, plan: SendPlan) -> None:
    rows = [
        ("amount", describe(plan.amount_ngonka)),
        ("from", f"{plan.from_name} ({plan.from_address})"),
        ("to", plan.to_address),
        (
            "fee",
            f"{describe(plan.fee_ngonka)}, gas limit {plan.gas_limit}"
            + (" (estimated)" if plan.gas_estimated else ""),
        ),
    ]
    if plan.memo:
        rows.append(("memo", plan.memo))
    where = f"{plan.chain_id}" + (f" via {plan.node_url}" if plan.node_url else " (offline)")
    rows.append(("chain", where))
    rows.append(("account", f"number {plan.account_number}, sequence {plan.sequence}"))
    c.print(Output.fields(rows, title="Transfer"))


def _coin_text(amount: int, denom: str) -> str:
    return describe(amount) if denom == "ngonka" else f"{amount}{denom}"


def _parse_gas(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    if not (text.strip().isascii() and text.strip().isdigit()) or int(text) <= 0:
        raise InputError(f"invalid --gas {text!r}: use auto or a positive whole number")
    return int(text)


def _resolve_address(target: str, profile: NetworkProfile) -> tuple[str, str | None]:
    """A key name or an address -> (address, key name or None)."""
    text = target.strip()
    if text.lower().startswith(profile.prefix + "1"):
        return normalize_address(text, profile.prefix), None
    try:
        info = keystore().get(text)
    except (InvalidKeyName, KeyNotFound):
        if "1" in text and len(text) >= 20:  # an address of another chain, most likely
            normalize_address(text, profile.prefix)
        raise
    return info.address, info.name


def _resolve_recipient(target: str, profile: NetworkProfile) -> str:
    """TO of `send`: an address, or the name of a key in the keystore (its address)."""
    text = target.strip()
    if text.lower().startswith(profile.prefix + "1"):
        return normalize_address(text, profile.prefix)
    store = keystore()
    try:
        if store.exists(text):
            return store.get(text).address
    except InvalidKeyName:
        pass
    if "1" in text and len(text) >= 20:  # an address of another chain, most likely
        normalize_address(text, profile.prefix)
    raise InvalidAddress(
        f"invalid recipient {target!r}: neither an address ({profile.prefix}1...) nor the name "
        "of a key in the keystore (`gonka wallet list` shows them)"
    )


def _resolve_key(target: str, profile: NetworkProfile) -> KeyInfo:
    """The stored key for a name, or for the address of a stored key."""
    store = keystore()
    if target.strip().lower().startswith(profile.prefix + "1"):
        address = normalize_address(target, profile.prefix)
        info = store.find_by_address(address)
        if info is None:
            raise InputError(
                f"no key in the keystore holds {address}; `gonka wallet list` shows your keys"
            )
        return info
    return store.get(target)


def normalize_address(text: str, prefix: str) -> str:
    from gonka_cli.crypto.address import normalize

    return normalize(text, prefix)


def _read_secret(out: Output, label: str) -> str:
    if stdin_is_terminal():
        return out.prompt_secret(label)
    return sys.stdin.read().strip()
