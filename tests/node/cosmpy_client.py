"""cosmpy against a gonka node's REST API; run by tests/node/test_cosmpy.py inside .venv-cosmpy.

cosmpy 0.12 pins an older protobuf than gonka, so it lives in its own virtualenv and this
script imports nothing from gonka. It reads one JSON object from argv[1]:
`{"url", "chain_id", "gas_price", "key_hex", "recipient", "amount"}`, drives cosmpy's
`LedgerClient` (whose REST client parses every answer strictly into the SDK's protobuf
messages), and prints one JSON object with what it saw.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cosmpy.aerial.client import LedgerClient, NetworkConfig
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.address import Address
from cosmpy.crypto.keypairs import PrivateKey
from cosmpy.protos.cosmos.tx.v1beta1.service_pb2 import GetTxsEventRequest


def main() -> int:
    args = json.loads(sys.argv[1])
    cfg = NetworkConfig(
        chain_id=args["chain_id"],
        url=f"rest+{args['url']}",
        fee_minimum_gas_price=float(args["gas_price"]),
        fee_denomination="ngonka",
        staking_denomination="ngonka",
    )
    client = LedgerClient(cfg, query_interval_secs=1, query_timeout_secs=30)
    wallet = LocalWallet(PrivateKey(bytes.fromhex(args["key_hex"])), prefix="gonka")
    sender = wallet.address()
    recipient = Address(args["recipient"])
    out: dict[str, Any] = {"sender": str(sender)}

    out["chain_id"] = client.query_chain_id()
    out["height"] = client.query_height()
    block = client.query_block(1)
    out["block_1"] = {"height": block.height, "chain_id": block.chain_id}
    info = client.query_node_info()
    out["node_info"] = {
        "cosmos_sdk_version": str(info.cosmos_sdk_version),
        "app_name": info.app_name,
    }
    params = client.query_consensus_params()
    out["max_gas"] = int(params.params.block.max_gas)
    out["balance_before"] = client.query_bank_balance(sender)
    out["all_balances_before"] = [
        {"denom": c.denom, "amount": str(c.amount)} for c in client.query_bank_all_balances(sender)
    ]
    account = client.query_account(sender)
    out["account_before"] = {"number": account.number, "sequence": account.sequence}
    out["recipient_before"] = client.query_bank_balance(recipient)
    out["staking"] = client.query_staking_summary(sender).total_staked
    out["validators"] = len(client.query_validators())

    # Gas by simulation (cosmpy's default strategy), then broadcast, then poll the tx.
    submitted = client.send_tokens(recipient, int(args["amount"]), "ngonka", wallet)
    response = submitted.wait_to_complete().response
    assert response is not None
    out["tx"] = {
        "hash": response.hash,
        "height": response.height,
        "code": response.code,
        "gas_wanted": response.gas_wanted,
        "gas_used": response.gas_used,
        "events": response.events,
    }
    again = client.query_tx(response.hash)
    out["tx_again"] = {"hash": again.hash, "code": again.code}
    found = client.txs.GetTxsEvent(GetTxsEventRequest(query=f"message.sender='{sender}'"))
    out["search"] = [r.txhash for r in found.tx_responses]
    out["balance_after"] = client.query_bank_balance(sender)
    out["recipient_after"] = client.query_bank_balance(recipient)
    account = client.query_account(sender)
    out["account_after"] = {"number": account.number, "sequence": account.sequence}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
