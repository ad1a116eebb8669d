"""`gonka bench`: what this machine's devices are and how fast (and right) they compute."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gonka_cli.cli.options import JsonOpt, NetworkOpt, NodeOpt, network_profile
from gonka_cli.cli.output import EXIT_INTERRUPTED, Output
from gonka_cli.errors import ConfigError, InputError
from gonka_cli.validate import is_int, is_number

if TYPE_CHECKING:
    from gonka_cli.bench.runner import Progress

app = typer.Typer(
    help="Know your hardware: devices, kernel speed against the datasheet, PoC and inference "
    "rates, a correctness check.",
    no_args_is_help=True,
)

NA = "N/A"


# --- formatting ----------------------------------------------------------------------------


def _num(value: Any, fmt: str = ",.1f", suffix: str = "") -> str:
    if not is_number(value):
        return NA
    return f"{value:{fmt}}{suffix}"


def _gb(value: Any) -> str:
    return _num(value / 1e9 if is_number(value) else None, ",.1f", " GB")


def _rate(value: Any) -> str:
    """Three significant digits at most: 1,273 / 81.5 / 0.123."""
    if not is_number(value):
        return NA
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _link(generation: Any, width: Any) -> str:
    if not is_int(generation) or not is_int(width):
        return NA
    return f"Gen{generation} x{width}"


def _table(title: str, *columns: str, wrap: bool = False) -> Table:
    """A borderless table: narrow enough for 80 columns, and plain when piped.

    Names and numbers do not wrap unless `wrap` (a table too wide for any terminal).
    """
    from rich import box

    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for column in columns:
        table.add_column(column, no_wrap=not wrap)
    return table


# --- devices --------------------------------------------------------------------------------


def _render_devices(c: Console, data: dict[str, Any]) -> None:
    nvidia = data["nvidia"]
    if nvidia["available"]:
        c.print(
            f"NVIDIA driver {nvidia['driver_version'] or NA}, "
            f"CUDA {nvidia['cuda_driver_version'] or NA}",
            markup=False,
        )
    for note in data["notes"]:
        c.print(note, markup=False)
    if data["gpus"]:
        table = _table(
            "GPUs",
            "#",
            "name",
            "bus id",
            "memory free / total",
            "CC",
            "temp",
            "power / limit",
            "SM clock / max",
            "mem clock / max",
            "PCIe now (max)",
            "torch",
            wrap=True,
        )
        for g in data["gpus"]:
            table.add_row(
                str(g["index"]),
                g["name"],
                g["pci_bus_id"] or NA,
                f"{_gb(g['memory_free_bytes'])} / {_gb(g['memory_total_bytes'])}",
                g["compute_capability"] or NA,
                _num(g["temperature_c"], "d", " C"),
                f"{_num(g['power_draw_w'], '.0f', ' W')} / {_num(g['power_limit_w'], '.0f', ' W')}",
                f"{_num(g['clock_sm_mhz'], 'd')} / {_num(g['clock_sm_max_mhz'], 'd', ' MHz')}",
                f"{_num(g['clock_memory_mhz'], 'd')} / "
                f"{_num(g['clock_memory_max_mhz'], 'd', ' MHz')}",
                f"{_link(g['pcie_generation'], g['pcie_width'])} "
                f"({_link(g['pcie_max_generation'], g['pcie_max_width'])})",
                g["torch_device"] or NA,
            )
        c.print(table)
        for g in data["gpus"]:
            c.print(f"GPU {g['index']} UUID: {g['uuid'] or NA}", markup=False)
    cpu, memory, torch, ort = data["cpu"], data["memory"], data["torch"], data["onnxruntime"]
    c.print(
        Output.fields(
            [
                ("CPU", cpu["model"] or NA),
                (
                    "cores",
                    f"{_num(cpu['cores_physical'], 'd')} physical, "
                    f"{_num(cpu['cores_logical'], 'd')} logical ({cpu['architecture'] or NA})",
                ),
                (
                    "frequency",
                    f"{_num(cpu['frequency_mhz'], ',.0f', ' MHz')} "
                    f"(max {_num(cpu['frequency_max_mhz'], ',.0f', ' MHz')})",
                ),
                (
                    "RAM",
                    f"{_gb(memory['total_bytes'])} total, "
                    f"{_gb(memory['available_bytes'])} available",
                ),
                (
                    "torch",
                    f"{torch['version'] or NA} (CUDA build {torch['cuda_version'] or NA}, "
                    f"{_num(torch['threads'], 'd')} threads)",
                ),
                (
                    "onnxruntime",
                    f"{ort['version'] or NA} (providers: {', '.join(ort['providers']) or NA})",
                ),
            ]
        )
    )


@app.command()
def devices(json_mode: JsonOpt = False) -> None:
    """List the GPUs (in nvidia-smi order), the CPU and RAM; N/A where a device cannot tell.

    Example: gonka bench devices --json
    """
    from gonka_cli.bench.devices import inventory

    out = Output(json_mode)
    data = inventory().to_dict()
    out.result(data, lambda c: _render_devices(c, data))


# --- run ----------------------------------------------------------------------------------------


class _ProgressView:
    """A rich bar on a terminal, a plain line per step otherwise, nothing in JSON mode."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self._bar: Any = None
        self._task: Any = None

    @contextlib.contextmanager
    def active(self) -> Iterator[_ProgressView]:
        if self.out.json_mode or not self.out.err.is_terminal:
            yield self
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress(
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            "{task.description}",
            console=self.out.err,
            transient=True,
        ) as bar:
            self._bar = bar
            self._task = bar.add_task("starting", total=None)
            try:
                yield self
            finally:
                self._bar = None

    def __call__(self, event: Progress) -> None:
        if self.out.json_mode:
            return
        if self._bar is not None:
            self._bar.update(
                self._task,
                total=event.total,
                completed=event.step if event.done else event.step - 1,
                description=event.description,
            )
        elif not event.done:
            self.out.err.print(f"[{event.step}/{event.total}] {event.description}", markup=False)


def _split(values: Sequence[str] | None) -> tuple[str, ...] | None:
    items = tuple(v.strip() for value in values or () for v in value.split(",") if v.strip())
    return items or None


def _render_run(c: Console, data: dict[str, Any]) -> None:
    title = "gonka bench run" + (" --quick" if data["quick"] else "")
    state = "" if data["complete"] else " (interrupted: partial results)"
    c.print(Text(f"{title}: {data['duration_s']:.1f} s{state}", style="bold"))
    for d in data["devices"]:
        card = d["known_card"]
        known = f"datasheet peaks: {card['name']}" if card else "not in the table of known cards"
        c.print(f"{d['id']}: {d['name']} ({known})", markup=False)
    for note in data["notes"]:
        c.print(note, markup=False)
    # One device (the usual case): no device column.
    several = len(data["devices"]) > 1
    # A model skipped as a whole (too large, too slow) is said once, not in every section.
    whole = _skipped_models(data)
    for (device, model), reason in whole.items():
        where = f" on {device}" if several else ""
        c.print(f"Skipped {model}{where}: {reason}", markup=False)

    def table(title: str, *columns: str) -> Table:
        return _table(title, *(("device",) if several else ()), *columns)

    def add(t: Table, row: dict[str, Any], *cells: Any) -> None:
        t.add_row(*((row["device"],) if several else ()), *cells)

    def show(t: Table, skipped: list[tuple[str, dict[str, Any]]]) -> None:
        """The table, then the rows that were not measured, grouped by reason."""
        if t.row_count:
            c.print(t)
        else:
            c.print(Text(str(t.title), style="bold"))
        reasons: dict[tuple[str, str], list[str]] = {}
        for label, row in skipped:
            if (row["device"], row.get("model")) in whole:
                continue
            where = f" on {row['device']}" if several else ""
            reasons.setdefault((row["status"], row["reason"]), []).append(label + where)
        for (status, reason), labels in reasons.items():
            c.print(f"  {status}: {', '.join(dict.fromkeys(labels))}: {reason}", markup=False)

    if data["kernels"]:
        t = table(
            "Kernels (median of timed repetitions)",
            "kernel",
            "dtype",
            "size",
            "median",
            "spread",
            "of peak",
        )
        skipped: list[tuple[str, dict[str, Any]]] = []
        for k in data["kernels"]:
            kernel = k["kernel"].replace("_", " ")
            if k["status"] != "ok":
                skipped.append((f"{kernel} {k['dtype'] or ''}".strip(), k))
                continue
            peak = (
                f"{k['percent_of_peak']:.0f}% of {_rate(k['peak'])}"
                if k["percent_of_peak"] is not None
                else NA
            )
            add(
                t,
                k,
                kernel,
                k["dtype"] or "",
                k["problem"],
                f"{_rate(k['median'])} {k['unit']}",
                f"±{_num(k['spread_percent'], '.0f')}%",
                peak,
            )
        show(t, skipped)

    if data["poc"]:
        t = table(
            "PoC (batch size tuned by a sweep)",
            "model",
            "backend",
            "dtype",
            "batch",
            "nonces/s",
            "per min",
            "GFLOP/s",
            "mine",
        )
        curves = []
        skipped = []
        for p in data["poc"]:
            if p["status"] != "ok":
                skipped.append((f"{p['model']} {p['backend']}", p))
                continue
            add(
                t,
                p,
                p["model"],
                p["backend"],
                p["precision"],
                str(p["batch_size"]),
                f"{_rate(p['nonces_per_second'])} ±{_num(p['spread_percent'], '.0f')}%",
                _rate(p["nonces_per_minute"]),
                _rate(p["gflops_per_second"]),
                "yes" if p["used_by_mine"] else "",
            )
            points = "  ".join(
                f"{pt['batch_size']}: {_rate(pt['items_per_second'])}"
                if pt["items_per_second"] is not None
                else f"{pt['batch_size']}: does not fit"
                for pt in p["curve"]
            )
            where = f"{p['device']} " if several else ""
            curves.append(f"  {where}{p['model']} {p['backend']}: {points} ({p['sweep_stopped']})")
        show(t, skipped)
        if curves:
            c.print(Text("Batch-size sweeps (batch: nonces/s)", style="bold"))
            for line in curves:
                c.print(line, markup=False)

    if data["inference"]:
        t = table(
            "Inference (torch, greedy, KV cache)",
            "model",
            "batch",
            "prompt",
            "prefill tok/s",
            "decode tok/s",
        )
        skipped = []
        for i in data["inference"]:
            if i["status"] != "ok":
                skipped.append((f"{i['model']} batch {i['batch_size']}", i))
                continue
            add(
                t,
                i,
                i["model"],
                str(i["batch_size"]),
                str(i["prompt_tokens"]),
                _rate(i["prefill_tokens_per_second"]),
                _rate(i["decode_tokens_per_second"]),
            )
        show(t, skipped)

    if data["replay"]:
        t = table(
            "Replay validation (batch 1)",
            "model",
            "tokens",
            "generate tok/s",
            "replay tok/s",
            "replay/generate",
        )
        skipped = []
        for r in data["replay"]:
            if r["status"] != "ok":
                skipped.append((r["model"], r))
                continue
            add(
                t,
                r,
                r["model"],
                str(r["tokens"]),
                _rate(r["generate_tokens_per_second"]),
                _rate(r["replay_tokens_per_second"]),
                _num(r["replay_over_generate"], ".3f"),
            )
        show(t, skipped)

    if data["correctness"]:
        t = table(
            "Correctness (against a CPU fp32 reference)",
            "model",
            "backend",
            "result",
            "worst / limit",
        )
        skipped = []
        failures = []
        for r in data["correctness"]:
            if r["status"] == "SKIPPED":
                skipped.append((f"{r['model']} {r['backend']}", r))
                continue
            style = {"PASS": "green", "FAIL": "bold red"}.get(r["status"], "")
            worst = f"{_num(r['worst_distance'], '.4f')} / {_num(r['threshold'], 'g')}"
            add(t, r, r["model"], r["backend"], Text(r["status"], style=style), worst)
            if r["status"] == "FAIL":
                failures.append(f"  FAIL {r['model']} {r['backend']}: {r['reason']}")
        show(t, skipped)
        for line in failures:
            c.print(line, markup=False, style="red")

    share = data["share"]
    if share is not None:
        if share["status"] == "estimated":
            c.print(
                f"Estimated share: {share['share_percent']:.3g}% of the network's weight "
                f"({share['model']}: {share['reason']}; from {share['node_url']})",
                markup=False,
            )
        else:
            c.print(f"Estimated share: unknown; {share['reason']}", markup=False)
    for p in data["poc"]:
        if p["used_by_mine"]:
            c.print(
                f"gonka mine on {p['device']} with {p['model']}: {p['backend']}, batch "
                f"{p['batch_size']}, {_rate(p['nonces_per_minute'])} nonces/min",
                markup=False,
            )


def _skipped_models(data: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(device, model) -> reason, for models none of whose rows ran, all for one reason."""
    reasons: dict[tuple[str, str], set[str]] = {}
    for section in ("poc", "inference", "replay", "correctness"):
        for row in data[section]:
            key = (row["device"], row["model"])
            ran = row["status"] in ("ok", "PASS", "FAIL")
            reasons.setdefault(key, set()).add("" if ran else row["reason"])
    return {key: next(iter(r)) for key, r in reasons.items() if len(r) == 1 and "" not in r}


@app.command()
def run(
    devices: Annotated[
        list[str] | None,
        typer.Option(
            "--devices",
            help="Devices to measure: cpu, GPU indexes as gonka bench devices shows them, or "
            "all; comma-separated or repeated. Default: every GPU, else the CPU.",
            show_default=False,
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Fewer repetitions, a short sweep, gonka-tiny and gonka-small only."
        ),
    ] = False,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            help="Models to measure (comma-separated or repeated); named models are measured "
            "even where they are slow. Default: every catalogue model that fits and runs fast "
            "enough.",
            show_default=False,
        ),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="Also write the result (JSON) to FILE.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Do not ask a node for the network's weight (no share)."),
    ] = False,
    network: NetworkOpt = None,
    node: NodeOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Measure kernels, PoC and inference rates, and check the artifacts are right.

    Ctrl-C stops the run and prints (and saves) what was measured so far.

    Example: gonka bench run --quick --save quick.json
    """
    from gonka_cli.bench.results import save_result
    from gonka_cli.bench.runner import BenchConfig, BenchInterrupted, run_bench

    out = Output(json_mode)
    urls: tuple[str, ...] = ()
    reason = "no node was asked (offline)"
    if not offline:
        try:
            urls = network_profile(network, node).rest_urls
        except ConfigError as exc:
            if network or node:
                raise
            # The share is optional: a broken config file must not stop a benchmark.
            reason = f"no node was asked: {exc}"
    config = BenchConfig(
        devices=_split(devices),
        models=_split(models),
        quick=quick,
        share_urls=urls,
        share_reason=reason,
    )
    if save is not None and not save.expanduser().parent.is_dir():
        raise InputError(f"cannot save to {save}: its directory does not exist")
    view = _ProgressView(out)
    interrupted = False
    try:
        with view.active():
            result = run_bench(config, view)
    except BenchInterrupted as stop:
        result = stop.result
        interrupted = True
    data = result.to_dict()
    # Results first: a file that cannot be written must not cost the measurements.
    out.result(data, lambda c: _render_run(c, data))
    if save is not None:
        save_result(save, data)
        out.info(f"Saved to {save}")
    if interrupted:
        typer.echo("Interrupted.", err=True)
        sys.stdout.flush()
        raise typer.Exit(EXIT_INTERRUPTED)


# --- compare ----------------------------------------------------------------------------------


def _render_compare(c: Console, data: dict[str, Any]) -> None:
    for side in ("a", "b"):
        s = data[side]
        quick = " (quick)" if s["quick"] else ""
        c.print(
            f"{side.upper()}: {s['file']}, {s['created_at']}{quick}; {'; '.join(s['devices'])}",
            markup=False,
        )
    table = _table("", "section", "metric", "A", "B", "B / A")
    for r in data["rows"]:
        unit = f" {r['unit']}" if r["unit"] else ""

        def show(v: Any, unit: str = unit) -> str:
            if v is None:
                return NA
            return v if isinstance(v, str) else f"{_rate(v)}{unit}"

        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        table.add_row(r["section"], r["metric"], show(r["a"]), show(r["b"]), ratio)
    c.print(table)


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="A run saved with --save.", show_default=False)],
    b: Annotated[Path, typer.Argument(help="Another saved run.", show_default=False)],
    json_mode: JsonOpt = False,
) -> None:
    """Show two saved runs side by side, with B / A for every rate.

    Example: gonka bench compare before.json after.json
    """
    from gonka_cli.bench.compare import compare_files

    out = Output(json_mode)
    data = compare_files(a, b).to_dict()
    out.result(data, lambda c: _render_compare(c, data))
