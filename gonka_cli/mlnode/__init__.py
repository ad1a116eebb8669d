"""The ML node that a Gonka host's decentralized-api drives (`gonka mlnode serve`).

On mainnet a host's Go "decentralized-api" (DAPI) drives its ML nodes over HTTP and they
call it back; this package is such an ML node, on gonka's own engine. It is a second front
end over the miner's device pool (`gonka_cli.miner.pool`), beside `gonka mine`'s devnet loop:

- `messages`: DAPI's request bodies, checked (frozen dataclasses; `MlNodeError` with the
  HTTP status the real node answers);
- `service`: `MlNode`, the state machine, PoC generation, chat and status, with no HTTP;
- `callbacks`: the durable outbox (SQLite) and the thread that posts `/generated` and
  `/validated` to DAPI;
- `jobs`: the PoC generate/validation jobs and their verdicts;
- `server`: the control (8080) and inference (5000) HTTP ports over `MlNode`;
- `metrics`, `hardware`, `downloads`, `host`: Prometheus metrics, GPU listing, model
  downloads and the node-config entry a host registers.
"""
