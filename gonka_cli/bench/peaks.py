"""Datasheet peaks of known NVIDIA cards, and finding a card by the name the driver reports.

Figures are NVIDIA's published ones, **dense** (no structured sparsity), in TFLOP/s and GB/s:

- `fp16_tflops` / `bf16_tflops`: the tensor-core peak with FP32 accumulation, which is what
  `torch.matmul` runs in fp16 and bf16 (cuBLAS accumulates in FP32). GeForce cards run FP32
  accumulation at half their FP16-accumulate rate; the data-centre cards do not.
- `tf32_tflops`: the TF32 tensor-core peak (fp32 matmuls with TF32 allowed).
- `fp32_tflops`: the FP32 CUDA-core peak (fp32 matmuls with TF32 disallowed).
- `memory_bandwidth_gbps`: the device memory bandwidth.

Sources (cited per card in `source`): the H100, H200, A100 and L40S datasheets, the NVIDIA
Hopper, Ampere (GA102), Ada Lovelace and RTX Blackwell architecture whitepapers. Datasheets
print sparse figures for tensor cores ("with sparsity"); the dense figure is half.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["KNOWN_CARDS", "CardPeaks", "lookup_peaks", "pcie_peak_gbps"]


@dataclass(frozen=True)
class CardPeaks:
    """One card's datasheet peaks (dense)."""

    key: str
    name: str
    fp32_tflops: float
    tf32_tflops: float
    fp16_tflops: float
    bf16_tflops: float
    memory_bandwidth_gbps: float
    source: str

    def matmul_peak_tflops(self, dtype: str) -> float | None:
        """The peak for a matmul in `dtype` ("fp32", "tf32", "fp16", "bf16")."""
        return {
            "fp32": self.fp32_tflops,
            "tf32": self.tf32_tflops,
            "fp16": self.fp16_tflops,
            "bf16": self.bf16_tflops,
        }.get(dtype)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _card(
    key: str,
    name: str,
    fp32: float,
    tf32: float,
    fp16: float,
    bandwidth: float,
    source: str,
    bf16: float | None = None,
) -> CardPeaks:
    return CardPeaks(key, name, fp32, tf32, fp16, fp16 if bf16 is None else bf16, bandwidth, source)


_HOPPER = "NVIDIA H100 Tensor Core GPU datasheet and Hopper architecture whitepaper"
_H200 = "NVIDIA H200 Tensor Core GPU datasheet"
_A100 = "NVIDIA A100 Tensor Core GPU datasheet"
_GA102 = "NVIDIA Ampere GA102 GPU architecture whitepaper (GeForce RTX 3090)"
_ADA = "NVIDIA Ada Lovelace GPU architecture whitepaper (GeForce RTX 4090)"
_RTX_BLACKWELL = "NVIDIA RTX Blackwell GPU architecture whitepaper (GeForce RTX 5090)"

#: The known cards, by key.
KNOWN_CARDS: dict[str, CardPeaks] = {
    c.key: c
    for c in (
        _card("h100-sxm", "H100 SXM5 80GB", 66.9, 494.7, 989.4, 3350.0, _HOPPER),
        _card("h100-pcie", "H100 PCIe 80GB", 51.2, 378.0, 756.0, 2000.0, _HOPPER),
        _card("h100-nvl", "H100 NVL 94GB", 60.0, 417.5, 835.5, 3900.0, _HOPPER),
        _card("h200-sxm", "H200 SXM 141GB", 66.9, 494.7, 989.4, 4800.0, _H200),
        _card("h200-nvl", "H200 NVL 141GB", 60.0, 417.5, 835.5, 4800.0, _H200),
        _card("a100-sxm-40gb", "A100 SXM4 40GB", 19.5, 156.0, 312.0, 1555.0, _A100),
        _card("a100-sxm-80gb", "A100 SXM4 80GB", 19.5, 156.0, 312.0, 2039.0, _A100),
        _card("a100-pcie-40gb", "A100 PCIe 40GB", 19.5, 156.0, 312.0, 1555.0, _A100),
        _card("a100-pcie-80gb", "A100 PCIe 80GB", 19.5, 156.0, 312.0, 1935.0, _A100),
        _card("l40s", "L40S 48GB", 91.6, 183.0, 362.05, 864.0, "NVIDIA L40S datasheet"),
        _card("rtx-3090", "GeForce RTX 3090", 35.6, 35.6, 71.0, 936.0, _GA102),
        _card("rtx-4090", "GeForce RTX 4090", 82.6, 82.6, 165.2, 1008.0, _ADA),
        _card("rtx-5090", "GeForce RTX 5090", 104.8, 104.8, 209.5, 1792.0, _RTX_BLACKWELL),
    )
}

_GIB = 1 << 30


def _normalize(name: str) -> str:
    """Upper case, separators as single spaces, vendor words dropped."""
    text = re.sub(r"[-_/(),]+", " ", name.upper())
    words = [w for w in text.split() if w not in ("NVIDIA", "GEFORCE", "TESLA")]
    return " ".join(words)


def lookup_peaks(name: str, memory_total_bytes: int | None = None) -> CardPeaks | None:
    """The known card the driver's device `name` is, or None.

    `name` is what NVML or torch reports ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB",
    "NVIDIA GeForce RTX 4090"). Variants with other figures are not matched: "RTX 3090 Ti",
    "RTX 4090 D", laptop GPUs, "L40" (without S). `memory_total_bytes` tells an A100 40GB from
    an 80GB when the name does not.
    """
    if not isinstance(name, str):
        return None
    text = _normalize(name)
    words = set(text.split())
    if "LAPTOP" in words or "MOBILE" in words or "MAX Q" in text:
        return None
    if re.fullmatch(r"RTX (3090|4090|5090)", text):
        return KNOWN_CARDS[f"rtx-{text[4:]}"]
    if "L40S" in words:
        return KNOWN_CARDS["l40s"]
    for family in ("H100", "H200"):
        if family in words:
            if "NVL" in words:
                return KNOWN_CARDS[f"{family.lower()}-nvl"]
            if family == "H100" and "PCIE" in words:
                return KNOWN_CARDS["h100-pcie"]
            if family == "H200" and "PCIE" in words:
                return None  # no such product: do not guess
            return KNOWN_CARDS[f"{family.lower()}-sxm"]
    if "A100" in words:
        form = "pcie" if "PCIE" in words else "sxm"
        if re.search(r"\b80 ?GB\b", text):
            size = "80gb"
        elif re.search(r"\b40 ?GB\b", text):
            size = "40gb"
        elif memory_total_bytes is not None:
            size = "80gb" if memory_total_bytes > 60 * _GIB else "40gb"
        else:
            return None
        return KNOWN_CARDS[f"a100-{form}-{size}"]
    return None


#: Usable bandwidth of one PCIe lane in one direction, GB/s, by generation (after line coding:
#: 8b/10b for generations 1-2, 128b/130b for 3-5; generation 6 uses FLIT mode).
_PCIE_LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


def pcie_peak_gbps(generation: int | None, width: int | None) -> float | None:
    """The one-direction peak of a PCIe link (e.g. 63.0 GB/s for Gen5 x16), or None."""
    if generation is None or width is None or generation not in _PCIE_LANE_GBPS or width < 1:
        return None
    return round(_PCIE_LANE_GBPS[generation] * width, 1)
