"""`gonka node`: run a local Gonka network (devnet) on this machine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gonka_cli.chain.amount import describe
from gonka_cli.cli.options import JsonOpt, NodeOpt, connect, network_profile
from gonka_cli.cli.output import EXIT_INTERRUPTED, Output
from gonka_cli.errors import InputError, NodeResponseError

app = typer.Typer(
    help="Run a local Gonka network (devnet): ledger, blocks and the Cosmos REST API.",
    no_args_is_help=True,
)

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="The node's directory (genesis, database, faucet key). "
        "Default: 'node' in gonka's data directory.",
        file_okay=False,
        show_default=False,
    ),
]
BlockTimeOpt = Annotated[
    str | None,
    typer.Option("--block-time", help="Time between blocks, e.g. 1s or 500ms.", show_default=False),
]


def parse_duration(text: str) -> float:
    """`1s`, `500ms`, `2m` or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not match:
        raise InputError(f"invalid duration {text!r}: use e.g. 1s, 500ms or 2m")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]


def _home(home: Path | None) -> Path:
    from gonka_cli.node.genesis import default_home

    return (home or default_home()).expanduser()


@app.command()
def init(
    home: HomeOpt = None,
    chain_id: Annotated[str, typer.Option("--chain-id", help="Chain id.")] = "gonka-devnet",
    genesis_account: Annotated[
        list[str] | None,
        typer.Option(
            "--genesis-account",
            help="ADDR=AMOUNT funded at genesis (repeatable), e.g. gonka1...=1000gnk.",
            show_default=False,
        ),
    ] = None,
    block_time: BlockTimeOpt = None,
    min_gas_price: Annotated[
        str, typer.Option("--min-gas-price", help="Minimum gas price in ngonka per gas unit.")
    ] = "0",
    json_mode: JsonOpt = False,
) -> None:
    """Write the genesis of a new local network and its funded faucet key.

    Example: gonka node init --genesis-account gonka1...=1000gnk
    """
    from gonka_cli.node.genesis import ChainParams, init_home, parse_genesis_account

    out = Output(json_mode)
    accounts = [parse_genesis_account(a) for a in genesis_account or []]
    params = ChainParams(
        block_time_s=parse_duration(block_time) if block_time else 1.0,
        min_gas_price=min_gas_price,
    )
    params.check()
    root = _home(home)
    genesis = init_home(root, chain_id=chain_id, accounts=accounts, params=params)
    data = {
        "home": str(root),
        "chain_id": genesis.chain_id,
        "faucet_address": genesis.faucet_address,
        "accounts": [{"address": a, "amount_ngonka": str(n)} for a, n in genesis.balances],
        "params": genesis.params.to_dict(),
    }

    def render(c: Console) -> None:
        c.print(f"Initialised node home {root} (chain {genesis.chain_id})", markup=False)
        c.print(f"faucet: {genesis.faucet_address}", markup=False)
        for address, amount in genesis.balances[1:]:
            c.print(f"genesis account: {address} {describe(amount)}", markup=False)
        c.print("Start it with: gonka node start" + (f" --home {root}" if home else ""))

    out.result(data, render)


@app.command()
def start(
    home: HomeOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one).")] = 1317,
    rpc_port: Annotated[
        int | None,
        typer.Option(
            "--rpc-port",
            help="CometBFT RPC port on the same host (default 26657; with --port 0, a free one).",
            show_default=False,
        ),
    ] = None,
    block_time: BlockTimeOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Run the node in the foreground until Ctrl-C or SIGTERM (an empty home is initialised).

    Either way the node applies its mempool in a last block; Ctrl-C then exits 130, SIGTERM 0.
    Example: gonka node start --block-time 500ms
    """
    import logging
    import signal
    import sys

    from gonka_cli.node.runner import NodeInfo, serve_forever

    out = Output(json_mode)
    if not 0 <= port <= 65535:
        raise InputError(f"invalid --port {port}: use 0-65535")
    if rpc_port is None:
        rpc_port = 0 if port == 0 else 26657
    if not 0 <= rpc_port <= 65535:
        raise InputError(f"invalid --rpc-port {rpc_port}: use 0-65535")
    seconds = parse_duration(block_time) if block_time else None
    # A running node reports its blocks; the level goes back afterwards (commands can run
    # one after another in one process, as in tests).
    node_log = logging.getLogger("gonka_cli.node")
    previous_level = node_log.level
    node_log.setLevel(logging.INFO)

    def ready(info: NodeInfo) -> None:
        def render(c: Console) -> None:
            if info.created:
                c.print(f"Initialised a new devnet in {info.home}", markup=False)
            c.print(
                f"gonka node: chain {info.chain_id} at {info.url}, height {info.height}, "
                f"a block every {info.block_time_s:g} s",
                markup=False,
            )
            c.print(
                f"faucet: {info.faucet_address} (key 'faucet' in {Path(info.faucet_key).parent})",
                markup=False,
            )
            c.print(
                f"node identity: {info.node_address}; mining API at {info.url}/v1 "
                "(docs/protocol.md)",
                markup=False,
            )
            if info.rpc_url:
                c.print(f"CometBFT RPC: {info.rpc_url}", markup=False)
            c.print("Press Ctrl-C to stop.", markup=False)

        out.result(info.to_dict(), render)
        sys.stdout.flush()

    try:
        stopped = serve_forever(
            _home(home),
            host=host,
            port=port,
            block_time_s=seconds,
            on_ready=ready,
            rpc_port=rpc_port,
        )
    finally:
        node_log.setLevel(previous_level)
    out.info(f"Node stopped at height {stopped.stopped_height}.")
    if stopped.stop_signal == signal.SIGINT:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def status(node: NodeOpt = None, json_mode: JsonOpt = False) -> None:
    """Show a running node's height, chain id, accounts, mempool and uptime.

    Example: gonka node status --node http://127.0.0.1:1317
    """
    out = Output(json_mode)
    profile = network_profile("devnet" if node is None else None, node)
    with connect(profile) as client:
        data: dict[str, Any] = {"url": client.url, **client.node_status()}
    height, uptime = data.get("height"), data.get("uptime_s")
    if (
        not isinstance(data.get("chain_id"), str)
        or not isinstance(height, int)
        or isinstance(height, bool)
        or not isinstance(uptime, (int, float))
    ):
        # Another service's JSON must not pass for a status (nor crash the table below).
        raise NodeResponseError(
            f"{data['url']} is not a gonka node: its /v1/node/status is not a node status"
        )

    def render(c: Console) -> None:
        c.print(
            Output.fields(
                [
                    ("node", str(data["url"])),
                    *([("rpc", str(data["rpc_url"]))] if data.get("rpc_url") else []),
                    ("chain id", str(data.get("chain_id"))),
                    ("height", str(data.get("height"))),
                    ("latest block", str(data.get("latest_block_time"))),
                    ("accounts", str(data.get("accounts"))),
                    ("mempool", f"{data.get('mempool_txs')} txs"),
                    ("transactions", str(data.get("txs"))),
                    ("uptime", f"{uptime:.0f} s"),
                    *(
                        [
                            (
                                "epoch",
                                f"{data.get('epoch')}, {data.get('phase')} phase until "
                                f"height {data.get('phase_end_height')}",
                            ),
                            ("participants", str(data.get("participants"))),
                        ]
                        if "epoch" in data
                        else []
                    ),
                ]
            )
        )

    out.result(data, render)


@app.command()
def load(
    rps: Annotated[float, typer.Option("--rps", help="Requests per second.")] = 1.0,
    model: Annotated[str, typer.Option("--model", help="The model to ask.")] = "gonka-tiny",
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration", help="Stop after this long, e.g. 30s or 5m.", show_default=False
        ),
    ] = None,
    keys: Annotated[int, typer.Option("--keys", help="Faucet-funded keys to sign with.")] = 4,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens per answer.")] = 16,
    node: NodeOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Send signed inference requests to a devnet node, so its miners have work.

    Ctrl-C stops: the totals so far are printed, and the exit code is 130.
    Example: gonka node load --rps 2 --model gonka-tiny --duration 1m
    """
    import signal
    import threading

    from gonka_cli.node.load import fund_keys, run_load

    out = Output(json_mode)
    if not 1 <= keys <= 256:
        raise InputError("--keys must be between 1 and 256")
    if not 1 <= max_tokens <= 4096:
        raise InputError("--max-tokens must be between 1 and 4096")
    if not 0 < rps <= 1000:
        raise InputError("--rps must be between 0 and 1000")
    seconds = parse_duration(duration) if duration else None
    profile = network_profile("devnet" if node is None else None, node)
    with connect(profile) as client:
        url = client.url
        with out.status(f"Funding {keys} keys from the faucet of {url}"):
            funded = fund_keys(client, keys)
    # run_load ends quietly on Ctrl-C (KeyboardInterrupt): note it, to exit 130 after the totals.
    interrupted: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.append(signum)
        signal.default_int_handler(signum, frame)

    def tick(stats: Any) -> None:
        d = stats.to_dict()
        out.info(
            f"sent {d['sent']}, completed {d['completed']}, failed {d['failed']}"
            + (f" (last: {d['last_error']})" if d["failed"] else "")
        )

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        out.info(
            f"Sending {rps:g} requests/s for {model} to {url}"
            + (f" for {seconds:g} s" if seconds else "; Ctrl-C stops")
        )
        stats = run_load(
            url,
            funded,
            rps=rps,
            model=model,
            duration_s=seconds,
            max_tokens=max_tokens,
            on_tick=tick,
        )
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    data = {"url": url, "model": model, "rps": rps, **stats.to_dict()}

    def render(c: Console) -> None:
        p50, p99 = data["latency_p50_s"], data["latency_p99_s"]
        c.print(
            f"{data['completed']} of {data['sent']} requests completed in "
            f"{data['elapsed_s']:.1f} s ({data['completed_per_s']:.2f}/s)"
            + (f", latency p50 {p50:.3f} s, p99 {p99:.3f} s" if p50 is not None else ""),
            markup=False,
        )
        if data["failed"]:
            c.print(f"failed: {data['errors']}; last: {data['last_error']}", markup=False)

    out.result(data, render)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
