"""Two saved runs side by side (`gonka bench compare A.json B.json`).

Rows are matched by what they measure: kernels by (device, kernel, dtype), PoC by (device,
model, backend), inference by (device, model, batch size), replay by (device, model),
correctness by (device, model, backend). Devices are matched by id ("cpu", "gpu:0"), so two
machines' first GPUs line up. `ratio` is B / A (above 1: B is faster); it is None where a side
lacks the figure or the figure is not a rate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gonka_cli.bench.results import load_result
from gonka_cli.validate import is_number

__all__ = ["COMPARE_SCHEMA", "Comparison", "ComparisonRow", "compare_files", "compare_results"]

COMPARE_SCHEMA = "gonka.bench.compare/1"

_UNIT_SCALE = {"TFLOP/s": 1e12, "GFLOP/s": 1e9, "GB/s": 1e9}


@dataclass(frozen=True)
class ComparisonRow:
    section: str
    metric: str
    unit: str
    a: float | str | None
    b: float | str | None
    ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("a", "b", "ratio"):
            if isinstance(data[key], float):
                data[key] = float(f"{data[key]:.6g}")
        return data


@dataclass(frozen=True)
class Comparison:
    a: dict[str, Any]
    b: dict[str, Any]
    rows: tuple[ComparisonRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": COMPARE_SCHEMA,
            "a": self.a,
            "b": self.b,
            "rows": [r.to_dict() for r in self.rows],
        }


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _summary(data: dict[str, Any], path: str) -> dict[str, Any]:
    devices = [
        f"{_text(d.get('id'))}: {_text(d.get('name'))}"
        for d in data.get("devices", [])
        if isinstance(d, dict)
    ]
    return {
        "file": path,
        "created_at": data.get("created_at"),
        "gonka_version": data.get("gonka_version"),
        "quick": data.get("quick"),
        "complete": data.get("complete"),
        "devices": devices,
    }


def _index(rows: list[dict[str, Any]], *fields: str) -> dict[tuple[str, ...], dict[str, Any]]:
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(_text(row.get(f)) for f in fields)
        out.setdefault(key, row)
    return out


def _rate_rows(
    section: str,
    a_rows: list[dict[str, Any]],
    b_rows: list[dict[str, Any]],
    fields: tuple[str, ...],
    metrics: tuple[tuple[str, str, str], ...],
    label: Any,
) -> list[ComparisonRow]:
    """One comparison row per key and metric (field, unit, suffix)."""
    a_index, b_index = _index(a_rows, *fields), _index(b_rows, *fields)
    keys = list(a_index) + [k for k in b_index if k not in a_index]
    out = []
    for key in keys:
        ra, rb = a_index.get(key, {}), b_index.get(key, {})
        for field, unit, suffix in metrics:
            row_unit = unit or _text(ra.get("unit") or rb.get("unit"))
            va = _scaled(_number(ra.get(field)), _text(ra.get("unit")) or row_unit, row_unit)
            vb = _scaled(_number(rb.get(field)), _text(rb.get("unit")) or row_unit, row_unit)
            ratio = vb / va if va and vb is not None else None
            out.append(ComparisonRow(section, label(key) + suffix, row_unit, va, vb, ratio))
    return out


def _scaled(value: float | None, unit: str, target: str) -> float | None:
    """A rate in `unit` expressed in `target` (TFLOP/s <-> GFLOP/s)."""
    if value is None or unit == target:
        return value
    if unit in _UNIT_SCALE and target in _UNIT_SCALE:
        return value * _UNIT_SCALE[unit] / _UNIT_SCALE[target]
    return value


def compare_results(
    a: dict[str, Any], b: dict[str, Any], a_name: str = "A", b_name: str = "B"
) -> Comparison:
    """Line up two run results (as `load_result` returns them)."""
    rows: list[ComparisonRow] = []
    rows += _rate_rows(
        "kernels",
        a["kernels"],
        b["kernels"],
        ("device", "kernel", "dtype"),
        (("median", "", ""),),
        lambda k: " ".join(p for p in (k[0], k[1].replace("_", " "), k[2]) if p),
    )
    rows += _rate_rows(
        "poc",
        a["poc"],
        b["poc"],
        ("device", "model", "backend"),
        (("nonces_per_minute", "nonces/min", ""),),
        lambda k: f"{k[0]} {k[1]} {k[2]}",
    )
    rows += _rate_rows(
        "inference",
        a["inference"],
        b["inference"],
        ("device", "model", "batch_size"),
        (
            ("prefill_tokens_per_second", "tokens/s", " prefill"),
            ("decode_tokens_per_second", "tokens/s", " decode"),
        ),
        lambda k: f"{k[0]} {k[1]} batch {k[2]}",
    )
    rows += _rate_rows(
        "replay",
        a["replay"],
        b["replay"],
        ("device", "model"),
        (("replay_tokens_per_second", "tokens/s", ""),),
        lambda k: f"{k[0]} {k[1]} replay",
    )
    a_checks = _index(a["correctness"], "device", "model", "backend")
    b_checks = _index(b["correctness"], "device", "model", "backend")
    for key in list(a_checks) + [k for k in b_checks if k not in a_checks]:
        rows.append(
            ComparisonRow(
                "correctness",
                " ".join(key),
                "",
                _text(a_checks.get(key, {}).get("status")) or None,
                _text(b_checks.get(key, {}).get("status")) or None,
                None,
            )
        )
    share_a = a.get("share") or {}
    share_b = b.get("share") or {}
    # The rate the share was estimated from (runs saved before it was recorded: N/A).
    wa, wb = _number(share_a.get("nonces_per_minute")), _number(share_b.get("nonces_per_minute"))
    if wa is not None or wb is not None:
        rows.append(
            ComparisonRow(
                "share",
                "nonces_per_minute",
                "nonces/min",
                wa,
                wb,
                wb / wa if wa and wb is not None else None,
            )
        )
    return Comparison(_summary(a, a_name), _summary(b, b_name), tuple(rows))


def compare_files(a: Path, b: Path) -> Comparison:
    """Load two saved runs and compare them; InputError names a file that is not one."""
    return compare_results(load_result(a), load_result(b), str(a), str(b))
