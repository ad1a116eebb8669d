"""The epoch schedule, the genesis `network` section, and the ledger's system transactions."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gonka_cli.errors import GenesisError, InvalidAmount, NodeStateError
from gonka_cli.node.epochs import (
    GENERATE,
    INFERENCE,
    STARTING,
    VALIDATE,
    NetworkParams,
    epoch_at,
)
from gonka_cli.node.genesis import Genesis, init_home, new_genesis
from gonka_cli.node.ledger import (
    ESCROW_ADDRESS,
    MINT_ADDRESS,
    FundsShort,
    Ledger,
    genesis_digest,
    module_address,
)
from gonka_cli.node.network import is_selected
from tests.node.helpers import account

ALICE = account("alice")
BOB = account("bob")
NODE = account("node")


def test_the_phases_follow_the_heights() -> None:
    p = NetworkParams(epoch_blocks=10, poc_generate_blocks=3, poc_validate_blocks=2)
    assert epoch_at(p, 0).phase == STARTING
    phases = [(v.epoch, v.phase) for v in (epoch_at(p, h) for h in range(1, 22))]
    assert phases[:10] == [(0, GENERATE)] * 3 + [(0, VALIDATE)] * 2 + [(0, INFERENCE)] * 5
    assert phases[10:20] == [(1, GENERATE)] * 3 + [(1, VALIDATE)] * 2 + [(1, INFERENCE)] * 5
    assert phases[20] == (2, GENERATE)
    view = epoch_at(p, 14)
    assert view.to_dict() == {
        "epoch": 1,
        "phase": VALIDATE,
        "height": 14,
        "start_height": 11,
        "end_height": 20,
        "phases": {
            GENERATE: {"start_height": 11, "end_height": 13},
            VALIDATE: {"start_height": 14, "end_height": 15},
            INFERENCE: {"start_height": 16, "end_height": 20},
        },
    }


@pytest.mark.parametrize(
    ("changes", "wording"),
    [
        ({"epoch_blocks": 0}, "epoch_blocks"),
        ({"poc_generate_blocks": 60, "poc_validate_blocks": 60}, "inference phase"),
        ({"poc_model": "gpt-5"}, "unknown model|gpt-5"),
        ({"dist_threshold": -1}, "dist_threshold"),
        ({"p_mismatch": 1.5}, "p_mismatch"),
        ({"validation_share": 2}, "validation_share"),
        ({"inference_timeout_s": 0}, "inference_timeout_s"),
        ({"epoch_reward_ngonka": -5}, "epoch_reward_ngonka"),
        ({"price_per_token_ngonka": True}, "price_per_token_ngonka"),
        ({"surprise": 1}, "unknown field"),
    ],
)
def test_bad_network_params_are_refused(changes: dict[str, object], wording: str) -> None:
    data = {**NetworkParams().to_dict(), **changes}
    with pytest.raises(GenesisError, match=wording):
        NetworkParams.from_dict(data)


def test_a_genesis_from_before_the_network_section_keeps_its_hash(tmp_path: Path) -> None:
    genesis = new_genesis(accounts=[(ALICE.address, 5)])
    assert genesis.network == NetworkParams()
    old = genesis.to_dict()
    del old["network"]
    loaded = Genesis.from_dict(json.loads(json.dumps(old)))
    assert loaded.network is None
    assert loaded.network_params == NetworkParams()
    assert "network" not in loaded.to_dict()
    assert genesis_digest(loaded) != genesis_digest(genesis)
    assert genesis_digest(loaded) == genesis_digest(Genesis.from_dict(old))


def test_init_writes_the_network_section_and_the_node_key(tmp_path: Path) -> None:
    network = NetworkParams(epoch_blocks=30, poc_generate_blocks=10, poc_validate_blocks=10)
    genesis = init_home(tmp_path / "home", network=network)
    written = json.loads((tmp_path / "home" / "genesis.json").read_text())
    assert written["network"]["epoch_blocks"] == 30
    assert genesis.network == network
    assert (tmp_path / "home" / "keys" / "node.json").exists()


def test_selection_for_validation_follows_the_secret_and_the_share() -> None:
    secret = "11" * 32
    ids = [f"inf-{i}" for i in range(2000)]
    chosen = [i for i in ids if is_selected(secret, i, 0.1)]
    assert 150 < len(chosen) < 250
    assert chosen == [i for i in ids if is_selected(secret, i, 0.1)]  # deterministic
    assert chosen != [i for i in ids if is_selected("22" * 32, i, 0.1)]
    assert not any(is_selected(secret, i, 0.0) for i in ids)
    assert all(is_selected(secret, i, 1.0) for i in ids)


# --- system transactions ------------------------------------------------------------------


GENESIS = new_genesis(accounts=[(ALICE.address, 1_000), (BOB.address, 50)])


def ledger_at(tmp_path: Path) -> Ledger:
    return Ledger(str(tmp_path / "node.db"), GENESIS, node_key=NODE.key)


def test_module_accounts_are_the_sdk_derivation() -> None:
    import hashlib

    from gonka_cli.crypto.address import encode

    assert MINT_ADDRESS == encode("gonka", hashlib.sha256(b"mint").digest()[:20])
    assert ESCROW_ADDRESS == module_address("inference")


def test_system_transactions_mint_and_move_escrow_in_one_block(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    assert ledger.account(NODE.address) is not None  # the node's own account
    escrow = ledger.submit_system([(ALICE.address, ESCROW_ADDRESS, 300)], "inference x escrow")
    # What is pending counts: Alice cannot escrow the same funds twice.
    assert ledger.spendable(ALICE.address) == 700
    with pytest.raises(FundsShort, match="can spend 700"):
        ledger.submit_system([(ALICE.address, ESCROW_ADDRESS, 701)], "too much")
    block = ledger.make_block()
    assert escrow in block.tx_hashes
    settle = ledger.submit_system(
        [
            (MINT_ADDRESS, BOB.address, 5_000),
            (ESCROW_ADDRESS, BOB.address, 120),
            (ESCROW_ADDRESS, ALICE.address, 180),
        ],
        "epoch 0 settlement",
    )
    ledger.make_block()
    record = ledger.tx(settle)
    assert record is not None and record.code == 0
    assert ledger.account(ALICE.address).balance == 880  # type: ignore[union-attr]
    assert ledger.account(BOB.address).balance == 50 + 5_000 + 120  # type: ignore[union-attr]
    assert ledger.account(ESCROW_ADDRESS).balance == 0  # type: ignore[union-attr]
    assert ledger.minted == 5_000
    assert ledger.total_supply() == ledger.supply_expected() == 1_050 + 5_000
    # Both show in the history queries a wallet makes.
    received, _ = ledger.search([("transfer.recipient", BOB.address)])
    assert [r.hash for r in received] == [settle]
    sent, _ = ledger.search([("message.sender", ALICE.address)])
    assert [r.hash for r in sent] == [escrow]
    ledger.close()
    # Reopened, the supply check counts what was minted.
    again = ledger_at(tmp_path)
    assert again.minted == 5_000
    again.close()


def test_bad_system_transfers_are_refused(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    with pytest.raises(InvalidAmount):
        ledger.submit_system([(MINT_ADDRESS, BOB.address, 0)], "nothing")
    with pytest.raises(FundsShort):
        ledger.submit_system([(account("nobody").address, BOB.address, 1)], "from nobody")
    assert ledger.mempool == []
    ledger.close()


def test_a_tampered_minted_total_is_caught_at_open(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    ledger.submit_system([(MINT_ADDRESS, BOB.address, 10)], "mint")
    ledger.make_block()
    ledger.close()
    db = sqlite3.connect(tmp_path / "node.db")
    db.execute("UPDATE meta SET value = '11' WHERE key = 'minted'")
    db.commit()
    db.close()
    with pytest.raises(NodeStateError, match="were minted"):
        ledger_at(tmp_path)
