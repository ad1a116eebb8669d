"""`gonka models`: the built-in models and the Hugging Face checkpoints this machine has."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gonka_cli.cli.options import JsonOpt, YesOpt
from gonka_cli.cli.output import Output

app = typer.Typer(
    help="List, download and remove models: built-in ones and Hugging Face checkpoints "
    "(kept in the Hugging Face cache: HF_HUB_CACHE, else HF_HOME/hub).",
    no_args_is_help=True,
)


def _size(n: int) -> str:
    if n <= 0:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _params(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


@app.command("list")
def list_(json_mode: JsonOpt = False) -> None:
    """List the built-in models and the checkpoints in the Hugging Face cache.

    For each: id, architecture, parameters, size on disk, dtype, and whether this machine
    can run it (a supported architecture that fits in free GPU memory, or else in RAM).

    Example: gonka models list --json
    """
    from gonka_cli.compute.checkpoints import hub_cache_dir
    from gonka_cli.compute.hub import list_local

    out = Output(json_mode)
    entries = list_local()
    data = {"hub_cache": str(hub_cache_dir()), "models": [e.to_dict() for e in entries]}

    def render(console: Console) -> None:
        table = Table(box=None, pad_edge=False)
        for column in ("ID", "ARCHITECTURE", "PARAMETERS", "SIZE", "DTYPE", "RUNS HERE"):
            table.add_column(column)
        for e in entries:
            runs = "yes" if e.runnable else f"no: {e.reason}"
            table.add_row(
                e.id, e.architecture, _params(e.param_count), _size(e.size_on_disk_bytes),
                e.dtype, runs,
            )  # fmt: skip
        console.print(table)
        console.print(f"Hugging Face cache: {data['hub_cache']}", markup=False)

    out.result(data, render)


@app.command()
def pull(
    repo_id: Annotated[str, typer.Argument(help="Hugging Face repo id, e.g. Qwen/Qwen3-0.6B.")],
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision", help="Branch, tag or commit (default: main).", show_default=False
        ),
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Download a checkpoint into the Hugging Face cache (configs, safetensors, tokenizer).

    Uses HF_ENDPOINT, HF_TOKEN and HF_HUB_CACHE / HF_HOME as every Hugging Face tool does.

    Example: gonka models pull Qwen/Qwen3-0.6B
    """
    from gonka_cli.compute.hub import pull as pull_checkpoint

    out = Output(json_mode)
    show_bars = not json_mode and out.err.is_terminal
    out.info(f"Downloading {repo_id}" + (f" at {revision}" if revision else "") + " ...")
    entry = pull_checkpoint(repo_id, revision, tqdm_class=None if show_bars else _silent_tqdm())
    data = entry.to_dict()

    def render(console: Console) -> None:
        console.print(
            f"Pulled {entry.id} ({entry.revision}): {entry.architecture}, "
            f"{_params(entry.param_count)} parameters, {_size(entry.size_on_disk_bytes)}",
            markup=False,
        )
        if not entry.runnable:
            console.print(f"Note: this machine cannot run it: {entry.reason}", markup=False)

    out.result(data, render)


def _silent_tqdm() -> Any:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    class Silent(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


@app.command()
def rm(
    repo_id: Annotated[str, typer.Argument(help="Hugging Face repo id to remove.")],
    yes: YesOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Remove a checkpoint (every cached revision) from the Hugging Face cache.

    Example: gonka models rm Qwen/Qwen3-0.6B --yes
    """
    from gonka_cli.compute.hub import remove

    out = Output(json_mode)
    out.confirm(
        f"Remove {repo_id} from the Hugging Face cache?",
        yes=yes,
        refused="nothing was removed",
    )
    removed = remove(repo_id)

    def render(console: Console) -> None:
        console.print(
            f"Removed {removed.id} ({len(removed.revisions)} revision(s), "
            f"{_size(removed.freed_bytes)} freed)",
            markup=False,
        )

    out.result(removed.to_dict(), render)
