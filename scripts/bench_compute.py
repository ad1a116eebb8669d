"""Speed of the compute engine, as ratios measured in one run.

1. PoC throughput on a model (default gonka-small at its PoC seq_len, 256): nonces/s and
   achieved GFLOP/s on torch and on onnxruntime, each next to a plain fp32 `torch.matmul`
   GFLOP/s measured in the same run (goal >= 0.5 on a CPU; >= 0.6 for a real checkpoint).
   `--model` also takes a Hugging Face checkpoint (directory or cached repo id): it runs
   through `transformers` (fp32 on the CPU unless --dtype), and the built-in model of the
   same shape (same hidden size, layers, heads, head size, FFN width) runs beside it.
2. Replay validation cost: the time of one replay of N generated tokens over the time it
   took to generate them (goal <= 0.05).
3. With CUDA (`--device cuda`): the same PoC figures in bf16 (default model gonka-1b at
   seq_len 1024), next to a bf16 `torch.matmul`.

`--make-qwen3 DIR` first writes a random Qwen3 checkpoint to DIR (safetensors) and benchmarks
it: `--qwen3-shape small` (default) has hidden 512, 4 layers, 8 query and 4 key/value heads of
64, FFN 1536, vocabulary 4096; `0.6b` has the layer shape of Qwen/Qwen3-0.6B (hidden 1024, 16
and 8 heads of 128, FFN 3072) with 2 layers and a vocabulary of 8192.

    python scripts/bench_compute.py [--model gonka-small] [--nonces 64] [--tokens 256]
    python scripts/bench_compute.py --make-qwen3 /tmp/qwen3-bench --nonces 32
    python scripts/bench_compute.py --model Qwen/Qwen3-0.6B --seq-len 1024 --nonces 8
    python scripts/bench_compute.py --device cuda --model gonka-1b --dtype bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from gonka_cli.compute import inference, onnx_backend, poc, tokenizer
from gonka_cli.compute.models import MODELS, GonkaModel, build_model, load_model

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


QWEN3_SHAPES = {
    "small": {
        "hidden_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 64,
        "intermediate_size": 1536,
        "vocab_size": 4096,
    },
    "0.6b": {
        "hidden_size": 1024,
        "num_hidden_layers": 2,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 3072,
        "vocab_size": 8192,
    },
}


def write_random_qwen3(directory: Path, shape: str) -> None:
    """A random Qwen3 checkpoint of a tiny-but-not-trivial shape, saved as safetensors."""
    import transformers

    config = transformers.Qwen3Config(
        **QWEN3_SHAPES[shape],
        max_position_embeddings=2048,
        rope_theta=1e6,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 1.0 / param.shape[-1] ** 0.5)
    model.save_pretrained(directory)


def interleaved(
    fn, n: int, flops: float, mm: tuple[str, torch.dtype, int], repeats: int
) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(nonces/s, GFLOP/s as a fraction of matmul): medians over `repeats` rounds, each
    timing `fn()` (n nonces) right after a matmul measurement, so that a machine whose load
    changes during the run (other processes) still gives a fair ratio."""
    device = mm[0]
    fn()
    sync(device)
    rates, ratios = [], []
    for _ in range(repeats):
        reference = matmul_gflops(*mm, repeats=3)
        started = time.perf_counter()
        fn()
        sync(device)
        rate = n / (time.perf_counter() - started)
        rates.append(rate)
        ratios.append(rate * flops / 1e9 / reference)
    return statistics.median(rates), statistics.median(ratios)


def poc_rate(
    model: GonkaModel,
    nonces: list[int],
    seq_len: int,
    batch: int,
    mm: tuple[str, torch.dtype, int],
    repeats: int,
) -> tuple[float, float]:
    params = poc.PocInputParams(seq_len=seq_len)
    flops = poc.poc_flops(model.spec, seq_len)
    return interleaved(
        lambda: poc.compute_poc(model, BLOCK, PK, nonces, params=params, batch_size=batch),
        len(nonces),
        flops,
        mm,
        repeats,
    )


def same_shape_builtin(model: GonkaModel, device: str, dtype: torch.dtype) -> GonkaModel:
    """The built-in (hand-written, seeded) model of the checkpoint's shape."""
    spec = dataclasses.replace(
        model.spec,
        name="gonka-shape-of-checkpoint",
        architecture="gonka",
        vocab_size=tokenizer.VOCAB_SIZE,
        n_params=0,
        description="",
    )
    return build_model(spec, device, dtype)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="built-in name, checkpoint dir or repo id")
    parser.add_argument("--make-qwen3", type=Path, default=None, metavar="DIR")
    parser.add_argument("--qwen3-shape", choices=sorted(QWEN3_SHAPES), default="small")
    parser.add_argument("--seq-len", type=int, default=None, help="PoC seq_len (default: model's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32, bf16 or fp16 (default: the device's)")
    parser.add_argument("--nonces", type=int, default=64, help="nonces per timed PoC run")
    parser.add_argument("--batch", type=int, default=None, help="nonces per forward")
    parser.add_argument("--tokens", type=int, default=256, help="tokens generated for replay")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-onnx", action="store_true")
    args = parser.parse_args()
    device = args.device
    if args.make_qwen3 is not None:
        write_random_qwen3(args.make_qwen3, args.qwen3_shape)
        args.model = str(args.make_qwen3)
    name = args.model or ("gonka-1b" if device.startswith("cuda") else "gonka-small")
    builtin = name in MODELS
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, None: None}[
        args.dtype
    ]
    if dtype is None and not builtin and not device.startswith("cuda"):
        dtype = torch.float32  # the CPU figure is asked for in fp32, whatever the checkpoint's
    torch.manual_seed(0)

    started = time.perf_counter()
    model = load_model(name, device, dtype)
    build_s = time.perf_counter() - started
    spec = model.spec
    seq_len = args.seq_len or spec.poc_seq_len
    flops = poc.poc_flops(spec, seq_len)
    print(
        f"model {name} ({spec.architecture}; hidden {spec.dim}, {spec.n_layers} layers, "
        f"{spec.n_heads}/{spec.n_kv_heads} heads of {spec.head_dim}, FFN {spec.ffn_dim}): "
        f"{spec.param_count / 1e6:.1f} M parameters, loaded in {build_s:.1f} s; "
        f"device {device}, {model.dtype}, PoC seq_len {seq_len}, "
        f"{flops / 1e9:.2f} GFLOP per nonce; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    mm_dtype = model.dtype if device.startswith("cuda") else torch.float32
    mm_n = 4096 if device.startswith("cuda") else 1024
    mm = (device, mm_dtype, mm_n)
    reference = matmul_gflops(device, mm_dtype, mm_n)
    print(
        f"\nreference: {mm_n}^3 torch.matmul in {mm_dtype}: {reference:,.1f} GFLOP/s "
        "(and again before each timed PoC run: the ratios below use those)"
    )

    nonces = list(range(args.nonces))
    batch = args.batch or poc.choose_batch_size(model, seq_len)
    rows = []
    label = "torch" if builtin else "transformers"
    rows.append(
        (f"{label} ({batch}/batch)", *poc_rate(model, nonces, seq_len, batch, mm, args.repeats))
    )
    if not builtin:
        twin = same_shape_builtin(model, device, model.dtype)
        twin_rates = poc_rate(twin, nonces, seq_len, batch, mm, args.repeats)
        rows.append((f"built-in same shape ({batch}/batch)", *twin_rates))
    if builtin and not args.no_onnx:
        with tempfile.TemporaryDirectory() as tmp:
            onnx_device = "cuda" if device.startswith("cuda") else "cpu"
            onnx_model = onnx_backend.OnnxModel(name, onnx_device, directory=Path(tmp))
            export_started = time.perf_counter()
            onnx_model.session("poc")
            print(
                f"onnx export and session: {time.perf_counter() - export_started:.1f} s "
                f"({onnx_model.providers[0]})"
            )
            onnx_rates = interleaved(
                lambda: onnx_backend.compute_artifacts(
                    onnx_model, BLOCK, PK, nonces, batch_size=batch
                ),
                len(nonces),
                flops,
                mm,
                args.repeats,
            )
            rows.append((f"onnxruntime fp32 ({batch}/batch)", *onnx_rates))
    print(f"\nPoC, {len(nonces)} nonces per run, median of {args.repeats}:")
    print(f"{'backend':<36} {'nonces/s':>9} {'nonces/min':>10} {'GFLOP/s':>9} {'vs matmul':>9}")
    for label, rate, ratio in rows:
        gflops = rate * flops / 1e9
        print(f"{label:<36} {rate:>9.2f} {rate * 60:>10.0f} {gflops:>9.1f} {ratio:>9.2f}")

    # Replay: generate N tokens, then replay them (enforced tokens, one prefill pass).
    messages = [{"role": "user", "content": "Tell me about GPUs."}]
    if builtin or model.tokenizer is not None:
        prompt = tokenizer.tokenizer_for(model).chat_ids(messages)
    else:  # a checkpoint without tokenizer files: any ids will do for timing
        prompt = [(7 * i + 3) % spec.vocab_size for i in range(16)]

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
