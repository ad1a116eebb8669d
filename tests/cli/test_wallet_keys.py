"""`gonka wallet create|import|list|show|export|delete` through the CLI, and their bad inputs."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gonka_cli.cli.main import app
from gonka_cli.crypto import hd
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.errors import InputError, WalletError
from tests.conftest import MNEMONIC, PASSWORD, load_vectors

ENV = {"GONKA_KEYRING_PASSWORD": PASSWORD}
#: Address of MNEMONIC at m/44'/1200'/0'/0/0, computed independently of the CLI.
GONKA_ADDRESS = address_from_pubkey(
    hd.derive_private_key(MNEMONIC, hd.HDPath.bip44()).public_key.to_bytes()
)


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), input=input, env=ENV if env is None else env)


def run_json(*args: str, **kwargs):
    result = run(*args, "--json", **kwargs)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def keys_dir(home: Path) -> Path:
    return home / "keys"


def assert_one_line_error(result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- create -----------------------------------------------------------------------------


def test_create_makes_a_key_from_a_new_24_word_mnemonic(gonka_home: Path) -> None:
    data = run_json("wallet", "create", "alice", "--yes")
    words = data["mnemonic"].split()
    assert len(words) == 24
    key = hd.derive_private_key(data["mnemonic"], hd.HDPath.parse("m/44'/1200'/0'/0/0"))
    assert data["pubkey_hex"] == key.public_key.to_hex()
    assert data["address"] == address_from_pubkey(key.public_key.to_bytes())
    assert data["path"] == "m/44'/1200'/0'/0/0"
    assert data["name"] == "alice"
    file = keys_dir(gonka_home) / "alice.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir(gonka_home).stat().st_mode) == 0o700
    raw = file.read_text()
    assert data["mnemonic"] not in raw and words[0] + " " + words[1] not in raw
    assert key.to_hex() not in raw and PASSWORD not in raw


def test_create_12_words_and_human_output_warns_on_stderr() -> None:
    result = run("wallet", "create", "bob", "--words", "12", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "only way to recover" in result.stderr
    assert "Created key 'bob'" in result.stdout
    shown = [w for line in result.stdout.splitlines() for w in line.split() if w.isalpha()]
    info = run_json("wallet", "show", "bob")
    assert info["address"] in result.stdout
    assert sum(1 for w in shown if w in hd._english().wordlist) >= 12


def test_create_two_keys_gives_two_addresses() -> None:
    a = run_json("wallet", "create", "a", "--yes")
    b = run_json("wallet", "create", "b", "--yes")
    assert a["address"] != b["address"] and a["mnemonic"] != b["mnemonic"]


def test_create_without_yes_and_without_a_terminal_saves_nothing(gonka_home: Path) -> None:
    result = run("wallet", "create", "alice")
    assert_one_line_error(result, 2, "--yes")
    assert not (keys_dir(gonka_home) / "alice.json").exists()


@pytest.mark.parametrize("words", ["11", "18", "25"])
def test_create_rejects_other_word_counts(words: str) -> None:
    assert_one_line_error(run("wallet", "create", "x", "--words", words, "--yes"), 2, "--words")


def test_create_refuses_a_duplicate_name_and_keeps_the_first(gonka_home: Path) -> None:
    first = run_json("wallet", "create", "alice", "--yes")
    before = (keys_dir(gonka_home) / "alice.json").read_bytes()
    assert_one_line_error(run("wallet", "create", "alice", "--yes"), 1, "already exists")
    assert (keys_dir(gonka_home) / "alice.json").read_bytes() == before
    assert run_json("wallet", "show", "alice")["address"] == first["address"]


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "x" * 65, "with space", ""])
def test_create_rejects_bad_names(name: str, gonka_home: Path) -> None:
    assert_one_line_error(run("wallet", "create", name, "--yes"), 2, "invalid key name")
    assert not keys_dir(gonka_home).exists() or not any(keys_dir(gonka_home).iterdir())


def test_create_refuses_a_short_password(gonka_home: Path) -> None:
    result = run("wallet", "create", "alice", "--yes", env={"GONKA_KEYRING_PASSWORD": "short"})
    assert_one_line_error(result, 2, "at least 8")
    assert not (keys_dir(gonka_home) / "alice.json").exists()


def test_create_without_any_password_source_fails_without_hanging() -> None:
    result = run("wallet", "create", "alice", "--yes", env={})
    assert_one_line_error(result, 1, "GONKA_KEYRING_PASSWORD", "--password-file")


def test_password_file_is_read_and_its_first_line_is_the_password(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from the file\nignored\n")
    pw.chmod(0o600)
    run_json("wallet", "create", "alice", "--yes", "--password-file", str(pw), env={})
    result = run("wallet", "export", "alice", "--hex", "--yes", "--password-file", str(pw), env={})
    assert result.exit_code == 0, result.stderr
    wrong = run(
        "wallet", "export", "alice", "--hex", "--yes", env={"GONKA_KEYRING_PASSWORD": "ignored"}
    )
    assert_one_line_error(wrong, 1, "wrong password")


def test_password_file_problems_are_clear(tmp_path: Path) -> None:
    missing = run(
        "wallet", "create", "a", "--yes", "--password-file", str(tmp_path / "nope"), env={}
    )
    assert_one_line_error(missing, 2, "does not exist")
    empty = tmp_path / "empty"
    empty.write_text("")
    result = run("wallet", "create", "a", "--yes", "--password-file", str(empty), env={})
    assert_one_line_error(result, 2, "empty")


def test_world_readable_password_file_gets_a_warning(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    pw.chmod(0o644)
    result = run("wallet", "create", "a", "--yes", "--password-file", str(pw), env={})
    assert result.exit_code == 0
    assert "chmod 600" in result.stderr


# --- import -----------------------------------------------------------------------------


def test_import_mnemonic_from_stdin_gives_the_gonka_address() -> None:
    data = run_json("wallet", "import", "alice", input=MNEMONIC + "\n")
    assert data["address"] == GONKA_ADDRESS
    assert data["path"] == "m/44'/1200'/0'/0/0"
    assert data["source"] == "mnemonic"


@pytest.mark.parametrize(
    "vector",
    load_vectors("cosmos_vectors.json")["mnemonic_to_address"][:3],
    ids=lambda v: v["address"][:16],
)
def test_import_with_coin_type_118_reproduces_cosmos_addresses(vector: dict) -> None:
    data = run_json("wallet", "import", "k", "--coin-type", "118", input=vector["mnemonic"])
    pub = vector.get("pubkey_hex") or vector["derived_here"]["pubkey_hex"]
    assert data["pubkey_hex"] == pub
    assert data["address"][len("gonka") : -6] != ""  # a gonka address of the same key
    assert data["address"] == address_from_pubkey(bytes.fromhex(pub))


def test_import_account_and_index_pick_the_path() -> None:
    data = run_json("wallet", "import", "k", "--account", "2", "--index", "5", input=MNEMONIC)
    assert data["path"] == "m/44'/1200'/2'/0/5"
    expected = hd.derive_private_key(MNEMONIC, hd.HDPath.parse("m/44'/1200'/2'/0/5"))
    assert data["pubkey_hex"] == expected.public_key.to_hex()


def test_import_with_bip39_passphrase_reads_it_from_the_second_line() -> None:
    data = run_json("wallet", "import", "k", "--bip39-passphrase", input=f"{MNEMONIC}\nTREZOR\n")
    expected = hd.derive_private_key(MNEMONIC, hd.HDPath.bip44(), passphrase="TREZOR")
    assert data["pubkey_hex"] == expected.public_key.to_hex()
    assert data["address"] != GONKA_ADDRESS
    exported = run_json("wallet", "export", "k", "--yes")
    assert exported["bip39_passphrase_set"] is True


def test_import_hex_round_trips_with_export_hex() -> None:
    key = hd.derive_private_key(MNEMONIC, hd.HDPath.bip44())
    data = run_json("wallet", "import", "h", "--hex", input=key.to_hex() + "\n")
    assert data["address"] == GONKA_ADDRESS
    assert data["path"] is None and data["source"] == "hex"
    exported = run_json("wallet", "export", "h", "--hex", "--yes")
    assert exported["private_key_hex"] == key.to_hex()
    no_mnemonic = run("wallet", "export", "h", "--yes")
    assert_one_line_error(no_mnemonic, 1, "--hex")


def test_import_hex_accepts_upper_case_and_0x() -> None:
    key = hd.derive_private_key(MNEMONIC, hd.HDPath.bip44())
    data = run_json("wallet", "import", "h", "--hex", input="0x" + key.to_hex().upper())
    assert data["address"] == GONKA_ADDRESS


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("abandon " * 11 + "about extra", "13 words"),
        ("abandon " * 10 + "abandon", "11 words"),
        ("abandon " * 11 + "zzzzzz", "word 12"),
        ("abandon " * 12, "checksum"),
        ("", "0 words"),
    ],
    ids=["too-long", "too-short", "bad-word", "bad-checksum", "empty"],
)
def test_import_rejects_invalid_mnemonics_without_echoing_words(
    text: str, fragment: str, gonka_home: Path
) -> None:
    result = run("wallet", "import", "k", input=text)
    assert_one_line_error(result, 2, fragment)
    assert "zzzzzz" not in result.stderr
    assert not (keys_dir(gonka_home) / "k.json").exists()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ab" * 31, "64 hex"),
        ("zz" * 32, "not valid hex"),
        ("00" * 32, "out of range"),
        ("ff" * 32, "out of range"),
    ],
    ids=["short", "not-hex", "zero", "above-n"],
)
def test_import_hex_rejects_bad_keys(text: str, fragment: str) -> None:
    assert_one_line_error(run("wallet", "import", "h", "--hex", input=text), 2, fragment)


def test_import_hex_refuses_hd_options() -> None:
    result = run("wallet", "import", "h", "--hex", "--coin-type", "118", input="ab" * 32)
    assert_one_line_error(result, 2, "--hex")


def test_import_of_an_address_already_held_names_the_other_key() -> None:
    run_json("wallet", "import", "first", input=MNEMONIC)
    result = run("wallet", "import", "second", input=MNEMONIC)
    assert_one_line_error(result, 1, "'first'", GONKA_ADDRESS)


# --- list / show ------------------------------------------------------------------------


def test_list_and_show_need_no_password(gonka_home: Path) -> None:
    run_json("wallet", "import", "alice", input=MNEMONIC)
    run_json("wallet", "create", "bob", "--yes")
    listing = run_json("wallet", "list", env={})
    assert [k["name"] for k in listing["keys"]] == ["alice", "bob"]
    assert listing["keys"][0]["address"] == GONKA_ADDRESS
    assert listing["unreadable"] == []
    assert listing["keys_dir"] == str(keys_dir(gonka_home))
    shown = run_json("wallet", "show", "alice", env={})
    expected_pub = hd.derive_private_key(MNEMONIC, hd.HDPath.bip44()).public_key.to_hex()
    assert {"name", "address", "pubkey_hex", "path"} <= set(shown)
    assert shown["pubkey_hex"] == expected_pub and len(bytes.fromhex(shown["pubkey_hex"])) == 33
    human = run("wallet", "list", env={})
    assert "alice" in human.stdout and GONKA_ADDRESS in human.stdout


def test_list_when_empty_says_how_to_start() -> None:
    result = run("wallet", "list")
    assert result.exit_code == 0
    assert "gonka wallet create" in result.stdout
    assert run_json("wallet", "list")["keys"] == []


def test_list_reports_a_corrupt_file_and_still_lists_the_rest(gonka_home: Path) -> None:
    run_json("wallet", "import", "alice", input=MNEMONIC)
    (keys_dir(gonka_home) / "broken.json").write_text('{"version": 1, "addr')
    result = run("wallet", "list", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [k["name"] for k in data["keys"]] == ["alice"]
    assert data["unreadable"][0]["name"] == "broken"
    assert "broken.json" in result.stderr and "corrupt" in result.stderr


def test_show_unknown_key() -> None:
    assert_one_line_error(run("wallet", "show", "nobody"), 1, "no key named 'nobody'")


def test_show_truncated_key_file_is_a_clear_error(gonka_home: Path) -> None:
    run_json("wallet", "import", "alice", input=MNEMONIC)
    file = keys_dir(gonka_home) / "alice.json"
    file.write_bytes(file.read_bytes()[:100])
    assert_one_line_error(run("wallet", "show", "alice"), 1, "corrupt", "backup")


# --- export -----------------------------------------------------------------------------


def test_export_mnemonic_gives_back_the_imported_one() -> None:
    run_json("wallet", "import", "alice", input="  " + MNEMONIC.upper() + "  \n")
    data = run_json("wallet", "export", "alice", "--yes")
    assert data["mnemonic"] == MNEMONIC
    assert data["path"] == "m/44'/1200'/0'/0/0"
    human = run("wallet", "export", "alice", "--yes")
    assert human.stdout.strip() == MNEMONIC


def test_export_wrong_password_changes_nothing(gonka_home: Path) -> None:
    run_json("wallet", "import", "alice", input=MNEMONIC)
    file = keys_dir(gonka_home) / "alice.json"
    before = (file.read_bytes(), file.stat().st_mtime_ns)
    result = run(
        "wallet", "export", "alice", "--yes", env={"GONKA_KEYRING_PASSWORD": "not the password"}
    )
    assert_one_line_error(result, 1, "wrong password for key 'alice'")
    assert "not the password" not in result.stderr
    assert MNEMONIC.split()[0] not in result.stdout
    assert (file.read_bytes(), file.stat().st_mtime_ns) == before


def test_export_without_yes_and_without_a_terminal_shows_nothing() -> None:
    run_json("wallet", "import", "alice", input=MNEMONIC)
    result = run("wallet", "export", "alice")
    assert_one_line_error(result, 2, "--yes")
    assert result.stdout == ""


def test_export_of_a_tampered_file_fails(gonka_home: Path) -> None:
    run_json("wallet", "import", "alice", input=MNEMONIC)
    file = keys_dir(gonka_home) / "alice.json"
    doc = json.loads(file.read_text())
    doc["address"] = run_json("wallet", "create", "other", "--yes")["address"]
    file.write_text(json.dumps(doc))
    result = run("wallet", "export", "alice", "--yes")
    assert result.exit_code == 1
    assert MNEMONIC.split()[0] not in result.stdout


# --- delete -----------------------------------------------------------------------------


def test_delete_with_yes_removes_the_key(gonka_home: Path) -> None:
    run_json("wallet", "import", "alice", input=MNEMONIC)
    data = run_json("wallet", "delete", "alice", "--yes")
    assert data["deleted"]["address"] == GONKA_ADDRESS
    assert not (keys_dir(gonka_home) / "alice.json").exists()
    assert run_json("wallet", "list")["keys"] == []


def test_delete_without_yes_keeps_the_key(gonka_home: Path) -> None:
    run_json("wallet", "import", "alice", input=MNEMONIC)
    assert_one_line_error(run("wallet", "delete", "alice"), 2, "--yes")
    assert (keys_dir(gonka_home) / "alice.json").exists()


def test_delete_unknown_key() -> None:
    assert_one_line_error(run("wallet", "delete", "ghost", "--yes"), 1, "no key named 'ghost'")


# --- the CLI as a whole -----------------------------------------------------------------


def test_version_and_help() -> None:
    from gonka_cli import __version__

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"gonka {__version__}"
    help_text = run("--help").stdout
    assert (
        "wallet" in help_text
        and "GONKA_KEYRING_PASSWORD" in help_text
        and "GONKA_HOME" in help_text
    )
    wallet_help = run("wallet", "--help").stdout
    for command in (
        "create",
        "import",
        "list",
        "show",
        "export",
        "delete",
        "balance",
        "send",
        "broadcast",
        "tx",
        "history",
    ):
        assert command in wallet_help


def test_unknown_command_is_a_usage_error() -> None:
    assert run("wallet", "frobnicate").exit_code == 2


def test_gonka_debug_shows_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("wallet", "show", "nobody", env={"GONKA_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "KeyNotFound" in result.stderr
    assert "Traceback" not in run("wallet", "show", "nobody").stderr


def test_gonka_home_holds_every_file(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    result = run(
        "wallet", "create", "alice", "--yes", "--json", env={**ENV, "GONKA_HOME": str(other)}
    )
    assert result.exit_code == 0
    assert (other / "keys" / "alice.json").exists()
    assert os.path.commonpath([json.loads(result.stdout)["file"], str(other)]) == str(other)


def test_an_edited_address_is_never_shown_as_the_keys_own(gonka_home: Path) -> None:
    run_json("wallet", "import", "alice", input=MNEMONIC)
    other = run_json("wallet", "create", "other", "--yes")["address"]
    file = keys_dir(gonka_home) / "alice.json"
    doc = json.loads(file.read_text())
    doc["address"] = other
    file.write_text(json.dumps(doc))
    shown = run("wallet", "show", "alice")
    assert_one_line_error(shown, 1, "does not match its public key")
    listing = run_json("wallet", "list")
    assert [k["name"] for k in listing["keys"]] == ["other"]
    assert listing["unreadable"][0]["name"] == "alice"


def test_delete_removes_an_unreadable_key_file_too(gonka_home: Path) -> None:
    keys_dir(gonka_home).mkdir(parents=True)
    (keys_dir(gonka_home) / "broken.json").write_text("{")
    result = run("wallet", "delete", "broken", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["deleted"]["address"] is None
    assert "corrupt" in result.stderr
    assert not (keys_dir(gonka_home) / "broken.json").exists()


# --- what the README promises ------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_opens_with_two_commands_and_a_cpu_hint_to_paste() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    opening = text[: text.index("\n## ")]
    assert opening.count("```sh") == 3
    install, tests, cpu = (b.strip() for b in blocks[:3])
    assert install.endswith("pip install -e . && gonka mine --devnet")
    assert tests.endswith("pip install -e '.[dev]' && pytest")
    # The CPU hint is a whole command: it makes the same venv, then takes torch's CPU build.
    assert cpu == (
        "python3 -m venv .venv && . .venv/bin/activate && "
        "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    )
    assert opening.index(tests) < opening.index(cpu)


def test_the_readme_exit_code_table_is_what_commands_return() -> None:
    from gonka_cli.cli import output

    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Exit codes") :]
    codes = [int(c) for c in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)]
    assert (
        codes
        == [
            output.EXIT_OK,
            output.EXIT_ERROR,
            output.EXIT_USAGE,
            output.EXIT_INTERRUPTED,
        ]
        == [0, 1, 2, 130]
    )
    assert output.exit_code_for(InputError("x")) == 2
    assert output.exit_code_for(WalletError("x")) == 1
    # Usage: no command, an unknown option.
    assert run().exit_code == 2
    assert run("wallet", "list", "--frobnicate").exit_code == 2
