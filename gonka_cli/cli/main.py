"""The `gonka` command: its root, error handling and exit codes.

Exit codes: 0 success; 1 an error (the message says what to do); 2 a usage error or a bad
value (address, amount, key name, mnemonic...); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import errno
import logging
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from gonka_cli import __version__, settings
from gonka_cli.cli import bench, mine, mlnode, models, node, wallet
from gonka_cli.cli.output import EXIT_ERROR, EXIT_INTERRUPTED, exit_code_for, one_line
from gonka_cli.errors import GonkaError


def _error(message: str) -> None:
    typer.echo(f"Error: {message}", err=True)


class GonkaGroup(TyperGroup):
    """Turns errors into one line on stderr and an exit code, for every subcommand."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GonkaError as exc:
            if settings.debug():
                traceback.print_exc()
            _error(one_line(exc))
            raise typer.Exit(exit_code_for(exc)) from None
        except (KeyboardInterrupt, typer.Abort):
            typer.echo("\nInterrupted.", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            # Click's own exits and usage errors carry an exit code and are handled by typer;
            # a broken pipe (`gonka ... | head`) is typer's to handle too.
            if hasattr(exc, "exit_code") or getattr(exc, "errno", None) == errno.EPIPE:
                raise
            self._unexpected(exc)

    @staticmethod
    def _unexpected(exc: BaseException) -> None:
        if settings.debug():
            traceback.print_exc()
            raise typer.Exit(EXIT_ERROR) from None
        _error(
            f"unexpected {type(exc).__name__}: {one_line(str(exc))} "
            f"(set {settings.ENV_DEBUG}=1 for details)"
        )
        raise typer.Exit(EXIT_ERROR) from None


_ENV_HELP = "\n\n".join(f"{name}: {text}" for name, text in settings.ENVIRONMENT.items())

app = typer.Typer(
    cls=GonkaGroup,
    name="gonka",
    help="Mine GNK and manage a GNK wallet on the Gonka network.",
    epilog=f"Environment:\n\n{_ENV_HELP}\n\n"
    "Exit codes: 0 ok, 1 error, 2 bad usage or value, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command(name="mine")(mine.mine)
app.add_typer(wallet.app, name="wallet")
app.add_typer(node.app, name="node")
app.add_typer(bench.app, name="bench")
app.add_typer(models.app, name="models")
app.add_typer(mlnode.app, name="mlnode")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gonka {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Mine GNK and manage a GNK wallet on the Gonka network."""
    _configure_logging()


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "Warning: " if record.levelno >= logging.WARNING else ""
            sys.stderr.write(f"{prefix}{record.getMessage()}\n")
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _configure_logging() -> None:
    logger = logging.getLogger("gonka_cli")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.DEBUG if settings.debug() else logging.WARNING)
    logger.propagate = False


def main() -> int:
    """Console-script entry point."""
    result = app(prog_name="gonka")
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
