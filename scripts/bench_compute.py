"""Speed of the compute engine, as ratios measured in one run.

1. PoC throughput on a model (default gonka-small at its PoC seq_len, 256): nonces/s and
   achieved GFLOP/s on torch and on onnxruntime, each next to a plain fp32 `torch.matmul`
   GFLOP/s measured in the same run (goal >= 0.5 on a CPU).
2. Replay validation cost: the time of one replay of N generated tokens over the time it
   took to generate them (goal <= 0.1).
3. With CUDA (`--device cuda`): the same PoC figures in bf16 (default model gonka-1b at
   seq_len 1024), next to a bf16 `torch.matmul`.

    python scripts/bench_compute.py [--model gonka-small] [--nonces 64] [--tokens 256]
    python scripts/bench_compute.py --device cuda --model gonka-1b --dtype bf16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from gonka_cli.compute import inference, onnx_backend, poc, tokenizer
from gonka_cli.compute.models import load_model

BLOCK = "9c" * 32
PK = "02" + "3d" * 32


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_gflops(device: str, dtype: torch.dtype, n: int, repeats: int = 7) -> float:
    """Median GFLOP/s of an n x n x n matmul (after a warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        sync(device)
        rates.append(2 * n**3 / (time.perf_counter() - started) / 1e9)
    return statistics.median(rates)


def timed(fn, device: str, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of `fn()` over `repeats` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32, bf16 or fp16 (default: the device's)")
    parser.add_argument("--nonces", type=int, default=64, help="nonces per timed PoC run")
    parser.add_argument("--batch", type=int, default=None, help="nonces per forward")
    parser.add_argument("--tokens", type=int, default=256, help="tokens generated for replay")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-onnx", action="store_true")
    args = parser.parse_args()
    device = args.device
    name = args.model or ("gonka-1b" if device.startswith("cuda") else "gonka-small")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, None: None}[
        args.dtype
    ]
    torch.manual_seed(0)

    started = time.perf_counter()
    model = load_model(name, device, dtype)
    build_s = time.perf_counter() - started
    spec = model.spec
    seq_len = spec.poc_seq_len
    flops = poc.poc_flops(spec, seq_len)
    print(
        f"model {name}: {spec.param_count / 1e6:.1f} M parameters, built in {build_s:.1f} s; "
        f"device {device}, {model.dtype}, PoC seq_len {seq_len}, "
        f"{flops / 1e9:.2f} GFLOP per nonce; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    mm_dtype = model.dtype if device.startswith("cuda") else torch.float32
    mm_n = 4096 if device.startswith("cuda") else 1024
    reference = matmul_gflops(device, mm_dtype, mm_n)
    print(f"\nreference: {mm_n}^3 torch.matmul in {mm_dtype}: {reference:,.1f} GFLOP/s")

    nonces = list(range(args.nonces))
    batch = args.batch or poc.choose_batch_size(model, seq_len)
    rows = []
    torch_s = timed(
        lambda: poc.compute_artifacts(model, BLOCK, PK, nonces, batch_size=batch),
        device,
        args.repeats,
    )
    rows.append((f"torch ({batch}/batch)", len(nonces) / torch_s))
    if not args.no_onnx:
        with tempfile.TemporaryDirectory() as tmp:
            onnx_device = "cuda" if device.startswith("cuda") else "cpu"
            onnx_model = onnx_backend.OnnxModel(name, onnx_device, directory=Path(tmp))
            export_started = time.perf_counter()
            onnx_model.session("poc")
            print(
                f"onnx export and session: {time.perf_counter() - export_started:.1f} s "
                f"({onnx_model.providers[0]})"
            )
            onnx_s = timed(
                lambda: onnx_backend.compute_artifacts(
                    onnx_model, BLOCK, PK, nonces, batch_size=batch
                ),
                device,
                args.repeats,
            )
            rows.append((f"onnxruntime fp32 ({batch}/batch)", len(nonces) / onnx_s))
    print(f"\nPoC, {len(nonces)} nonces per run, median of {args.repeats}:")
    print(f"{'backend':<28} {'nonces/s':>9} {'nonces/min':>10} {'GFLOP/s':>9} {'vs matmul':>9}")
    for label, rate in rows:
        gflops = rate * flops / 1e9
        print(
            f"{label:<28} {rate:>9.2f} {rate * 60:>10.0f} {gflops:>9.1f} {gflops / reference:>9.2f}"
        )

    # Replay: generate N tokens, then replay them in one prefill pass.
    prompt = tokenizer.chat_template([{"role": "user", "content": "Tell me about GPUs."}])

    # No stop tokens: exactly --tokens tokens are generated.
    def run_generation() -> inference.Generation:
        return inference.generate(model, prompt, args.tokens, temperature=0.0, stop_tokens=())

    gen_s = timed(run_generation, device, 1)
    generation = run_generation()
    replay_s = timed(
        lambda: inference.replay(model, prompt, generation.tokens, generation.top_logprobs),
        device,
        args.repeats,
    )
    result = inference.replay(model, prompt, generation.tokens, generation.top_logprobs)
    print(f"\nreplay of {len(generation.tokens)} generated tokens (prompt {len(prompt)}):")
    print(
        f"  generate {gen_s * 1000:,.0f} ms ({len(generation.tokens) / gen_s:,.0f} tokens/s), "
        f"replay {replay_s * 1000:,.1f} ms; replay / generate = {replay_s / gen_s:.3f}; "
        f"similarity {result.similarity:.4f} ({'pass' if result.passed else 'FAIL'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
