"""Replay validation cost: one replay over the generation it judges, for N tokens.

The replay enforces the executor's tokens in one prefill pass and runs Gonka's
CompareLogits (and, timed apart, the devnet's `replay_check.check_answer`, which also checks the
tokens); generation decodes token by token with a KV cache. Both run in one process,
on the built-in model and on a real checkpoint (a directory or a cached repo id given with
`--model`, else a small random Qwen3 checkpoint written to a temporary directory with
`transformers`, real Qwen3 vocabulary size, embeddings scaled so that its next-token
distributions are peaked like a trained model's). Goal: replay / generation <= 0.05.

    python scripts/bench_replay.py [--tokens 256] [--builtin gonka-small] [--model PATH_OR_REPO]

Each time is the best of `--repeats` runs (default 3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gonka_cli.compute import inference, replay_check
from gonka_cli.compute.models import load_model

#: DAPI passes the user's sampling through: vLLM's defaults, and a typical nucleus setting.
SAMPLINGS: dict[str, dict[str, float]] = {
    "temperature 1": {"temperature": 1.0},
    "temperature 0.7, top_p 0.9": {"temperature": 0.7, "top_p": 0.9},
}


def write_qwen3(directory: Path) -> Path:
    """A random Qwen3 with mainnet's vocabulary (151,936 rows) and a small body."""
    import transformers

    config = transformers.Qwen3Config(
        hidden_size=512,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
        intermediate_size=1536,
        vocab_size=151936,
        max_position_embeddings=4096,
        rope_theta=1e6,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # transformers' 0.02 init makes next-token distributions nearly flat over 151,936 tokens,
    # unlike a trained model's; embeddings of std 0.2 give logits of std ~4, a peaked one.
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, 0.2)
    model.save_pretrained(directory)
    return directory


def best_s(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of `repeats` runs: on a shared machine the others' load only adds time."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(name: str, model: Any, tokens: int, repeats: int, sampling: dict[str, float]) -> float:
    prompt = [(7 * i + 3) % 200 + 10 for i in range(48)]

    def run() -> inference.Generation:
        return inference.generate(model, prompt, tokens, seed=1, stop_tokens=(), **sampling)

    answer = run()  # warm-up
    generation_s = best_s(run, repeats)
    top = answer.top_logprobs

    def check() -> inference.ReplayResult:
        return inference.replay(model, prompt, answer.tokens, top, **sampling)

    def strict() -> replay_check.ReplayVerdict:
        return replay_check.check_answer(model, prompt, list(answer.tokens), top, sampling)

    result = check()
    assert result.passed, result
    verdict = strict()
    assert verdict.passed, verdict
    replay_s = best_s(check, repeats)
    check_s = best_s(strict, repeats)
    ratio = replay_s / generation_s
    print(
        f"{name}: {tokens} tokens, generation {generation_s:.3f} s, replay {replay_s:.4f} s, "
        f"replay/generation {ratio:.4f} (goal <= 0.05), similarity {result.similarity:.6f}; "
        f"devnet check {check_s:.4f} s ({check_s / generation_s:.4f} of generation)"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--builtin", default="gonka-small")
    parser.add_argument("--model", help="a checkpoint directory or cached repo id")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32")
    with tempfile.TemporaryDirectory() as tmp:
        source = args.model or str(write_qwen3(Path(tmp) / "qwen3-bench"))
        label = args.model or "random Qwen3 (hidden 512, 6 layers, vocab 151936)"
        models = [
            (args.builtin, load_model(args.builtin)),
            (label, load_model(source, dtype="float32")),
        ]
        for name, model in models:
            for setting, sampling in SAMPLINGS.items():
                measure(f"{name}, {setting}", model, args.tokens, args.repeats, sampling)


if __name__ == "__main__":
    main()
