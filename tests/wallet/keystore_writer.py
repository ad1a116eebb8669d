"""A child process for the keystore's crash and race tests (tests/wallet/test_keystore.py).

    python keystore_writer.py many KEYS_DIR COUNT PASSWORD
        Add keys k0000 .. k{COUNT-1} (skipping names that exist) and print "done".
    python keystore_writer.py one KEYS_DIR NAME SEED PASSWORD GO_FILE
        Print "ready", wait until GO_FILE exists, add the key of SEED as NAME and print
        "ok" (exit 0) or "exists" (exit 3).

Keys are derived from their name or seed, so the parent can tell which key a file holds.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import KeyExists
from gonka_cli.wallet.keystore import KdfParams, Keystore

LIGHT_KDF = KdfParams(1024, 1, 1)


def key_for(seed: str) -> PrivateKey:
    return PrivateKey(hashlib.sha256(f"keystore-writer/{seed}".encode()).digest())


def many(directory: Path, count: int, password: str) -> int:
    keystore = Keystore(directory, LIGHT_KDF)
    for i in range(count):
        name = f"k{i:04d}"
        if not keystore.exists(name):
            keystore.add_private_key(name, key_for(name), password)
    print("done", flush=True)
    return 0


def one(directory: Path, name: str, seed: str, password: str, go_file: Path) -> int:
    keystore = Keystore(directory, LIGHT_KDF)
    private_key = key_for(seed)
    print("ready", flush=True)
    while not go_file.exists():
        time.sleep(0.0005)
    try:
        keystore.add_private_key(name, private_key, password)
    except KeyExists:
        print("exists", flush=True)
        return 3
    print("ok", flush=True)
    return 0


def main(argv: list[str]) -> int:
    mode, directory = argv[0], Path(argv[1])
    if mode == "many":
        return many(directory, int(argv[2]), argv[3])
    if mode == "one":
        return one(directory, argv[2], argv[3], argv[4], Path(argv[5]))
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
