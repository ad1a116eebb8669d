"""Hardware profiling (`gonka bench`): what the devices are, how fast and how right they compute.

- `devices`: the inventory (GPUs through `gonka_cli.gpu`, the CPU and RAM through psutil) and
  choosing devices for a run.
- `peaks`: datasheet peaks of known cards, found by the driver's name.
- `kernels`: matmul and bandwidth timings (CUDA events on GPUs), median and spread.
- `tuner`: the batch-size sweep.
- `workloads`: timing PoC batches, prefill and decode, replay.
- `correctness`: the device's artifacts against a CPU fp32 reference.
- `share`: the network's weight from a node, and this host's estimated share.
- `profiles`: what a run measures (the configuration; quick or full; which models).
- `steps`: the steps of a run, one module each (kernels, models, poc, inference, correctness,
  share); `runner` plans them and runs a whole `gonka bench run`; `results`: its documented
  result object.
- `compare`: two saved runs side by side.

A library like the rest of the core: it never prints, and torch loads only where it computes.
See docs/bench.md.
"""
