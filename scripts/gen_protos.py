"""Regenerate gonka_cli/chain/proto/**/*_pb2.py from the .proto files beside them.

A dev step (needs the `dev` extra for grpcio-tools); the output is committed.

    python scripts/gen_protos.py

protoc writes imports as `from cosmos.x import y_pb2`; they are rewritten to absolute
imports inside gonka_cli so the generated modules never claim a top-level `cosmos` package.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "gonka_cli" / "chain" / "proto"
PACKAGE = "gonka_cli.chain.proto"


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={PROTO_DIR}",
        f"--mypy_out={PROTO_DIR}",
        *protos,
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    # Two top-level proto packages: cosmos (the SDK) and tendermint (CometBFT's types).
    pattern = re.compile(r"^from (cosmos|tendermint)(\.[\w.]+)? import", re.M)
    for generated in [*PROTO_DIR.rglob("*_pb2.py"), *PROTO_DIR.rglob("*_pb2.pyi")]:
        text = generated.read_text()
        text = pattern.sub(lambda m: f"from {PACKAGE}.{m.group(1)}{m.group(2) or ''} import", text)
        for top in ("cosmos", "tendermint"):
            text = text.replace(f"DESCRIPTOR, '{top}.", f"DESCRIPTOR, '{PACKAGE}.{top}.")
        generated.write_text(text)
    for directory in [PROTO_DIR, *(p for p in PROTO_DIR.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    print(f"generated {len(protos)} proto files under {PROTO_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
