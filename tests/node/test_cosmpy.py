"""cosmpy 0.12 (Fetch.ai's Cosmos client) against a real devnet node over REST.

cosmpy pins an older protobuf than gonka, so it runs in its own virtualenv, `.venv-cosmpy`
(made by `.ci/run`), through `tests/node/cosmpy_client.py`. Its REST client parses each answer
strictly into the SDK's protobuf messages: a key the SDK lacks, a wrong type or a missing
endpoint fails it. The test skips only when that virtualenv is missing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.node.genesis import GNK
from gonka_cli.node.ledger import FEE_COLLECTOR_ADDRESS
from gonka_cli.node.runner import Node
from tests.conftest import StartNode
from tests.node.helpers import Api, account

ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = ROOT / ".venv-cosmpy" / "bin" / "python"
SCRIPT = Path(__file__).parent / "cosmpy_client.py"
SENDER = account("cosmpy-sender")
RECIPIENT = account("cosmpy-recipient")
FUNDS = 1_000 * GNK
AMOUNT = 12_345
#: A non-zero price, so that cosmpy's fee (gas by simulation x price) is checked too.
GAS_PRICE = "0.5"


def _cosmpy_python() -> Path:
    if not PYTHON.exists():
        pytest.skip(f"needs {PYTHON.relative_to(ROOT)} with cosmpy 0.12 (.ci/run makes it)")
    check = subprocess.run(
        [str(PYTHON), "-c", "import cosmpy"], capture_output=True, text=True, timeout=60
    )
    if check.returncode != 0:
        pytest.skip(f"cosmpy is not installed in {PYTHON.relative_to(ROOT)} (.ci/run installs it)")
    return PYTHON


@pytest.fixture
def node(start_node: StartNode) -> Node:
    return start_node(accounts=[(SENDER.address, FUNDS)], min_gas_price=GAS_PRICE)


def _run_cosmpy(python: Path, node: Node) -> dict[str, Any]:
    assert node.info is not None
    args = {
        "url": node.info.url,
        "chain_id": node.info.chain_id,
        "gas_price": GAS_PRICE,
        "key_hex": SENDER.key.to_hex(),
        "recipient": RECIPIENT.address,
        "amount": AMOUNT,
    }
    done = subprocess.run(
        [str(python), str(SCRIPT), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_cosmpy_queries_and_sends_tokens(node: Node) -> None:
    python = _cosmpy_python()
    api = Api(node)
    api.wait_height(1)
    seen = _run_cosmpy(python, node)

    assert seen["sender"] == SENDER.address
    assert seen["chain_id"] == "gonka-devnet"
    assert seen["height"] >= 1
    assert seen["block_1"] == {"height": 1, "chain_id": "gonka-devnet"}
    assert seen["node_info"]["cosmos_sdk_version"] == "0.53.3"
    assert seen["max_gas"] == -1
    assert seen["balance_before"] == FUNDS
    assert seen["all_balances_before"] == [{"denom": "ngonka", "amount": str(FUNDS)}]
    assert seen["account_before"] == {"number": 1, "sequence": 0}
    assert seen["recipient_before"] == 0
    assert seen["staking"] == 0 and seen["validators"] == 0

    tx = seen["tx"]
    assert tx["code"] == 0 and tx["height"] >= 1
    # Gas came from simulation (cosmpy multiplies it by 1.65), not from a fixed table.
    assert tx["gas_used"] <= tx["gas_wanted"] < 2 * tx["gas_used"]
    assert tx["events"]["message"]["action"] == "/cosmos.bank.v1beta1.MsgSend"
    assert tx["events"]["message"]["module"] == "bank"
    assert tx["events"]["coin_received"]["receiver"] == RECIPIENT.address
    assert tx["events"]["transfer"]["amount"] == f"{AMOUNT}ngonka"
    assert seen["tx_again"] == {"hash": tx["hash"], "code": 0}
    assert seen["search"] == [tx["hash"]]

    # The fee is the simulated gas x 1.65 at the node's price, rounded up, as cosmpy computes.
    stored = api.wait_tx(tx["hash"])["tx_response"]
    fee = int(stored["tx"]["auth_info"]["fee"]["amount"][0]["amount"])
    assert fee == -(-tx["gas_wanted"] // 2)
    assert seen["balance_after"] == FUNDS - AMOUNT - fee == api.balance(SENDER.address)
    assert seen["recipient_after"] == AMOUNT == api.balance(RECIPIENT.address)
    assert api.balance(FEE_COLLECTOR_ADDRESS) == fee
    assert seen["account_after"] == {"number": 1, "sequence": 1}
