"""One PoC artifact and one commitment leaf: their bytes, decoding and distance.

An artifact is the k = 12 coordinates a nonce's forward pass ends in, as fp16 little-endian
(24 bytes; base64 in JSON). A leaf of the commitment (the sparse Merkle sum tree of
`smst`) is `LE32(nonce) || artifact` (28 bytes), as on mainnet. Only the standard library is
used here, so the node and the wallet-side tools can check artifacts without loading numpy
or torch.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Sequence

from gonka_cli.errors import InvalidComputeInput

K_DIM = 12
ARTIFACT_BYTES = 2 * K_DIM
LEAF_BYTES = 4 + ARTIFACT_BYTES
NONCE_MIN = -(2**31)
NONCE_MAX = 2**31 - 1

_VECTOR = struct.Struct(f"<{K_DIM}e")
_NONCE = struct.Struct("<i")


def check_nonce(nonce: int) -> int:
    """Return `nonce` when it fits the int32 the protocol encodes, else raise."""
    if isinstance(nonce, bool) or not isinstance(nonce, int):
        raise InvalidComputeInput(f"nonce must be an integer, got {type(nonce).__name__}")
    if not NONCE_MIN <= nonce <= NONCE_MAX:
        raise InvalidComputeInput(f"nonce {nonce} is outside int32 [{NONCE_MIN}, {NONCE_MAX}]")
    return nonce


def encode_artifact(values: Sequence[float]) -> bytes:
    """Pack 12 floats as fp16 little-endian (24 bytes)."""
    if len(values) != K_DIM:
        raise InvalidComputeInput(f"an artifact has {K_DIM} values, got {len(values)}")
    try:
        return _VECTOR.pack(*(float(v) for v in values))
    except OverflowError as exc:
        raise InvalidComputeInput(f"artifact value out of fp16 range: {exc}") from None


def decode_artifact(data: bytes) -> tuple[float, ...]:
    """Unpack a 24-byte artifact; raise when it is the wrong length or not finite."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidComputeInput("an artifact must be bytes")
    if len(data) != ARTIFACT_BYTES:
        raise InvalidComputeInput(f"an artifact is {ARTIFACT_BYTES} bytes, got {len(data)}")
    values = _VECTOR.unpack(bytes(data))
    if not all(math.isfinite(v) for v in values):
        raise InvalidComputeInput("artifact holds NaN or infinite values")
    return values


def artifact_distance(a: bytes, b: bytes) -> float:
    """L2 distance between two artifacts (as decoded fp16 values)."""
    va, vb = decode_artifact(a), decode_artifact(b)
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(va, vb, strict=True)))


def leaf_data(nonce: int, artifact: bytes) -> bytes:
    """The commitment leaf for one nonce: `LE32(nonce) || artifact` (28 bytes)."""
    check_nonce(nonce)
    if len(artifact) != ARTIFACT_BYTES:
        raise InvalidComputeInput(f"an artifact is {ARTIFACT_BYTES} bytes, got {len(artifact)}")
    return _NONCE.pack(nonce) + bytes(artifact)


def parse_leaf(data: bytes) -> tuple[int, bytes]:
    """Split a leaf into `(nonce, artifact)`; raise when it is not 28 bytes."""
    if len(data) != LEAF_BYTES:
        raise InvalidComputeInput(f"a commitment leaf is {LEAF_BYTES} bytes, got {len(data)}")
    (nonce,) = _NONCE.unpack(data[:4])
    return nonce, bytes(data[4:])


def artifact_to_b64(artifact: bytes) -> str:
    return base64.b64encode(artifact).decode("ascii")


def artifact_from_b64(text: str) -> bytes:
    """Decode a base64 artifact from JSON, checking its length and values."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidComputeInput("artifact is not valid base64") from None
    decode_artifact(data)
    return data
