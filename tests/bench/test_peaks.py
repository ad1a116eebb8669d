"""The table of known cards and finding a card by the name its driver reports."""

from __future__ import annotations

import pytest

from gonka_cli.bench.peaks import KNOWN_CARDS, lookup_peaks, pcie_peak_gbps

GIB = 1 << 30


@pytest.mark.parametrize(
    ("name", "memory", "key"),
    [
        ("NVIDIA H100 80GB HBM3", None, "h100-sxm"),
        ("NVIDIA H100 SXM5 80GB", None, "h100-sxm"),
        ("NVIDIA H100 PCIe", None, "h100-pcie"),
        ("NVIDIA H100 NVL", None, "h100-nvl"),
        ("NVIDIA H200", None, "h200-sxm"),
        ("NVIDIA H200 NVL", None, "h200-nvl"),
        ("NVIDIA A100-SXM4-40GB", None, "a100-sxm-40gb"),
        ("NVIDIA A100-SXM4-80GB", None, "a100-sxm-80gb"),
        ("NVIDIA A100-PCIE-40GB", None, "a100-pcie-40gb"),
        ("NVIDIA A100 80GB PCIe", None, "a100-pcie-80gb"),
        ("NVIDIA A100-SXM", 80 * GIB, "a100-sxm-80gb"),
        ("NVIDIA A100-SXM", 40 * GIB, "a100-sxm-40gb"),
        ("NVIDIA L40S", None, "l40s"),
        ("NVIDIA GeForce RTX 3090", None, "rtx-3090"),
        ("NVIDIA GeForce RTX 4090", None, "rtx-4090"),
        ("NVIDIA GeForce RTX 5090", None, "rtx-5090"),
        ("nvidia geforce rtx 4090", None, "rtx-4090"),
    ],
)
def test_driver_names_find_their_card(name: str, memory: int | None, key: str) -> None:
    card = lookup_peaks(name, memory)
    assert card is not None and card.key == key


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA GeForce RTX 3090 Ti",  # faster than a 3090
        "NVIDIA GeForce RTX 4090 D",  # fewer SMs than a 4090
        "NVIDIA GeForce RTX 5090 D",
        "NVIDIA GeForce RTX 4090 Laptop GPU",
        "NVIDIA L40",  # no S: other figures
        "NVIDIA A100-SXM",  # 40 or 80 GB? not guessed without the memory size
        "NVIDIA H200 PCIe",  # no such product
        "AMD Instinct MI300X",
        "Tesla V100-SXM2-16GB",
        "",
    ],
)
def test_other_names_are_not_guessed(name: str) -> None:
    assert lookup_peaks(name) is None


def test_datasheet_figures() -> None:
    h100 = KNOWN_CARDS["h100-sxm"]
    # Datasheet: 1,979 TFLOPS bf16 and 989 TF32 "with sparsity": the dense figures are half.
    assert (h100.bf16_tflops, h100.fp16_tflops, h100.tf32_tflops) == (989.4, 989.4, 494.7)
    assert (h100.fp32_tflops, h100.memory_bandwidth_gbps) == (66.9, 3350.0)
    assert KNOWN_CARDS["h200-sxm"].memory_bandwidth_gbps == 4800.0
    assert KNOWN_CARDS["h200-sxm"].bf16_tflops == h100.bf16_tflops
    assert KNOWN_CARDS["a100-sxm-80gb"].memory_bandwidth_gbps == 2039.0
    assert KNOWN_CARDS["a100-pcie-80gb"].memory_bandwidth_gbps == 1935.0
    assert KNOWN_CARDS["l40s"].bf16_tflops == 362.05
    # GeForce: FP16 with FP32 accumulation (what torch runs) is half the FP16-accumulate rate.
    assert KNOWN_CARDS["rtx-4090"].fp16_tflops == 165.2
    assert KNOWN_CARDS["rtx-3090"].fp16_tflops == 71.0
    assert KNOWN_CARDS["rtx-5090"].memory_bandwidth_gbps == 1792.0


@pytest.mark.parametrize("card", list(KNOWN_CARDS.values()), ids=lambda c: c.key)
def test_every_card_is_consistent(card: object) -> None:
    from gonka_cli.bench.peaks import CardPeaks

    assert isinstance(card, CardPeaks)
    assert card.fp16_tflops == card.bf16_tflops
    # Tensor cores run TF32 at half the 16-bit rate (the L40S datasheet rounds: 183 vs 181).
    assert card.tf32_tflops == pytest.approx(card.fp16_tflops / 2, rel=0.02)
    assert card.fp32_tflops <= card.tf32_tflops
    assert 500 <= card.memory_bandwidth_gbps <= 5000
    assert card.matmul_peak_tflops("bf16") == card.bf16_tflops
    assert card.matmul_peak_tflops("tf32") == card.tf32_tflops
    assert card.matmul_peak_tflops("int8") is None
    assert card.to_dict()["key"] == card.key


def test_pcie_link_peaks() -> None:
    assert pcie_peak_gbps(5, 16) == 63.0
    assert pcie_peak_gbps(4, 16) == 31.5
    assert pcie_peak_gbps(3, 8) == 7.9
    assert pcie_peak_gbps(None, 16) is None
    assert pcie_peak_gbps(4, None) is None
    assert pcie_peak_gbps(9, 16) is None
    assert pcie_peak_gbps(4, 0) is None
