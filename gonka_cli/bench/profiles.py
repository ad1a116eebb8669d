"""What a `gonka bench run` measures: the configuration, quick or full, and the models.

- `BenchConfig`: what the user asked for (devices, models, backends, which steps, the nodes
  to ask for the share).
- `Settings` (`settings_for`): how hard each step measures, for a quick or a full run on a CPU
  or a GPU: repetitions, problem sizes, the sweep's time budget, the inference batches, and
  the limits past which a model is skipped as too slow.
- `select_models`: the models a run considers, smallest first.

The steps themselves are in `gonka_cli.bench.steps`; `runner` puts them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gonka_cli.compute.models import ModelSpec

__all__ = [
    "BACKENDS",
    "MIB",
    "QUICK_MODELS",
    "BenchConfig",
    "Settings",
    "plan_models",
    "select_models",
    "settings_for",
]

BACKENDS = ("torch", "onnxruntime")

QUICK_MODELS = ("gonka-tiny", "gonka-small")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. `None` devices or models mean the defaults (see docs/bench.md)."""

    devices: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    quick: bool = False
    kernels: bool = True
    poc: bool = True
    backends: tuple[str, ...] = BACKENDS
    inference: bool = True
    correctness: bool = True
    #: Nodes to ask for the network's weight (tried in order); empty: do not ask.
    share_urls: tuple[str, ...] = ()
    #: Why no node is asked, when `share_urls` is empty.
    share_reason: str = "no node was asked (offline)"


@dataclass(frozen=True)
class Settings:
    """How hard a run measures: quick or full, on a CPU or a GPU."""

    kernel_reps: int
    matmul_n: int
    copy_bytes: int
    host_copy_bytes: int
    sweep_budget_s: float
    point_reps: int
    point_time_s: float
    final_reps: int
    final_time_s: float
    inference_batches: tuple[int, ...]
    prompt_tokens: int
    decode_tokens: int
    inference_reps: int
    replay_tokens: int
    max_s_per_nonce: float
    reference_budget_s: float


MIB = 1 << 20


def settings_for(quick: bool, gpu: bool) -> Settings:
    if gpu:
        return Settings(
            kernel_reps=5 if quick else 10,
            matmul_n=8192,
            copy_bytes=(512 if quick else 1024) * MIB,
            host_copy_bytes=(128 if quick else 256) * MIB,
            sweep_budget_s=10.0 if quick else 60.0,
            point_reps=2 if quick else 3,
            point_time_s=0.2 if quick else 0.5,
            final_reps=3 if quick else 5,
            final_time_s=0.5 if quick else 2.0,
            inference_batches=(1, 32) if quick else (1, 16, 64, 256),
            prompt_tokens=64 if quick else 128,
            decode_tokens=16 if quick else 32,
            inference_reps=2 if quick else 3,
            replay_tokens=32 if quick else 128,
            max_s_per_nonce=0.05 if quick else 1.0,
            reference_budget_s=15.0 if quick else 90.0,
        )
    return Settings(
        kernel_reps=5 if quick else 10,
        matmul_n=1024 if quick else 2048,
        copy_bytes=(128 if quick else 256) * MIB,
        host_copy_bytes=0,
        sweep_budget_s=4.0 if quick else 20.0,
        point_reps=2,
        point_time_s=0.2 if quick else 0.5,
        final_reps=3 if quick else 5,
        final_time_s=0.5 if quick else 2.0,
        inference_batches=(1, 8) if quick else (1, 8, 32),
        prompt_tokens=64 if quick else 128,
        decode_tokens=16 if quick else 32,
        inference_reps=2 if quick else 3,
        replay_tokens=32 if quick else 128,
        max_s_per_nonce=1.0 if quick else 2.0,
        reference_budget_s=15.0 if quick else 90.0,
    )


def select_models(config: BenchConfig) -> list[tuple[ModelSpec, bool]]:
    """The models to run, smallest first, each with whether it was named explicitly."""
    from gonka_cli.compute.models import get_spec, list_models

    if config.models:
        named = [get_spec(name) for name in config.models]
        order = [s.name for s in list_models()]
        unique = {s.name: s for s in named}
        return [(unique[n], True) for n in order if n in unique]
    if config.quick:
        return [(get_spec(n), False) for n in QUICK_MODELS]
    return [(s, False) for s in list_models()]


def plan_models(config: BenchConfig) -> list[str]:
    """The names of the models a run with `config` considers (for help and tests)."""
    return [spec.name for spec, _ in select_models(config)]
