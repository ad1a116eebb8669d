"""The one output object: human (rich) or `--json` output, prompts and progress.

stdout carries the result (a rich rendering, or one JSON object); prompts, progress,
warnings and errors go to stderr. Prompts only happen on a terminal: without one, a command
that would need to ask fails with a message naming the flag or variable to use instead.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.text import Text

from gonka_cli import settings
from gonka_cli.errors import Cancelled, GonkaError, InputError, PasswordRequired, WrongPassword

if TYPE_CHECKING:
    from gonka_cli.wallet.keystore import Keystore, Secret

MIN_PASSWORD_CHARS = 8
#: How many times a prompt asks for a password before the command gives up.
PASSWORD_TRIES = 3

# Exit codes (README "Exit codes"): every command ends with one of these.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def exit_code_for(error: GonkaError) -> int:
    """1 for an error, 2 for a bad value or usage (an `InputError`)."""
    return EXIT_USAGE if isinstance(error, InputError) else EXIT_ERROR


def stdin_is_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _terminal_fd() -> int | None:
    """stdin's descriptor when it is a terminal whose settings can be changed, else None."""
    if not stdin_is_terminal():
        return None
    try:
        import termios  # POSIX only
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fd = sys.stdin.fileno()
        termios.tcgetattr(fd)
    except (termios.error, OSError, ValueError):
        return None
    return fd


@contextlib.contextmanager
def keys_not_echoed() -> Iterator[None]:
    """Keys typed while this runs are not echoed (they wait, unread, until discarded).

    The terminal's settings come back on every way out, Ctrl-C included.
    """
    fd = _terminal_fd()
    if fd is None:
        yield
        return
    import termios

    saved = termios.tcgetattr(fd)
    quiet = list(saved)
    quiet[3] = quiet[3] & ~termios.ECHO  # lflag; ISIG stays, so Ctrl-C still interrupts
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):  # the terminal may be gone (hang-up)
            termios.tcsetattr(fd, termios.TCSANOW, saved)


def discard_typed_ahead() -> None:
    """Drop what was typed before a question was shown, so it cannot answer the question."""
    fd = _terminal_fd()
    if fd is not None:
        import termios

        termios.tcflush(fd, termios.TCIFLUSH)


class Output:
    """Where a command's results, questions and progress go."""

    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    # -- results -------------------------------------------------------------------------

    def result(self, data: Mapping[str, Any], render: Callable[[Console], None]) -> None:
        """Print a command's result: `data` as JSON, or `render` for people."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            render(self.out)

    def info(self, text: str) -> None:
        """A progress note for people (silent in JSON mode)."""
        if not self.json_mode:
            self.err.print(text, markup=False)

    def warn(self, text: str) -> None:
        self.err.print(f"Warning: {text}", markup=False, style="yellow")

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner on a terminal; one plain line otherwise; nothing in JSON mode."""
        if self.json_mode:
            yield
        elif self.err.is_terminal:
            with keys_not_echoed(), self.err.status(text):
                yield
        else:
            self.err.print(text, markup=False)
            yield

    # -- questions -----------------------------------------------------------------------

    def can_confirm(self, yes: bool, action: str) -> None:
        """Fail before doing anything if a confirmation will be needed and cannot be asked."""
        if not yes and not stdin_is_terminal():
            raise InputError(
                f"{action} needs a confirmation and there is no terminal to ask on; pass --yes"
            )

    def confirm(self, question: str, *, yes: bool, refused: str) -> None:
        """Ask yes/no (default no). `refused` is the message when the answer is no."""
        if yes:
            return
        self.can_confirm(yes, question.rstrip("?"))
        discard_typed_ahead()
        if not typer.confirm(question, default=False, err=True):
            raise Cancelled(refused)

    def prompt_secret(self, label: str, *, confirm: bool = False, min_chars: int = 0) -> str:
        """A hidden entry; with `confirm`, typed twice. A mismatch (or an entry shorter than
        `min_chars`) asks again, `PASSWORD_TRIES` times in all."""
        if not stdin_is_terminal():
            raise PasswordRequired(f"{label}: no terminal to ask on")
        for tries_left in range(PASSWORD_TRIES - 1, -1, -1):
            discard_typed_ahead()
            first: str = typer.prompt(label, hide_input=True, err=True)
            problem = None
            if len(first) < min_chars:
                problem = f"password too short: use at least {min_chars} characters"
            elif confirm:
                second: str = typer.prompt("Repeat to confirm", hide_input=True, err=True)
                if first != second:
                    problem = "the two entries do not match"
            if problem is None:
                return first
            if not tries_left:
                raise InputError(f"{problem}; nothing was changed")
            self.err.print(f"{problem[0].upper()}{problem[1:]}; try again.", markup=False)
        raise AssertionError("unreachable")  # pragma: no cover

    def password(self, password_file: Path | None, *, key_name: str, new: bool = False) -> str:
        """The keystore password: --password-file, then GONKA_KEYRING_PASSWORD, then a prompt."""
        if password_file is not None:
            password = read_password_file(password_file, self)
        elif settings.keyring_password() is not None:
            password = settings.keyring_password() or ""
        elif stdin_is_terminal():
            label = (
                f"New password for key {key_name!r}" if new else f"Password for key {key_name!r}"
            )
            password = self.prompt_secret(
                label, confirm=new, min_chars=MIN_PASSWORD_CHARS if new else 0
            )
        else:
            raise PasswordRequired(
                f"a password is needed for key {key_name!r} and there is no terminal to ask on; "
                f"set {settings.ENV_KEYRING_PASSWORD} or pass --password-file FILE"
            )
        if new and len(password) < MIN_PASSWORD_CHARS:
            raise InputError(f"password too short: use at least {MIN_PASSWORD_CHARS} characters")
        if not password:
            raise InputError("the password is empty")
        return password

    def password_is_asked(self, password_file: Path | None) -> bool:
        """Whether `password()` will prompt (so that a wrong one can be asked again)."""
        return password_file is None and settings.keyring_password() is None and stdin_is_terminal()

    def unlock(self, store: Keystore, name: str, password_file: Path | None) -> Secret:
        """Unlock a key. At a prompt, a wrong password asks again, `PASSWORD_TRIES` in all;
        a password from a file or the environment is tried once."""
        for tries_left in range(PASSWORD_TRIES - 1, -1, -1):
            asked = self.password_is_asked(password_file)
            password = self.password(password_file, key_name=name)
            try:
                return store.unlock(name, password)
            except WrongPassword as exc:
                if not asked or not tries_left:
                    raise
                self.err.print(f"{one_line(exc)}; try again.", markup=False)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- rendering helpers ---------------------------------------------------------------

    @staticmethod
    def fields(rows: list[tuple[str, str]], title: str | None = None) -> Text:
        """Aligned `name  value` lines (no trailing padding, so they pipe cleanly)."""
        width = max((len(name) for name, _ in rows), default=0)
        text = Text()
        if title:
            text.append(title + "\n", style="bold")
        for i, (name, value) in enumerate(rows):
            text.append(f"{name:<{width}}", style="bold")
            text.append(f"  {value}" + ("\n" if i < len(rows) - 1 else ""))
        return text


def read_password_file(path: Path, output: Output) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"password file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read password file {path}: {exc}") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise InputError(f"password file {path} is empty (the password is its first line)")
    if path.stat().st_mode & 0o077:
        output.warn(f"password file {path} is readable by other users; run chmod 600 on it")
    return password


def one_line(error: GonkaError | str) -> str:
    """Errors print as one line, whatever the message holds."""
    return " ".join(str(error).split())
