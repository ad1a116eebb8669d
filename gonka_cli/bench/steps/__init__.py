"""The steps of a `gonka bench run`, one module each, sharing one `common.RunState`.

- `kernels`: matmul per dtype, memory bandwidth, host<->device bandwidth.
- `models`: building a model on a device (or skipping it: too slow, no room) and releasing it.
- `poc`: the PoC batch-size sweep and the final rate, per backend.
- `inference`: prefill and decode per batch size, and the replay a validator runs.
- `correctness`: the device's artifacts against a CPU fp32 reference.
- `share`: the estimated share of the network's weight, last.

Each step appends its rows to the run state and records why it skipped; none prints. What a
step measures and how hard comes from `gonka_cli.bench.profiles`; `gonka_cli.bench.runner`
plans the steps and runs them in order.
"""
