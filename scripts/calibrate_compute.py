"""Calibrate the devnet's thresholds: honest noise against what cheaters produce.

1. PoC `dist_threshold`: the L2 distance between the validator's artifacts (fp32, torch, CPU)
   and an honest host's (bf16 on the CPU; fp16, bf16 and fp32 on CUDA with `--device cuda`;
   onnxruntime fp32) against the distance of dishonest artifacts (random unit vectors, another
   weights seed, weights quantized to 8 and 4 bits, skipped layers, a truncated context).
   Chosen on the L2 scale: the largest value on a grid (steps of 0.05), never above mainnet's
   0.4, that is (a) at least HONEST_FACTOR times the largest honest distance and (b) makes
   every "must catch" cheat mismatch on at least CATCH_RATE of its nonces, so that doing it
   on a share of the nonces costs as much as faking that share outright. The other cheats are
   printed to show where they land.
2. The replay check (`replay_check.check_answer`): its statistics (similarity over N, support
   margin, likelihood bound log10_p, z-score) on honest answers (fp32 and bf16 executors and
   validators, the onnxruntime prefill as validator; temperature 0, 0.7 and 1.0, top-p 0.9
   and 1.0; every answer cut to 1 .. 64 tokens) and each cheat's detection rate (any text with
   the model's true logprobs from one prefill, random 7-token answers, 20 tokens from a smaller
   model or another weights seed, with its own or the true logprobs). Honest answers must
   never fail; the constants of `replay_check` are checked against the figures, not chosen
   by the script.

Percentiles are NumPy's (linear interpolation). Progress goes to stderr, the figures to stdout.

    python scripts/calibrate_compute.py [--model gonka-small] [--nonces 256] [--cheat-nonces 64]
    python scripts/calibrate_compute.py --skip poc --seeds 3    # the replay check only
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

from gonka_cli.compute import inference, onnx_backend, poc, replay_check, tokenizer
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
HONEST_FACTOR = 4.0
CATCH_RATE = 0.95
POC_GRID = tuple(round(0.05 * i, 2) for i in range(1, 9))  # 0.05 .. 0.4
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
#: (label, temperature, top_p) of the replay check's answers.
CHECK_SETTINGS = (
    ("T=0", 0.0, 1.0),
    ("T=0.7", 0.7, 1.0),
    ("T=0.7 top_p=0.9", 0.7, 0.9),
    ("T=1.0", 1.0, 1.0),
    ("T=1.0 top_p=0.9", 1.0, 0.9),
)
#: An honest answer cut to each of these lengths is an honest answer of that length.
LENGTHS = (1, 2, 4, 7, 16, 32, 64)
#: What a cheater answers instead of running the model (then one prefill for true logprobs).
CANNED_TEXTS = (
    "The Gonka network is a decentralized compute network where hosts earn by running models.",
    "I am sorry, but I cannot help with that request. Please try again later with more detail.",
    "Sure! Here is a short answer: 42. Let me know if you need anything else from me today.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.",
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


@dataclasses.dataclass
class Checked:
    """The statistics of `replay_check.check_answer` for one class of answers."""

    verdicts: list[replay_check.ReplayVerdict] = dataclasses.field(default_factory=list)

    def values(self, name: str) -> list[float]:
        return [getattr(v, name) for v in self.verdicts if getattr(v, name) is not None]

    def stats(self) -> Stats:
        out: Stats = {"n": float(len(self.verdicts))}
        out["failed"] = float(sum(not v.passed for v in self.verdicts))
        out["rate"] = out["failed"] / max(1.0, out["n"])
        for key, name, pick in (
            ("sim min", "similarity", min),
            ("sim max", "similarity", max),
            ("margin min", "support_margin", min),
            ("log10p min", "log10_p", min),
            ("log10p max", "log10_p", max),
            ("z min", "z_score", min),
            ("z max", "z_score", max),
        ):
            values = self.values(name)
            if values:
                out[key] = float(pick(values))
        return out


def check_table(title: str, rows: Sequence[tuple[str, Checked]], columns: Sequence[str]) -> None:
    print(f"\n{title}")
    print(f"| {'class':<52} | {'n':>5} | " + " | ".join(f"{c:>10}" for c in columns) + " |")
    print(f"|{'-' * 54}|{'-' * 6}:|" + "|".join("-" * 11 + ":" for _ in columns) + "|")
    for label, checked in rows:
        s = checked.stats()
        cells = " | ".join(f"{s[c]:>10.4f}" if c in s else f"{'-':>10}" for c in columns)
        print(f"| {label:<52} | {int(s['n']):>5} | {cells} |")


class OnnxPrefill:
    """Just enough of a GonkaModel for a replay: prefill logits from onnxruntime, the "cache"
    being the tokens seen so far (each call recomputes the whole prefix)."""

    def __init__(self, model: onnx_backend.OnnxModel) -> None:
        self.model = model
        self.spec = model.spec
        self.device = torch.device("cpu")

    def new_cache(self, batch: int, length: int) -> list[int]:
        return []

    def forward_tokens(
        self, tokens: torch.Tensor, cache: list[int] | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        new = tokens[0].tolist()
        seen = new if cache is None else [*cache, *new]
        if cache is not None:
            cache[:] = seen
        logits = torch.from_numpy(self.model.logits(np.asarray([seen], dtype=np.int64)))
        out = logits[:, len(seen) - len(new) :]
        return out[:, -1:] if last_only else out


def calibrate_replay(args: argparse.Namespace, onnx_dir: Path) -> None:
    """Honest answers against cheats, through `replay_check.check_answer`."""
    name, device = args.model, args.device
    fp32 = load_model(name, "cpu", torch.float32)
    chat = tokenizer.tokenizer_for(fp32)
    prompts = [chat.chat_ids([{"role": "user", "content": t}]) for t in PROMPTS[: args.prompts]]
    longest = max(LENGTHS)
    seeds = range(args.seeds)

    def sampling(temperature: float, top_p: float) -> inference.Sampling:
        return inference.Sampling(temperature, top_p)

    def answers(model: Any, label: str) -> list[tuple[str, list[int], inference.Generation]]:
        started = time.perf_counter()
        out = []
        for prompt in prompts:
            for setting, temperature, top_p in CHECK_SETTINGS:
                for seed in seeds if temperature > 0 else (0,):
                    g = inference.generate(
                        model, prompt, longest, temperature, top_p, 1000 + seed, stop_tokens=()
                    )
                    out.append((setting, prompt, g))
        log(f"  {label}: {len(out)} answers in {time.perf_counter() - started:.1f} s")
        return out

    def check(validator: Any, setting: str, prompt: list[int], toks: Any, tops: Any) -> Any:
        _, temperature, top_p = next(s for s in CHECK_SETTINGS if s[0] == setting)
        return replay_check.check_answer(
            validator, prompt, list(toks), list(tops), sampling(temperature, top_p)
        )

    log(f"replay check on {name}, {len(prompts)} prompts, lengths {LENGTHS}")
    executors: list[tuple[str, Any]] = [("fp32 cpu", fp32)]
    executors += [(f"{d} cpu", load_model(name, "cpu", d)) for d in args.cpu_dtypes]
    if device.startswith("cuda"):
        executors += [(f"{d} {device}", load_model(name, device, d)) for d in ("fp16", "bf16")]
    validators = list(executors[:2])
    if not args.no_onnx:
        try:
            onnx = OnnxPrefill(onnx_backend.OnnxModel(name, "cpu", directory=onnx_dir))
            validators.append(("fp32 onnxruntime cpu", onnx))
        except BackendUnavailable as exc:
            log(f"  onnxruntime skipped: {exc}")
    answered = {label: answers(model, f"{label} executor") for label, model in executors}

    by_pair: dict[str, Checked] = {}
    by_length: dict[int, Checked] = {n: Checked() for n in LENGTHS}
    by_setting: dict[str, Checked] = {s[0]: Checked() for s in CHECK_SETTINGS}
    greedy_gap = 0.0
    started = time.perf_counter()
    for ex_label, _ in executors:
        for va_label, validator in validators:
            if ex_label != "fp32 cpu" and va_label not in ("fp32 cpu", ex_label):
                continue
            pair = by_pair.setdefault(f"{ex_label} -> {va_label}", Checked())
            for setting, prompt, g in answered[ex_label]:
                for n in LENGTHS:
                    v = check(validator, setting, prompt, g.tokens[:n], g.top_logprobs[:n])
                    pair.verdicts.append(v)
                    by_length[n].verdicts.append(v)
                    by_setting[setting].verdicts.append(v)
                    if v.greedy:
                        greedy_gap = max(
                            greedy_gap, replay_check.GREEDY_TIE_NATS - v.support_margin
                        )
    log(f"  honest checks in {time.perf_counter() - started:.1f} s")

    # --- cheats, judged by the fp32 validator ---------------------------------------------
    rnd = random.Random(3)
    vocab = int(fp32.spec.vocab_size)
    smaller = load_model(args.smaller) if args.smaller != name else None
    other = build_model(dataclasses.replace(fp32.spec, weights_seed=2))
    texts = [chat.encode_text(t) for t in CANNED_TEXTS]
    cheats: dict[str, Checked] = {}
    cheat_by_setting: dict[tuple[str, str], Checked] = {}

    def true_logprobs(prompt: list[int], toks: list[int], t: float, p: float) -> Any:
        g = inference.generate(
            fp32, prompt, len(toks), t, p, None, stop_tokens=(), enforced_tokens=toks
        )
        return g.tokens, g.top_logprobs

    def record(label: str, setting: str, v: replay_check.ReplayVerdict) -> None:
        cheats.setdefault(label, Checked()).verdicts.append(v)
        cheat_by_setting.setdefault((label, setting), Checked()).verdicts.append(v)

    started = time.perf_counter()
    for prompt in prompts:
        for setting, temperature, top_p in CHECK_SETTINGS:
            for seed in seeds if temperature > 0 else (0,):
                for n in (7, 16, 64):
                    text = texts[(seed + n) % len(texts)]
                    start = rnd.randrange(0, max(1, len(text) - n))
                    toks, tops = true_logprobs(prompt, text[start : start + n], temperature, top_p)
                    v = check(fp32, setting, prompt, toks, tops)
                    record(f"any text, true logprobs ({n} tokens)", setting, v)
                random7 = [rnd.randrange(vocab) for _ in range(7)]
                toks, tops = true_logprobs(prompt, random7, temperature, top_p)
                record(
                    "random 7 tokens, true logprobs",
                    setting,
                    check(fp32, setting, prompt, toks, tops),
                )
                made_up = [[(t, -0.1)] + [(u, -5.0) for u in range(4)] for t in random7]
                record(
                    "random 7 tokens, made-up logprobs",
                    setting,
                    check(fp32, setting, prompt, random7, made_up),
                )
                for label, model in (("a smaller model", smaller), ("another weights seed", other)):
                    if model is None:
                        continue
                    g = inference.generate(
                        model, prompt, 20, temperature, top_p, 2000 + seed, stop_tokens=()
                    )
                    toks20 = list(g.tokens)
                    record(
                        f"20 tokens from {label}, its logprobs",
                        setting,
                        check(fp32, setting, prompt, toks20, g.top_logprobs),
                    )
                    toks, tops = true_logprobs(prompt, toks20, temperature, top_p)
                    record(
                        f"20 tokens from {label}, true logprobs",
                        setting,
                        check(fp32, setting, prompt, toks, tops),
                    )
    log(f"  cheats in {time.perf_counter() - started:.1f} s")

    columns = ("failed", "sim min", "margin min", "log10p min", "z min")
    print(
        f"\n## Replay check ({name}; {len(prompts)} prompts; settings "
        f"{', '.join(s[0] for s in CHECK_SETTINGS)}; {len(seeds)} seeds per sampled setting; "
        f"every answer cut to {', '.join(map(str, LENGTHS))} tokens)"
    )
    check_table("honest, executor -> validator", list(by_pair.items()), columns)
    check_table(
        "honest, by length (all pairs)", [(f"{n} tokens", c) for n, c in by_length.items()], columns
    )
    check_table("honest, by setting (all pairs)", list(by_setting.items()), columns)
    cheat_columns = ("rate", "sim max", "margin min", "log10p max", "z max")
    check_table("cheats, fp32 validator (rate: share failed)", list(cheats.items()), cheat_columns)
    rows = [(f"{label} @ {setting}", c) for (label, setting), c in cheat_by_setting.items()]
    check_table("cheats by setting", rows, ("rate", "log10p max", "z max"))

    honest = [v for c in by_pair.values() for v in c.verdicts]
    sims = [v.similarity for v in honest]
    print(f"\nhonest answers failed: {sum(not v.passed for v in honest)} of {len(honest)}")
    print(
        f"  lowest similarity {min(sims):.4f} (distance {1 - min(sims):.4f}; the pass mark "
        f"{inference.DEFAULT_REPLAY_THRESHOLD} is distance "
        f"{1 - inference.DEFAULT_REPLAY_THRESHOLD:.2f}, "
        f"{(1 - inference.DEFAULT_REPLAY_THRESHOLD) / max(1e-9, 1 - min(sims)):.1f}x it)"
    )
    print(
        f"  largest greedy gap to the argmax {greedy_gap:.4f} nats (tie tolerance "
        f"{replay_check.GREEDY_TIE_NATS})"
    )
    sampled = [v for v in honest if not v.greedy]
    print(
        f"  sampled: smallest support margin {min(v.support_margin for v in sampled):.4f} nats "
        f"(margin {replay_check.SUPPORT_MARGIN_NATS}, floor {replay_check.LOGPROB_FLOOR}); "
        f"lowest log10_p {min(v.log10_p for v in sampled):.3f} (fails below "
        f"{replay_check.LIKELIHOOD_LOG10_P}); lowest z {min(v.z_score for v in sampled):.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gonka-small")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda[:N] for fp16/bf16 on a GPU")
    parser.add_argument("--nonces", type=int, default=256, help="nonces per honest PoC pair")
    parser.add_argument("--cheat-nonces", type=int, default=64, help="nonces per cheat")
    parser.add_argument("--prompts", type=int, default=4, help=f"1 to {len(PROMPTS)}")
    parser.add_argument("--seeds", type=int, default=3, help="answers per prompt and setting")
    parser.add_argument(
        "--smaller", default="gonka-tiny", help="the cheaper model a cheater answers with"
    )
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
