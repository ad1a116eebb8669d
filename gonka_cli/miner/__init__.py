"""`gonka mine`: the device pool (`pool`: workers per device in `worker`, their statistics in
`stats`, device choice and telemetry in `devices`) and the devnet front end that drives it
(`miner`: epochs and work from a node; `sender`: outbox delivery; `state`: durable state;
`status`: totals, live status and summary; `backoff`), monitoring (`monitor`) and the embedded
devnet (`devnet`). The node client is `gonka_cli.workclient`. See docs/mine.md."""
