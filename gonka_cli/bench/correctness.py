"""The correctness check: does this device compute the artifacts a validator will accept?

Like xmrig's benchmark checksum, it catches broken hardware, drivers and libraries: the
device under test computes the artifacts of fixed nonces, the CPU computes the same nonces
in float32 in the same run (the reference), and every pair must lie closer than the network's
mismatch threshold (`validation.PocParams().dist_threshold`, the L2 distance a validator
tolerates). One artifact at or beyond it is a FAIL, reported with the worst distance: a
validator would count that nonce as a mismatch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gonka_cli.compute.artifacts import artifact_distance
from gonka_cli.errors import InvalidComputeInput

__all__ = [
    "BLOCK_HASH",
    "FIXED_NONCES",
    "PUBLIC_KEY",
    "CorrectnessCheck",
    "compare_artifacts",
]

#: The round every benchmark computes: a fixed block hash and public key (no real key).
BLOCK_HASH = "6a7e1f0c" * 8
PUBLIC_KEY = "02" + "b3" * 32
#: The nonces of the correctness check: small, large, negative and the int32 extremes.
FIXED_NONCES = (0, 1, 2, 3, 1_000_003, -17, 2**31 - 1, -(2**31))


@dataclass(frozen=True)
class CorrectnessCheck:
    """PASS when every artifact lies within `threshold` of the reference, else FAIL."""

    status: str
    nonces: int
    mismatches: int
    worst_distance: float | None
    worst_nonce: int | None
    threshold: float
    reason: str

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_artifacts(
    nonces: Sequence[int],
    candidate: Sequence[bytes],
    reference: Sequence[bytes],
    threshold: float,
) -> CorrectnessCheck:
    """Compare the device's artifacts with the reference's, nonce by nonce.

    A candidate artifact that cannot be decoded (wrong length, NaN or infinite values) is a
    mismatch at infinite distance. Raises InvalidComputeInput when the reference itself is
    malformed or the lists do not line up with `nonces`.
    """
    if not math.isfinite(threshold) or threshold <= 0:
        raise InvalidComputeInput(f"threshold must be a positive number, got {threshold!r}")
    if not nonces:
        raise InvalidComputeInput("the correctness check needs at least one nonce")
    if len(reference) != len(nonces):
        raise InvalidComputeInput(f"{len(reference)} reference artifacts for {len(nonces)} nonces")
    if len(candidate) != len(nonces):
        return CorrectnessCheck(
            status="FAIL",
            nonces=len(nonces),
            mismatches=len(nonces),
            worst_distance=None,
            worst_nonce=None,
            threshold=threshold,
            reason=f"the device returned {len(candidate)} artifacts for {len(nonces)} nonces",
        )
    worst, worst_nonce, mismatches, broken = -1.0, None, 0, 0
    for nonce, mine, theirs in zip(nonces, candidate, reference, strict=True):
        try:
            distance = artifact_distance(mine, theirs)
        except InvalidComputeInput:
            # Either side may be at fault: the reference is checked on its own below.
            artifact_distance(theirs, theirs)
            distance = math.inf
            broken += 1
        if distance >= threshold:
            mismatches += 1
        if distance > worst:
            worst, worst_nonce = distance, nonce
    if mismatches == 0:
        return CorrectnessCheck(
            status="PASS",
            nonces=len(nonces),
            mismatches=0,
            worst_distance=worst,
            worst_nonce=worst_nonce,
            threshold=threshold,
            reason=f"all {len(nonces)} artifacts within {threshold:g} of the CPU fp32 reference",
        )
    if broken:
        detail = f"{broken} artifact(s) hold NaN, infinite or malformed values"
    else:
        detail = f"worst distance {worst:.4f} at nonce {worst_nonce}"
    return CorrectnessCheck(
        status="FAIL",
        nonces=len(nonces),
        mismatches=mismatches,
        worst_distance=None if math.isinf(worst) else worst,
        worst_nonce=worst_nonce,
        threshold=threshold,
        reason=f"{mismatches} of {len(nonces)} artifacts at or beyond {threshold:g} from the "
        f"CPU fp32 reference ({detail}): validators would reject this device's work; check the "
        "driver, the GPU's clocks and temperature",
    )
