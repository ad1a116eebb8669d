"""`gonka mine`: mine GNK on this machine's devices, with a live view, events and monitoring."""

from __future__ import annotations

import json
import logging
import logging.handlers
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gonka_cli import settings
from gonka_cli.chain.amount import describe
from gonka_cli.cli.node import parse_duration
from gonka_cli.cli.options import (
    NetworkOpt,
    NodeOpt,
    PasswordFileOpt,
    TempLimitOpt,
    chain_client,
    keystore,
    network_profile,
)
from gonka_cli.cli.output import EXIT_INTERRUPTED, Output, exit_code_for, one_line
from gonka_cli.errors import (
    GonkaError,
    InputError,
    KeyNotFound,
    MinerError,
    NodeUnreachable,
    RequestRefused,
)

if TYPE_CHECKING:
    from gonka_cli.miner.miner import Miner

#: How often a summary line is printed when stdout is not a terminal.
SUMMARY_EVERY_S = 30.0
LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
#: What to do when no node of the profile answers.
_NODE_HINT = "is it running? (gonka mine --devnet starts a local one)"
_QUIET_EVENTS = frozenset({"work_received", "task_computed", "phase"})


def mine(
    network: NetworkOpt = None,
    node: NodeOpt = None,
    devnet: Annotated[
        bool,
        typer.Option(
            "--devnet",
            help="Mine on the local devnet: join the node on the devnet profile's URL or start "
            "one in this process, and create and fund the wallet if it does not exist.",
        ),
    ] = False,
    wallet: Annotated[
        str, typer.Option("--wallet", help="The key that registers and earns.")
    ] = "miner",
    password_file: PasswordFileOpt = None,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices",
            help="GPU indices as nvidia-smi numbers them (0,1), or cpu. Default: every GPU; "
            "the CPU when there is none.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="A model to serve inference with (repeatable), besides the network's PoC model.",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration",
            help="Stop after this long (e.g. 90s, 10m) and print the summary.",
            show_default=False,
        ),
    ] = None,
    api_port: Annotated[
        int | None,
        typer.Option(
            "--api-port",
            help="Serve /metrics (Prometheus) and /status (JSON) on 127.0.0.1 at this port.",
            show_default=False,
        ),
    ] = None,
    temp_limit: TempLimitOpt = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            help="Log here instead of mine.log in gonka's log directory.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    json_mode: Annotated[
        bool, typer.Option("--json", help="Print JSON lines: events, then a summary object.")
    ] = False,
) -> None:
    """Mine GNK: PoC rounds and inference tasks on every selected device, until Ctrl-C.

    Example: gonka mine --devnet
    """
    out = Output(json_mode)
    duration_s = _duration(duration)
    if devnet and network not in (None, "devnet"):
        raise InputError("--devnet mines on the devnet profile; leave out --network")
    if not devnet:
        _refuse_mainnet(network_profile(network, node))
    handler = _log_to_file(log_file)
    log_path = Path(handler.baseFilename)
    out.info(f"log: {log_path}")
    try:
        _mine(
            out,
            network,
            node,
            devnet,
            wallet,
            password_file,
            devices,
            model or [],
            duration_s,
            api_port,
            temp_limit,
            json_mode,
        )
    except GonkaError as exc:
        logging.getLogger("gonka_cli").error("gonka mine stopped: %s", exc)
        typer.echo(f"Error: {one_line(exc)} (log: {log_path})", err=True)
        raise typer.Exit(exit_code_for(exc)) from None
    finally:
        logging.getLogger("gonka_cli").removeHandler(handler)
        handler.close()


def _mine(
    out: Output,
    network: str | None,
    node_url: str | None,
    devnet: bool,
    wallet: str,
    password_file: Path | None,
    devices_spec: str | None,
    models: list[str],
    duration_s: float | None,
    api_port: int | None,
    temp_limit: float | None,
    json_mode: bool,
) -> None:
    from gonka_cli.bench.devices import inventory
    from gonka_cli.compute.models import get_spec
    from gonka_cli.miner import devnet as devnet_setup
    from gonka_cli.miner.devices import Telemetry, ThermalGate, select_devices
    from gonka_cli.miner.miner import Miner, MinerConfig
    from gonka_cli.miner.monitor import MonitorServer
    from gonka_cli.node.genesis import default_home
    from gonka_cli.workclient import WorkClient

    profile = network_profile("devnet" if devnet else network, node_url)
    for name in models:
        get_spec(name)  # UnknownModel names the models there are
    if temp_limit is not None:
        ThermalGate(temp_limit)
    store = keystore()
    if not devnet and not store.exists(wallet):
        raise KeyNotFound(
            f"no wallet named {wallet!r}: create it with gonka wallet create {wallet}, pass "
            "--wallet NAME, or mine on the local devnet with --devnet (which creates it)"
        )
    inv = inventory()
    chosen = select_devices(devices_spec, inv)
    if devices_spec is None and chosen[0].id == "cpu":
        out.info("no NVIDIA GPU found: mining on the CPU")

    emit = _event_printer(json_mode)

    def note(event: str, text: str, **fields: Any) -> None:
        """A start-up step: an event line in JSON mode, a line on stderr otherwise."""
        if json_mode:
            emit({"event": event, **fields})
        else:
            out.info(text)

    if not devnet:
        _probe_work_api(profile)
    # The password first: a wrong one then costs no node start, and the prompt is not lost
    # among the start-up lines. At a prompt, a typo asks again.
    new_wallet = devnet and not store.exists(wallet)
    password = out.password(password_file, key_name=wallet, new=True) if new_wallet else ""
    unlocked = None if new_wallet else out.unlock(store, wallet, password_file)
    node = monitor = None
    if devnet:
        with out.status("Starting the devnet node..."):
            node, url = devnet_setup.join_or_start(profile.rest_urls[0], default_home())
        from dataclasses import replace

        profile = replace(profile, rest_urls=(url,))
        note(
            "devnet_started" if node else "devnet_joined",
            ("Started" if node else "Joined") + f" the devnet node at {url}",
            url=url,
        )
    try:
        chain = chain_client(profile)
        if new_wallet:
            info = devnet_setup.create_wallet(store, wallet, password)
            amount = devnet_setup.fund(chain, info.address)
            note(
                "wallet_created",
                f"Created wallet {wallet!r} ({info.address}) and funded it with "
                f"{describe(amount)}; gonka wallet export {wallet} shows its mnemonic",
                wallet=wallet,
                address=info.address,
                funded_ngonka=str(amount),
            )
        key = (unlocked or store.unlock(wallet, password)).private_key
        client = WorkClient(profile.rest_urls, key, hint=_NODE_HINT)
        _check_node(client)

        def balance() -> int:
            return chain.balance(client.address).spendable

        miner = Miner(
            client,
            key,
            settings.paths().data_dir,
            MinerConfig(
                devices=tuple(chosen),
                models=tuple(models),
                duration_s=duration_s,
                temp_limit_c=temp_limit,
            ),
            on_event=emit,
            balance=balance,
            telemetry=Telemetry(),
        )
        monitor = MonitorServer(miner.snapshot, api_port).start() if api_port is not None else None
        if monitor is not None:
            note(
                "monitoring",
                f"monitoring: {monitor.url}/metrics and {monitor.url}/status",
                url=monitor.url,
            )
        out.info(
            f"Mining as {client.address} on {client.url} with "
            f"{', '.join(d.id + ' (' + d.name + ')' for d in chosen)}; Ctrl-C stops"
        )
        interrupted = _run(miner, out, json_mode)
    finally:
        if node is not None:
            node.stop()
    if monitor is not None:
        monitor.stop()
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    seconds = parse_duration(text)
    if seconds <= 0:
        raise InputError(f"invalid --duration {text!r}: give a positive time, e.g. 90s or 10m")
    return seconds


def _log_to_file(path: Path | None, name: str = "mine.log") -> logging.FileHandler:
    """Everything gonka logs at INFO and above goes to a rotating file (`path`, else `name` in
    gonka's log directory); stderr keeps warnings."""
    target = path or settings.paths().log_dir / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = logging.handlers.RotatingFileHandler(
            target, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        raise InputError(f"cannot write the log file {target}: {exc.strerror}") from None
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    )
    logger = logging.getLogger("gonka_cli")
    for existing in logger.handlers:
        if not isinstance(existing, logging.FileHandler):
            existing.setLevel(logging.DEBUG if settings.debug() else logging.WARNING)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if settings.debug() else logging.INFO)
    return handler


#: Why `gonka mine` stops on a network that does not run gonka's devnet work protocol.
MAINNET_MINING = (
    "mainnet mining runs as `gonka mlnode serve` under the host's decentralized-api, not as "
    "gonka mine; see docs/mainnet.md (gonka mine mines on gonka's own devnet: --devnet)"
)


def _refuse_mainnet(profile: settings.NetworkProfile) -> None:
    """Stop at once on mainnet, asked for by name or the default with no node of one's own:
    it has no devnet work API; its hosts mine as ML nodes driven by their decentralized-api."""
    mainnet = settings.BUILTIN_NETWORKS["mainnet"].chain_id
    named = profile.chosen_by in (settings.CHOSEN_BY_OPTION, settings.CHOSEN_BY_ENV)
    if profile.chain_id == mainnet and (named or not profile.node_given):
        raise MinerError(MAINNET_MINING)


def _probe_work_api(profile: settings.NetworkProfile) -> None:
    """Before the password prompt, ask the network's node once (a public read) whether it
    serves the work API: one that answers without it is refused like mainnet. One that does
    not answer is left to the checks after the prompt, which say what to do about it."""
    from gonka_cli.workclient import WorkClient

    client = WorkClient(profile.rest_urls, None, timeout_s=5.0, hint=_NODE_HINT)
    try:
        _check_node(client)
    except NodeUnreachable:
        return
    finally:
        client.close()


def _check_node(client: Any) -> None:
    """Fail at once, in one line, when no node answers or the one that does is not a gonka
    node (the client tries the profile's nodes in turn)."""
    from gonka_cli.protocol import ProtocolError

    try:
        client.epoch()
    except (RequestRefused, ProtocolError) as exc:
        if isinstance(exc, ProtocolError) or exc.status in (404, 405, 501):
            raise MinerError(
                f"the node at {client.url} does not serve gonka's mining API (/v1/epochs); "
                "mine against a gonka node (--devnet, or --node URL of one); on mainnet, "
                "mining runs as `gonka mlnode serve` under the host's decentralized-api "
                "(docs/mainnet.md)"
            ) from None
        raise


# --- output ----------------------------------------------------------------------------------


def _event_printer(json_mode: bool) -> Any:
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        if not json_mode:
            return
        line = json.dumps(event, separators=(",", ":"), default=str)
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    return emit


def _run(miner: Miner, out: Output, json_mode: bool) -> bool:
    """Run the miner in this thread with the right display; True when stopped by Ctrl-C."""
    interrupted = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT:
            if interrupted.is_set():
                raise KeyboardInterrupt  # a second Ctrl-C: stop waiting
            interrupted.set()
        miner.stop()

    previous = {
        sig: signal.signal(sig, on_signal)
        for sig in (signal.SIGINT, signal.SIGTERM)
        if threading.current_thread() is threading.main_thread()
    }
    try:
        if json_mode:
            summary = miner.run()
            sys.stdout.write(json.dumps(summary, separators=(",", ":")) + "\n")
        elif out.out.is_terminal:
            summary = _run_live(miner, out.out)
            _print_summary(out.out, summary)
        else:
            summary = _run_plain(miner, out.out)
            _print_summary(out.out, summary)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return interrupted.is_set()


def _run_live(miner: Miner, console: Console) -> dict[str, Any]:
    from rich.live import Live

    with Live(
        get_renderable=lambda: render_status(miner.snapshot()),
        console=console,
        refresh_per_second=2,
        transient=False,
    ):
        return miner.run()


def _run_plain(miner: Miner, console: Console) -> dict[str, Any]:
    done = threading.Event()

    def tick() -> None:
        while not done.wait(SUMMARY_EVERY_S):
            console.print(status_line(miner.snapshot()), markup=False)

    ticker = threading.Thread(target=tick, name="summary", daemon=True)
    ticker.start()
    try:
        return miner.run()
    finally:
        done.set()


def _gnk(ngonka: str | None) -> str:
    return "N/A" if ngonka is None else describe(int(ngonka))


def _num(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "N/A"
    return f"{value:,.{digits}f}{unit}"


def status_line(snap: dict[str, Any]) -> str:
    """One line of status, for logs and non-terminal output."""
    t = snap["totals"]
    rate = sum(d["nonces_per_second"] or 0 for d in snap["devices"])
    left = snap.get("phase_time_left_s")
    upcoming = _next_generate(snap)
    return (
        f"{time.strftime('%H:%M:%S')} epoch {snap.get('epoch')} {snap.get('phase')}"
        f"{'' if left is None else f' ({left:.0f}s left)'}"
        f"{'' if upcoming is None else f' | {upcoming}'} | {rate:,.0f} nonces/s | "
        f"committed {t['artifacts_committed']:,} | proofs {t['proofs_answered']} | "
        f"inference {t['inference_tasks']} | validations {t['validations']} | "
        f"accepted {t['accepted']} rejected {t['rejected']} | "
        f"weight {t['weight_accepted']:,} | earned {_gnk(t['earned_ngonka'])}"
        + ("" if snap.get("node_reachable", True) else " | node unreachable, retrying")
    )


def render_status(snap: dict[str, Any]) -> Group:
    """The live view: devices, then the epoch and the work totals."""
    devices = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "device",
        "name",
        "state",
        "nonces/s",
        "nonces",
        "temp",
        "power",
        "util",
        "restarts",
    ):
        devices.add_column(
            column, justify="left" if column in ("device", "name", "state") else "right"
        )
    for d in snap["devices"]:
        devices.add_row(
            d["id"],
            d["name"][:32],
            d["state"],
            _num(d["nonces_per_second"]),
            _num(d["nonces"]),
            _num(d["temperature_c"], " °C"),
            _num(d["power_w"], " W"),
            _num(d["utilization_pct"], "%"),
            str(d["restarts"]),
        )
    t = snap["totals"]
    left = snap.get("phase_time_left_s")
    head = Text()
    head.append(f"epoch {snap.get('epoch')} · {snap.get('phase')}", style="bold")
    head.append("" if left is None else f" · {left:.0f} s left")
    upcoming = _next_generate(snap)
    if upcoming is not None:
        head.append(f" · {upcoming}", style="bold")
    head.append(f" · height {snap.get('height')} · {snap['node_url']}")
    if not snap.get("node_reachable", True):
        head.append(" · node unreachable, retrying", style="bold red")
    warnings = [
        Text(f"warning: {d['warning']}", style="bold red")
        for d in snap["devices"]
        if d.get("warning")
    ]
    reasons = ", ".join(f"{k} ×{v}" for k, v in t["rejections"].items())
    work = Text(
        f"artifacts committed {t['artifacts_committed']:,} · proofs answered "
        f"{t['proofs_answered']} · inference {t['inference_tasks']} · validations "
        f"{t['validations']} · accepted {t['accepted']} · rejected {t['rejected']}"
        + (f" ({reasons})" if reasons else "")
        + f" · outbox {t['outbox_pending']}\n"
        f"weight: estimated {t['weight_estimated']:,}, accepted {t['weight_accepted']:,} · "
        f"balance {_gnk(t['balance_ngonka'])} · earned {_gnk(t['earned_ngonka'])}"
    )
    return Group(head, devices, *warnings, work)


def _next_generate(snap: dict[str, Any]) -> str | None:
    """Outside a generate phase: when the next one starts."""
    seconds = snap.get("next_generate_in_s")
    if seconds is None or snap.get("phase") == "generate":
        return None
    return f"next generate phase in {seconds:.0f} s"


def _print_summary(console: Console, s: dict[str, Any]) -> None:
    rows = [
        ("duration", f"{s['duration_s']:.0f} s"),
        ("nonces", f"{s['nonces']:,}"),
        ("artifacts committed", f"{s['artifacts_committed']:,}"),
        ("weight accepted", f"{s['weight_accepted']:,}"),
        ("proofs answered", str(s["proofs_answered"])),
        ("inference tasks", str(s["inference_tasks"])),
        ("validations", str(s["validations"])),
        ("accepted / rejected", f"{s['accepted']} / {s['rejected']}"),
        ("earned", _gnk(s["earned_ngonka"])),
        ("balance", _gnk(s["balance_ngonka"])),
    ]
    if s["rejections"]:
        rows.append(("rejections", ", ".join(f"{k} ×{v}" for k, v in s["rejections"].items())))
    if s["outbox_pending"]:
        rows.append(("still to send", f"{s['outbox_pending']} (sent by the next run)"))
    console.print(Output.fields(rows, title="Mining summary"))
