"""`gonka mine`: the mining loop (`miner`), device workers (`worker`), durable state (`state`),
device choice and telemetry (`devices`), monitoring (`monitor`), the node client (`client`)
and the embedded devnet (`devnet`). See docs/mine.md."""
