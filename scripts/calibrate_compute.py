"""Calibrate the devnet's two thresholds: honest noise against what cheaters produce.

1. PoC `dist_threshold`: the L2 distance between the validator's artifacts (fp32, torch, CPU)
   and an honest host's (bf16 on the CPU; fp16, bf16 and fp32 on CUDA with `--device cuda`;
   onnxruntime fp32) against the distance of dishonest artifacts (random unit vectors, another
   weights seed, weights quantized to 8 and 4 bits, skipped layers, a truncated context).
2. The replay threshold: `inference.replay` similarity of honest answers (same backend and
   precision; fp32 executor and bf16 validator and the reverse; the onnxruntime prefill as
   validator; greedy and sampled at temperature 0.7 and 1.0) against dishonest ones (another
   weights seed, gonka-tiny, 4- and 8-bit weights, rounded logprobs, edited tokens).

Each threshold is chosen on a distance scale (L2 for PoC, 1 - similarity for replay): the
largest value on a grid (steps of 0.05; of 0.01 for replay), never above mainnet's (0.4;
similarity 0.9), that is (a) at least HONEST_FACTOR times the largest honest distance and
(b) catches every "must catch" cheat: for PoC, the cheat mismatches on at least CATCH_RATE of
its nonces, so doing it on a share of the nonces costs as much as faking that share outright;
for replay, every cheating answer fails. The largest such value gives honest hosts the most
room; mainnet's value is kept when it qualifies. The other cheats are printed to show where
they land. Percentiles are NumPy's (linear interpolation). Progress goes to stderr, the
figures to stdout.

    python scripts/calibrate_compute.py [--model gonka-small] [--nonces 256] [--cheat-nonces 64]
    python scripts/calibrate_compute.py --device cuda       # fp16, bf16 and fp32 on the GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gonka_cli.compute import inference, onnx_backend, poc, tokenizer
from gonka_cli.compute.artifacts import artifact_distance, encode_artifact
from gonka_cli.compute.models import (
    BuiltinModel,
    build_model,
    householder,
    load_builtin,
    load_model,
    quantized_copy,
)
from gonka_cli.compute.validation import PocParams, binomial_tail, fraud_cutoff
from gonka_cli.errors import BackendUnavailable, DeviceUnavailable

BLOCK = "5e" * 32
PK = "03" + "a7" * 32
MAINNET_DIST = 0.4
MAINNET_REPLAY = 0.9
HONEST_FACTOR = 4.0
CATCH_RATE = 0.95
POC_GRID = tuple(round(0.05 * i, 2) for i in range(1, 9))  # 0.05 .. 0.4
REPLAY_GRID = tuple(round(0.01 * i, 2) for i in range(1, 11))  # distances 0.01 .. 0.1
PROMPTS = (
    "Tell me about the Gonka network.",
    "Write a haiku about graphics cards.",
    "How do I convert 3 miles to kilometres?",
    "Summarise the plot of Hamlet in two sentences.",
    "What is a Merkle tree?",
    "List three prime numbers above one hundred.",
    "Translate 'good morning' into French and German.",
    "Explain gradient descent to a child.",
)
#: (label, temperature, top_p, seed); the dishonest answers use the first and the last.
SETTINGS = (
    ("greedy", 0.0, 1.0, None),
    ("T=0.7", 0.7, 1.0, 101),
    ("T=1.0 top_p=0.95", 1.0, 0.95, 202),
)
Stats = dict[str, float]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentiles(values: Sequence[float]) -> Stats:
    a = np.asarray(values, dtype=np.float64)
    keys = ("min", "p1", "p5", "p50", "p90", "p99", "max")
    qs = np.percentile(a, [0, 1, 5, 50, 90, 99, 100])
    return {"n": float(len(a)), **dict(zip(keys, (float(q) for q in qs), strict=True))}


def table(title: str, rows: Sequence[tuple[str, Stats]], columns: Sequence[str]) -> None:
    print(f"\n{title}")
    print(f"| {'class':<44} | {'n':>4} | " + " | ".join(f"{c:>7}" for c in columns) + " |")
    print(f"|{'-' * 46}|{'-' * 5}:|" + "|".join("-" * 8 + ":" for _ in columns) + "|")
    for label, s in rows:
        cells = " | ".join(f"{s[c]:>7.4f}" if c in s else f"{'':>7}" for c in columns)
        print(f"| {label:<44} | {int(s['n']):>4} | {cells} |")


def choose(grid: Sequence[float], honest_max: float, catches: Callable[[float], bool]) -> float:
    """The largest grid value >= HONEST_FACTOR x honest_max that `catches` every cheat."""
    good = [t for t in grid if t >= HONEST_FACTOR * honest_max and catches(t)]
    if not good:
        raise SystemExit(
            f"no threshold on the grid is {HONEST_FACTOR:g}x the honest max ({honest_max:.4f}) "
            "and catches every must-catch cheat: see the tables above"
        )
    return max(good)


# --- models -----------------------------------------------------------------------------------


class OnnxPrefill:
    """Just enough of a GonkaModel for `inference.replay`: prefill logits from onnxruntime."""

    def __init__(self, model: onnx_backend.OnnxModel) -> None:
        self.model = model
        self.spec = model.spec
        self.device = torch.device("cpu")

    def forward_tokens(self, tokens: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.from_numpy(self.model.logits(tokens.cpu().numpy()))


# --- PoC --------------------------------------------------------------------------------------


def shortcut_artifacts(
    model: BuiltinModel,
    nonces: list[int],
    *,
    layers: Sequence[int] | None = None,
    context: int | None = None,
    batch_size: int = 16,
) -> list[bytes]:
    """Artifacts of a host that runs only `layers` (every layer's reflection still applied)
    and/or only the last `context` input positions (RoPE is relative, so the shortened
    sequence starts at position 0)."""
    spec = model.spec
    keep = set(range(spec.n_layers) if layers is None else layers)
    out: list[bytes] = []
    with torch.inference_mode():
        reflections = poc.householder_vectors(BLOCK, spec.n_layers, spec.dim)
        for i in range(0, len(nonces), batch_size):
            batch = nonces[i : i + batch_size]
            x = poc.poc_inputs(BLOCK, PK, batch, spec.poc_seq_len, spec.dim)
            if context is not None:
                x = x[:, -context:]
            t = x.shape[1]
            cos, sin = model.rope_cos[:t], model.rope_sin[:t]
            for j, layer in enumerate(model.layers):
                if j in keep:
                    x = layer(x, cos, sin)
                x = householder(x, reflections[j])
            hidden = model.norm(x[:, -1, :]).float()
            out.extend(poc.artifacts_from_hidden(hidden, BLOCK, PK, batch).artifacts)
    return out


def random_artifacts(count: int) -> list[bytes]:
    rnd = np.random.default_rng(7)
    vectors = rnd.standard_normal((count, 12))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [encode_artifact(row.tolist()) for row in vectors]


def distances(a: Sequence[bytes], b: Sequence[bytes]) -> list[float]:
    return [artifact_distance(x, y) for x, y in zip(a, b, strict=True)]


def calibrate_poc(args: argparse.Namespace, onnx_dir: Path) -> float:
    name, device = args.model, args.device
    nonces = list(range(args.nonces))
    cheat_nonces = nonces[: args.cheat_nonces]
    reference_model = load_builtin(name, "cpu", torch.float32)
    spec = reference_model.spec

    def timed(label: str, fn: Callable[[], list[bytes]]) -> list[bytes]:
        started = time.perf_counter()
        result = fn()
        log(f"  {label}: {len(result)} artifacts in {time.perf_counter() - started:.1f} s")
        return result

    log(f"PoC on {name} (seq_len {spec.poc_seq_len}), {len(nonces)} nonces")
    reference = timed(
        "fp32 torch cpu (validator)",
        lambda: poc.compute_artifacts(reference_model, BLOCK, PK, nonces, batch_size=16),
    )
    honest: list[tuple[str, list[float]]] = []
    precisions = [("cpu", d) for d in args.cpu_dtypes]
    if device.startswith("cuda"):
        precisions += [(device, d) for d in ("fp16", "bf16", "fp32")]
    for dev, dtype in precisions:
        model = load_model(name, dev, dtype)
        label = f"{dtype} torch {dev} vs fp32 cpu"
        ours = timed(label, lambda m=model: poc.compute_artifacts(m, BLOCK, PK, nonces))
        honest.append((label, distances(ours, reference)))
    if not args.no_onnx:
        onnx_device = "cuda" if device.startswith("cuda") else "cpu"
        try:
            onnx_model = onnx_backend.OnnxModel(name, onnx_device, directory=onnx_dir)
            label = f"fp32 onnxruntime {onnx_device} vs torch cpu"
            ours = timed(
                label, lambda: onnx_backend.compute_artifacts(onnx_model, BLOCK, PK, nonces)
            )
            honest.append((label, distances(ours, reference)))
        except BackendUnavailable as exc:
            log(f"  onnxruntime on {onnx_device} skipped: {exc}")

    n_layers = spec.n_layers
    half = spec.poc_seq_len // 2
    quarter = spec.poc_seq_len // 4
    cheats: list[tuple[str, bool, Callable[[], list[bytes]]]] = [
        ("random unit vectors", True, lambda: random_artifacts(len(cheat_nonces))),
        (
            "another weights seed",
            True,
            lambda: poc.compute_artifacts(
                build_model(dataclasses.replace(spec, weights_seed=2)), BLOCK, PK, cheat_nonces
            ),
        ),
        (
            "inputs only (no layer run)",
            True,
            lambda: shortcut_artifacts(reference_model, cheat_nonces, layers=[]),
        ),
        (
            f"every other layer ({n_layers // 2} of {n_layers})",
            True,
            lambda: shortcut_artifacts(reference_model, cheat_nonces, layers=range(0, n_layers, 2)),
        ),
        (
            f"last layer skipped ({n_layers - 1} of {n_layers})",
            True,
            lambda: shortcut_artifacts(reference_model, cheat_nonces, layers=range(n_layers - 1)),
        ),
        (
            f"context cut to the last {half} positions",
            True,
            lambda: shortcut_artifacts(reference_model, cheat_nonces, context=half),
        ),
        (
            f"context cut to the last {spec.poc_seq_len - quarter}",
            True,
            lambda: shortcut_artifacts(
                reference_model, cheat_nonces, context=spec.poc_seq_len - quarter
            ),
        ),
        (
            "weights rounded to 4 bits",
            True,
            lambda: poc.compute_artifacts(
                quantized_copy(reference_model, 4), BLOCK, PK, cheat_nonces
            ),
        ),
        (
            "weights rounded to 8 bits (not a cheat)",
            False,
            lambda: poc.compute_artifacts(
                quantized_copy(reference_model, 8), BLOCK, PK, cheat_nonces
            ),
        ),
    ]
    dishonest: list[tuple[str, bool, list[float]]] = []
    for label, must_catch, fn in cheats:
        values = distances(timed(label, fn), reference[: len(cheat_nonces)])
        dishonest.append((label, must_catch, values))

    params = PocParams()
    n, p, alpha = params.sample_size, params.p_mismatch, params.alpha
    cutoff = fraud_cutoff(n, p, alpha)
    honest_max = max(max(v) for _, v in honest)
    must = [(label, v) for label, must_catch, v in dishonest if must_catch]

    def rate(values: Sequence[float], t: float) -> float:
        return sum(v > t for v in values) / len(values)

    threshold = choose(
        POC_GRID, honest_max, lambda t: all(rate(v, t) >= CATCH_RATE for _, v in must)
    )

    print(f"\n## PoC artifacts: L2 distance to the validator's fp32 torch CPU artifacts ({name})")
    rows = [(label, percentiles(v)) for label, v in honest]
    table(f"honest ({len(nonces)} nonces)", rows, ("min", "p50", "p90", "p99", "max"))
    rows = [(f"{label}{'' if must else ' *'}", percentiles(v)) for label, must, v in dishonest]
    table(
        f"dishonest ({len(cheat_nonces)} nonces; * not a must-catch)",
        rows,
        ("min", "p1", "p5", "p50", "max"),
    )

    print(
        f"\nmismatch rate (share of nonces above the threshold) and, for a host doing it on "
        f"every nonce, P[flagged] = P[Binomial({n}, rate) >= {cutoff}]:"
    )
    for t in sorted({threshold, MAINNET_DIST}):
        print(f"  threshold {t:g}:")
        for label, values in [*honest, *((lab, v) for lab, _, v in dishonest)]:
            r = rate(values, t)
            flag = binomial_tail(cutoff, n, r) if r > 0 else 0.0
            print(f"    {label:<46} rate {r:6.3f}  P[flagged] {flag:.4f}")

    honest_p99 = max(percentiles(v)["p99"] for _, v in honest)
    weakest, weakest_values = min(must, key=lambda item: percentiles(item[1])["p5"])
    weakest_p5 = percentiles(weakest_values)["p5"]
    print(
        f"\nchosen dist_threshold = {threshold:g}: the largest of {POC_GRID[0]:g}, "
        f"{POC_GRID[1]:g} .. {POC_GRID[-1]:g} that is >= {HONEST_FACTOR:g}x the honest max and "
        f"that every must-catch cheat exceeds on >= {CATCH_RATE:.0%} of its nonces"
    )
    print(
        f"  honest side: max {honest_max:.4f}, p99 {honest_p99:.4f}: the threshold is "
        f"{threshold / honest_max:.1f}x the max, {threshold / honest_p99:.1f}x the p99"
    )
    print(
        f"  cheat side: weakest must-catch cheat '{weakest}', p5 {weakest_p5:.4f} = "
        f"{weakest_p5 / threshold:.2f}x the threshold, mismatch rate "
        f"{rate(weakest_values, threshold):.3f}"
    )
    if threshold != MAINNET_DIST:
        bad = [label for label, v in must if rate(v, MAINNET_DIST) < CATCH_RATE]
        print(f"  mainnet's {MAINNET_DIST:g} is not kept: too lenient for {', '.join(bad)}")
    return threshold


# --- replay -------------------------------------------------------------------------------


def calibrate_replay(args: argparse.Namespace, onnx_dir: Path) -> float:
    name, device = args.model, args.device
    prompts = [
        tokenizer.chat_template([{"role": "user", "content": text}])
        for text in PROMPTS[: args.prompts]
    ]
    fp32 = load_model(name, "cpu", torch.float32)
    spec = fp32.spec
    tokens = args.tokens

    def answers(
        model: Any, settings: Sequence[tuple[str, float, float, int | None]]
    ) -> list[tuple[list[int], inference.Generation]]:
        out = []
        for prompt in prompts:
            for _, temperature, top_p, seed in settings:
                out.append(
                    (
                        prompt,
                        inference.generate(
                            model, prompt, tokens, temperature, top_p, seed, stop_tokens=()
                        ),
                    )
                )
        return out

    def similarities(
        validator: Any,
        answered: Sequence[tuple[list[int], Any]],
        edit: Callable[..., Any] | None = None,
    ) -> list[float]:
        out = []
        for prompt, g in answered:
            toks, tops = (g.tokens, g.top_logprobs) if edit is None else edit(g)
            out.append(inference.replay(validator, prompt, toks, tops).similarity)
        return out

    def timed_answers(label: str, model: Any, settings: Any) -> list[Any]:
        started = time.perf_counter()
        result = answers(model, settings)
        log(f"  {label}: {len(result)} answers in {time.perf_counter() - started:.1f} s")
        return result

    log(f"replay on {name}, {len(prompts)} prompts x {tokens} tokens")
    by_fp32 = timed_answers("fp32 cpu executor", fp32, SETTINGS)
    honest: list[tuple[str, list[float]]] = [
        ("fp32 cpu -> fp32 cpu (same backend)", similarities(fp32, by_fp32)),
    ]
    executors = [("cpu", d) for d in args.cpu_dtypes]
    if device.startswith("cuda"):
        executors += [(device, d) for d in ("fp16", "bf16")]
    for dev, dtype in executors:
        low = load_model(name, dev, dtype)
        by_low = timed_answers(f"{dtype} {dev} executor", low, SETTINGS)
        honest.append((f"{dtype} {dev} -> {dtype} {dev} (same backend)", similarities(low, by_low)))
        honest.append((f"fp32 cpu -> {dtype} {dev}", similarities(low, by_fp32)))
        honest.append((f"{dtype} {dev} -> fp32 cpu", similarities(fp32, by_low)))
    if not args.no_onnx:
        try:
            onnx = OnnxPrefill(onnx_backend.OnnxModel(name, "cpu", directory=onnx_dir))
            honest.append(("fp32 torch -> fp32 onnxruntime", similarities(onnx, by_fp32)))
        except BackendUnavailable as exc:
            log(f"  onnxruntime skipped: {exc}")

    cheat_settings = (SETTINGS[0], SETTINGS[-1])
    rnd = random.Random(3)

    def edited(share: float) -> Callable[[inference.Generation], Any]:
        def edit(g: inference.Generation) -> Any:
            toks = list(g.tokens)
            tops = [list(entries) for entries in g.top_logprobs]
            for i in rnd.sample(range(len(toks)), max(1, round(share * len(toks)))):
                new = rnd.choice([t for t in range(256) if t != toks[i]])
                toks[i] = new
                if all(t != new for t, _ in tops[i]):
                    # The cheater claims the new token as likely as the best one.
                    tops[i].append((new, tops[i][0][1]))
            return toks, tops

        return edit

    def rounded(decimals: int) -> Callable[[inference.Generation], Any]:
        def edit(g: inference.Generation) -> Any:
            return g.tokens, [
                [(t, min(0.0, round(lp, decimals))) for t, lp in e] for e in g.top_logprobs
            ]

        return edit

    # The honest fp32 answers, greedy and T=1.0, edited afterwards.
    greedy_and_hot = [
        a for i, a in enumerate(by_fp32) if i % len(SETTINGS) in (0, len(SETTINGS) - 1)
    ]
    other = build_model(dataclasses.replace(spec, weights_seed=2))
    dishonest: list[tuple[str, bool, list[float]]] = []
    for label, model in (
        ("another weights seed", other),
        ("gonka-tiny instead", load_model("gonka-tiny")),
        ("weights rounded to 4 bits", quantized_copy(fp32, 4)),
    ):
        dishonest.append(
            (label, True, similarities(fp32, timed_answers(label, model, cheat_settings)))
        )
    for share in (0.1, 0.05, 0.02):
        dishonest.append(
            (
                f"{share:.0%} of tokens edited, logprob claimed",
                share >= 0.1,
                similarities(fp32, greedy_and_hot, edited(share)),
            )
        )
    dishonest.append(
        (
            "weights rounded to 8 bits (not a cheat)",
            False,
            similarities(
                fp32, timed_answers("8-bit weights", quantized_copy(fp32, 8), cheat_settings)
            ),
        )
    )
    for decimals in (0, 1):
        dishonest.append(
            (
                f"logprobs rounded to {decimals} decimals",
                False,
                similarities(fp32, greedy_and_hot, rounded(decimals)),
            )
        )

    honest_rows = [(label, percentiles(v)) for label, v in honest]
    print(
        f"\n## Replay similarity ({name}, {len(prompts)} prompts x {len(SETTINGS)} settings "
        f"[greedy, T=0.7, T=1.0 top_p=0.95], {tokens} tokens per answer)"
    )
    table("honest (executor -> validator)", honest_rows, ("min", "p5", "p50", "max"))
    rows = [(f"{label}{'' if must else ' *'}", percentiles(v)) for label, must, v in dishonest]
    table(
        "dishonest (greedy and T=1.0; validator fp32 cpu; * not a must-catch)",
        rows,
        ("min", "p50", "p90", "max"),
    )

    honest_max = max(1.0 - min(v) for _, v in honest)
    must = [(label, v) for label, must_catch, v in dishonest if must_catch]

    def fails_all(distance: float) -> bool:
        # replay passes when similarity > threshold
        return all(s <= round(1.0 - distance, 6) for _, v in must for s in v)

    distance = choose(REPLAY_GRID, honest_max, fails_all)
    threshold = round(1.0 - distance, 6)
    weakest, weakest_values = max(must, key=lambda item: max(item[1]))
    print(
        f"\nchosen replay threshold = {threshold:g} (distance {distance:g}): the largest "
        f"distance of {REPLAY_GRID[0]:g} .. {REPLAY_GRID[-1]:g} that is >= {HONEST_FACTOR:g}x "
        f"the honest max and below every must-catch answer"
    )
    print(
        f"  honest side: lowest similarity {1 - honest_max:.4f} (distance {honest_max:.4f}): "
        f"the threshold distance is {distance / honest_max:.1f}x it"
    )
    print(
        f"  cheat side: highest must-catch similarity {max(weakest_values):.4f} ('{weakest}', "
        f"distance {1 - max(weakest_values):.4f} = "
        f"{(1 - max(weakest_values)) / distance:.2f}x the threshold distance)"
    )
    for t in sorted({threshold, MAINNET_REPLAY}):
        print(f"  answers that pass at {t:g}:")
        for label, values in [*honest, *((lab, v) for lab, _, v in dishonest)]:
            print(f"    {label:<46} {sum(v > t for v in values)} of {len(values)}")
    return threshold


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gonka-small")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda[:N] for fp16/bf16 on a GPU")
    parser.add_argument("--nonces", type=int, default=256, help="nonces per honest PoC pair")
    parser.add_argument("--cheat-nonces", type=int, default=64, help="nonces per cheat")
    parser.add_argument("--prompts", type=int, default=4, help=f"1 to {len(PROMPTS)}")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per answer")
    parser.add_argument(
        "--cpu-dtypes", default="bf16", help="honest low precisions on the CPU (e.g. bf16,fp16)"
    )
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--skip", choices=("poc", "replay"), action="append", default=[])
    args = parser.parse_args()
    args.cpu_dtypes = [d for d in args.cpu_dtypes.split(",") if d]
    args.cheat_nonces = min(args.cheat_nonces, args.nonces)
    if not args.cpu_dtypes and args.no_onnx and not args.device.startswith("cuda"):
        parser.error("nothing honest to compare: give --cpu-dtypes, onnxruntime or a GPU")
    try:
        load_model(args.model, args.device)
    except DeviceUnavailable as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    started = time.perf_counter()
    print(
        f"calibration of {args.model}: device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; block {BLOCK[:8]}..., public key {PK[:8]}..."
    )
    with tempfile.TemporaryDirectory() as tmp:
        if "poc" not in args.skip:
            calibrate_poc(args, Path(tmp))
        if "replay" not in args.skip:
            calibrate_replay(args, Path(tmp))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
