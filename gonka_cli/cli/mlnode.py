"""`gonka mlnode`: serve this machine as the ML node of a Gonka host's decentralized-api."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from gonka_cli import settings
from gonka_cli.cli.mine import _log_to_file
from gonka_cli.cli.options import JsonOpt, TempLimitOpt
from gonka_cli.cli.output import Output
from gonka_cli.errors import InputError, MinerError

if TYPE_CHECKING:
    from gonka_cli.miner.devices import MiningDevice

app = typer.Typer(
    help="Mine on the Gonka mainnet as the ML node of a host's decentralized-api "
    "(see docs/mainnet.md).",
    no_args_is_help=True,
)

DEFAULT_URL = "http://127.0.0.1:8080"

TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Require `Authorization: Bearer TOKEN` on every request (serve), or send it "
        f"(status). Default: {settings.ENV_MLNODE_TOKEN}.",
        show_default=False,
    ),
]


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    control_port: Annotated[
        int,
        typer.Option(
            "--control-port", help="Control API port (the node-config's poc_port); 0: any free."
        ),
    ] = 8080,
    inference_port: Annotated[
        int,
        typer.Option(
            "--inference-port",
            help="OpenAI-compatible inference port (the node-config's inference_port); 0: any "
            "free.",
        ),
    ] = 5000,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices",
            help="GPU indices as nvidia-smi numbers them (0,1), or cpu; one PoC group each. "
            "Default: every GPU; the CPU when there is none.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Load this model at start: a Hugging Face repo id in the local cache, a "
            "checkpoint directory or a built-in model. The host's API loads its own with "
            "inference/up otherwise.",
            show_default=False,
        ),
    ] = None,
    token: TokenOpt = None,
    node_id: Annotated[
        str, typer.Option("--node-id", help="The id in the printed node-config entry.")
    ] = "gonka1",
    temp_limit: TempLimitOpt = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            help="Log here instead of mlnode.log in gonka's log directory.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    json_mode: Annotated[
        bool, typer.Option("--json", help="Print JSON lines: start-up, then the node's events.")
    ] = False,
) -> None:
    """Serve the ML-node API a host's decentralized-api drives, until Ctrl-C or SIGTERM.

    Start-up prints the node-config entry to add to the host's node-config.json (or to post
    to its admin API, POST /admin/v1/nodes), then the control and inference URLs. The
    callback cadence follows POC_CALLBACK_INTERVAL_SEC (default 5 s). State that must
    survive a restart (undelivered callbacks) lives in gonka's data directory.

    Example: GONKA_MLNODE_TOKEN=... gonka mlnode serve --host 0.0.0.0 --devices 0,1,2,3
    """
    out = Output(json_mode)
    token = token or settings.mlnode_token()
    interval_s = settings.poc_callback_interval_s()
    for option, port in (("--control-port", control_port), ("--inference-port", inference_port)):
        if not 0 <= port <= 65535:
            raise InputError(f"invalid {option} {port}: give a port from 1 to 65535")
        _check_port_free(host, port, option)
    handler = _log_to_file(log_file, "mlnode.log")
    out.info(f"log: {handler.baseFilename}")
    try:
        code = _serve(
            out,
            host=host,
            control_port=control_port,
            inference_port=inference_port,
            devices_spec=devices,
            model=model,
            token=token,
            node_id=node_id,
            temp_limit=temp_limit,
            interval_s=interval_s,
            json_mode=json_mode,
        )
    finally:
        logging.getLogger("gonka_cli").removeHandler(handler)
        handler.close()
    if code:
        raise typer.Exit(code)


def _check_port_free(host: str, port: int, option: str) -> None:
    """Fail before loading anything when a port is taken (the server checks again when it
    binds: this only saves a model load that would be thrown away)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror:
            raise InputError(f"invalid --host {host!r}: not an address of this machine") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MinerError(
                    f"port {port} on {host} is in use (another ML node, or the host's own "
                    f"ML-node container?): stop it or pick another {option}"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InputError(
                    f"invalid --host {host!r}: not an address of this machine"
                ) from None
            raise MinerError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host and {option}"
            ) from None


def _check_model(name: str) -> None:
    """Fail in one line, before any device starts, when `--model` names nothing there is."""
    from gonka_cli.compute.checkpoints import resolve
    from gonka_cli.compute.models import MODELS

    if name not in MODELS:
        resolve(name)  # UnknownModel: says how to download it, or what a model can be


def _serve(
    out: Output,
    *,
    host: str,
    control_port: int,
    inference_port: int,
    devices_spec: str | None,
    model: str | None,
    token: str | None,
    node_id: str,
    temp_limit: float | None,
    interval_s: float | None,
    json_mode: bool,
) -> int:
    from gonka_cli.bench.devices import inventory
    from gonka_cli.miner.devices import ThermalGate, select_devices
    from gonka_cli.mlnode.host import node_config_entry
    from gonka_cli.mlnode.server import MlNodeServer
    from gonka_cli.mlnode.service import MlNode, MlNodeConfig

    if temp_limit is not None:
        ThermalGate(temp_limit)  # InputError outside the range it accepts
    chosen = select_devices(devices_spec, inventory())
    if devices_spec is None and chosen[0].id == "cpu":
        out.info("no NVIDIA GPU found: serving on the CPU")
    if model is not None:
        _check_model(model)
    emit = _event_printer(out, json_mode)
    config = MlNodeConfig(
        devices=tuple(chosen),
        data_dir=settings.paths().data_dir / "mlnode",
        model=model,
        temp_limit_c=temp_limit,
    )
    if interval_s is not None:
        config = dataclasses.replace(config, callback_interval_s=interval_s)
    node = MlNode(config, on_event=emit)
    # Built first: it checks the ports and the token before a model load that can take minutes.
    server = MlNodeServer(
        node, host=host, control_port=control_port, inference_port=inference_port, token=token
    )
    try:
        with out.status(f"Loading {model}..." if model else "Starting the ML node..."):
            node.start()
        server.start()
    except BaseException:
        node.close()
        raise
    entry = node_config_entry(
        host=host,
        control_port=server.control_port,
        inference_port=server.inference_port,
        model=node.served_model() or model,
        devices=chosen,
        node_id=node_id,
    )
    _print_start(out, json_mode, entry, server.control_url, server.inference_url, chosen)
    code = server.serve()  # stops the server and closes the node on the way out
    out.info("Stopped.")
    return code


def _print_start(
    out: Output,
    json_mode: bool,
    entry: dict[str, Any],
    control_url: str,
    inference_url: str,
    chosen: list[MiningDevice],
) -> None:
    if json_mode:
        _write_line(
            {
                "event": "serving",
                "control_url": control_url,
                "inference_url": inference_url,
                "devices": [d.id for d in chosen],
                "node_config": entry,
            }
        )
        return
    out.info(
        "Add this node to the host's node-config.json, or post it to the API's admin port "
        "(POST /admin/v1/nodes):"
    )
    sys.stdout.write(json.dumps(entry, indent=2) + "\n")
    sys.stdout.flush()
    out.info(f"control API (poc_port):         {control_url}")
    out.info(f"inference API (inference_port): {inference_url}")
    out.info(
        f"Serving on {', '.join(d.id + ' (' + d.name + ')' for d in chosen)}; "
        "gonka mlnode status shows what it does; Ctrl-C stops"
    )


_print_lock = threading.Lock()


def _write_line(data: dict[str, Any]) -> None:
    line = json.dumps(data, separators=(",", ":"), default=str)
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _event_printer(out: Output, json_mode: bool) -> Any:
    """The node's `on_event`: a JSON line per event in JSON mode; otherwise a line on stderr
    for the events a person watching wants to see."""

    def emit(event: str, fields: dict[str, Any] | None = None) -> None:
        fields = dict(fields or {})
        if json_mode:
            _write_line({"event": event, **fields})
            return
        answered = fields.get("http_status")
        if event == "callback" and isinstance(answered, int) and 200 <= answered < 300:
            return  # one every few seconds while mining: only failures are worth a line
        detail = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        out.info(f"{time.strftime('%H:%M:%S')} {event}" + (f": {detail}" if detail else ""))

    return emit


@app.command()
def status(
    url: Annotated[str, typer.Option("--url", help="The ML node's control URL.")] = DEFAULT_URL,
    token: TokenOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Show what a running ML node is doing.

    Its state and model, the PoC round with each device group's speed, queued validations,
    and the last callback to the host's API. --json prints the node's
    GET /api/v1/gonka/status answer as it is.

    Example: gonka mlnode status --url http://127.0.0.1:8080
    """
    from gonka_cli.mlnode.host import fetch_status

    out = Output(json_mode)
    data = fetch_status(url, token=token or settings.mlnode_token())
    out.result(data, lambda console: _render_status(console, data))


def _when(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        ago = max(0.0, time.time() - float(value))
        return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(value))} ({ago:.0f} s ago)"
    return "N/A" if value is None else str(value)


def _rate(value: Any) -> str:
    return "N/A" if not isinstance(value, int | float) else f"{value:,.1f} nonces/s"


def _render_status(console: Console, data: dict[str, Any]) -> None:
    poc = data.get("poc") or {}
    validation = data.get("validation") or {}
    rows: list[tuple[str, str]] = [
        ("state", str(data.get("state"))),
        ("model", str(data.get("model") or "none loaded")),
        ("version", str(data.get("version"))),
    ]
    round_ = str(poc.get("status") or "IDLE")
    if poc.get("block_height") is not None:
        round_ += f" at height {poc.get('block_height')}"
    if poc.get("block_hash"):
        round_ += f" (block {str(poc.get('block_hash'))[:16]}...)"
    rows.append(("PoC", round_))
    for group in poc.get("groups") or []:
        devices = ", ".join(str(d) for d in group.get("devices") or [])
        rows.append(
            (
                f"  group {group.get('group_id')}",
                f"{_rate(group.get('nonces_per_second'))}, "
                f"{group.get('total_processed', 0):,} nonces ({devices})",
            )
        )
    rows.append(
        (
            "artifacts",
            f"{poc.get('buffered_artifacts', 0):,} buffered, {poc.get('sent_artifacts', 0):,} sent",
        )
    )
    rows.append(
        (
            "validations",
            f"{validation.get('queued_jobs', 0)} queued ({validation.get('queued_nonces', 0):,} "
            f"nonces), {validation.get('completed', 0)} done",
        )
    )
    last = data.get("last_callback")
    if last:
        result = (
            f"HTTP {last.get('http_status')}"
            if last.get("http_status") is not None
            else "no answer"
        )
        if last.get("error"):
            result += f" ({last.get('error')})"
        artifacts = last.get("artifacts")
        text = f"{last.get('kind')} -> {result}" + (
            f", {artifacts} artifacts" if artifacts is not None else ""
        )
        rows.append(("last callback", f"{text} at {_when(last.get('at'))}"))
    else:
        rows.append(("last callback", "none yet"))
    console.print(Output.fields(rows, title="ML node"))
