"""`gonka node`: a local Gonka network (devnet) in one process.

- `genesis`: the chain's starting point (chain id, balances, parameters) and the node's home.
- `ledger`: the state machine: accounts, the mempool (CheckTx), blocks (DeliverTx) in SQLite.
- `api`: the HTTP server (FastAPI): the Cosmos REST paths the wallet speaks, the faucet.
- `runner`: starting and stopping a node process (uvicorn, the block clock, the home lock).

fastapi and uvicorn are imported only by `api` and `runner`, never by the wallet.
"""
