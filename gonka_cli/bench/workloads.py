"""The model workloads a benchmark times: PoC batches, prefill and decode, replay.

Each function measures one thing on a model that is already loaded and returns plain numbers;
`runner` decides what to run and turns them into result rows. GPU work is synchronised before
a clock is read; every PoC batch ends on the CPU anyway (artifacts are finished there), so
wall-clock time is what a miner gets.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gonka_cli.bench.correctness import BLOCK_HASH, PUBLIC_KEY
from gonka_cli.bench.kernels import Measurement, summarize
from gonka_cli.errors import InsufficientMemory

if TYPE_CHECKING:
    import torch

    from gonka_cli.compute.models import GonkaModel
    from gonka_cli.compute.onnx_backend import OnnxModel

__all__ = [
    "inference_rates",
    "is_onnxruntime_error",
    "oom_as_insufficient_memory",
    "poc_batch_seconds",
    "replay_speed",
]

#: Nonces of the speed runs start here (away from the correctness check's fixed nonces).
_SPEED_NONCE_BASE = 10_000
_WARMUP_S = 0.1


def _sync(device: torch.device | str) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


_OOM_TEXT = ("out of memory", "failed to allocate", "outofmemory")


def oom_as_insufficient_memory(fn: Callable[[], Any], what: str, device: str) -> Any:
    """Run `fn`; running out of memory (torch's CUDA error, a host MemoryError, or
    onnxruntime's allocation failure, which is not a RuntimeError) becomes InsufficientMemory."""
    import torch

    try:
        return fn()
    except (torch.cuda.OutOfMemoryError, MemoryError):
        pass
    except Exception as exc:
        if not any(text in str(exc).lower() for text in _OOM_TEXT):
            raise
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    raise InsufficientMemory(f"{what} ran out of memory on {device}")


def is_onnxruntime_error(exc: BaseException) -> bool:
    """onnxruntime's own exceptions (Fail, RuntimeException, EPFail...) derive from Exception."""
    return type(exc).__module__.startswith("onnxruntime")


def poc_batch_seconds(
    compute: Callable[[list[int]], Sequence[bytes]],
    batch_size: int,
    device: str,
    *,
    reps: int,
    min_time_s: float = 0.0,
    max_reps: int = 50,
) -> list[float]:
    """Seconds per call of `compute(nonces)` for `batch_size` nonces.

    Warm-up first: at least two calls and 0.1 s (onnxruntime plans a new batch shape over its
    first few calls). Then at least `reps` timed calls, and more until `min_time_s` has been
    timed (at most `max_reps`), so fast batches get a steady median.
    """
    nonces = list(range(_SPEED_NONCE_BASE, _SPEED_NONCE_BASE + batch_size))

    def timed() -> float:
        started = time.perf_counter()
        compute(nonces)
        _sync(device)
        return time.perf_counter() - started

    def run() -> list[float]:
        warm, calls = 0.0, 0
        while calls < 2 or (warm < _WARMUP_S and calls < max_reps):
            warm += timed()
            calls += 1
        times: list[float] = []
        while len(times) < reps or (sum(times) < min_time_s and len(times) < max_reps):
            times.append(timed())
        return times

    result: list[float] = oom_as_insufficient_memory(run, f"a PoC batch of {batch_size}", device)
    return result


def torch_poc(model: GonkaModel) -> Callable[[list[int]], Sequence[bytes]]:
    """`compute(nonces)` on the torch backend, one forward for all of them."""
    from gonka_cli.compute import poc

    def compute(nonces: list[int]) -> Sequence[bytes]:
        return poc.compute_artifacts(model, BLOCK_HASH, PUBLIC_KEY, nonces, batch_size=len(nonces))

    return compute


def onnx_poc(model: OnnxModel) -> Callable[[list[int]], Sequence[bytes]]:
    """`compute(nonces)` on onnxruntime, one session run for all of them."""
    from gonka_cli.compute import onnx_backend

    def compute(nonces: list[int]) -> Sequence[bytes]:
        return onnx_backend.compute_artifacts(
            model, BLOCK_HASH, PUBLIC_KEY, nonces, batch_size=len(nonces)
        )

    return compute


def inference_rates(
    model: GonkaModel, batch_size: int, prompt_tokens: int, decode_tokens: int, *, reps: int
) -> tuple[Measurement, Measurement]:
    """(prefill, decode) tokens per second for `batch_size` sequences, greedy, KV-cached.

    Prefill: one forward over `prompt_tokens` tokens per sequence. Decode: `decode_tokens`
    single-token steps after it. One untimed repetition first.
    """
    import torch

    device = model.device
    generator = torch.Generator().manual_seed(batch_size)
    prompt = torch.randint(0, 256, (batch_size, prompt_tokens), generator=generator).to(device)

    def once() -> tuple[float, float]:
        cache = model.new_cache(batch_size, prompt_tokens + decode_tokens)
        _sync(device)
        started = time.perf_counter()
        logits = model.forward_tokens(prompt, cache, last_only=True)
        token = logits.argmax(dim=-1)
        _sync(device)
        prefilled = time.perf_counter()
        for _ in range(decode_tokens):
            logits = model.forward_tokens(token, cache, last_only=True)
            token = logits.argmax(dim=-1)
        _sync(device)
        return prefilled - started, time.perf_counter() - prefilled

    def run() -> list[tuple[float, float]]:
        with torch.inference_mode():
            once()
            return [once() for _ in range(reps)]

    times: list[tuple[float, float]] = oom_as_insufficient_memory(
        run, f"inference at batch {batch_size}", str(device)
    )
    prefill = summarize([batch_size * prompt_tokens / p for p, _ in times])
    decode = summarize([batch_size * decode_tokens / d for _, d in times])
    return prefill, decode


def replay_speed(model: GonkaModel, tokens: int, *, reps: int) -> dict[str, Any]:
    """Generate `tokens` tokens (batch 1, greedy), then time replaying them.

    Returns tokens/s of both, their ratio (replay time / generation time), and the replay's
    similarity and verdict (an honest replay on the same device passes).
    """
    from gonka_cli.compute import inference, tokenizer

    prompt = tokenizer.chat_template(
        [{"role": "user", "content": "Benchmark: describe a GPU in one paragraph."}]
    )
    device = str(model.device)
    started = time.perf_counter()
    generation = inference.generate(model, prompt, tokens, temperature=0.0, stop_tokens=())
    _sync(device)
    generate_s = time.perf_counter() - started
    # The first replay is a warm-up (the prefill shape is new); the median of the rest counts.
    result = inference.replay(model, prompt, generation.tokens, generation.top_logprobs)
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        inference.replay(model, prompt, generation.tokens, generation.top_logprobs)
        _sync(device)
        seconds.append(time.perf_counter() - started)
    replay_s = statistics.median(seconds)
    n = len(generation.tokens)
    return {
        "tokens": n,
        "generate_tokens_per_second": n / generate_s,
        "replay_tokens_per_second": n / replay_s,
        "replay_over_generate": replay_s / generate_s,
        "similarity": result.similarity,
        "passed": result.passed,
    }
