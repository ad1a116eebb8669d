"""Wallet speed figures, measured in one run so that ratios are comparable on a noisy machine.

    python scripts/bench_wallet.py [--runs 15]

- start-up: median wall time of `gonka --version` and `gonka wallet list` against
  `python3 -c pass` (the goal is under 0.3 s above it);
- signatures per second (secp256k1, RFC 6979, low-S) and verifications per second, with
  coincurve (the fast path) and with the pure-Python ecdsa fallback;
- keystore unlock time at the default Argon2id cost, and key creation time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def median_wall(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times), statistics.pstdev(times)


def rate(fn, seconds: float = 2.0) -> float:  # type: ignore[no-untyped-def]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    from gonka_cli.crypto import hd, secp256k1
    from gonka_cli.wallet.keystore import DEFAULT_KDF, Keystore

    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GONKA_HOME": home, "NO_COLOR": "1"}
        gonka = [sys.executable, "-m", "gonka_cli"]
        base, base_sd = median_wall([sys.executable, "-c", "pass"], args.runs, env)
        version, version_sd = median_wall([*gonka, "--version"], args.runs, env)
        listing, listing_sd = median_wall([*gonka, "wallet", "list"], args.runs, env)
        print(f"start-up, median of {args.runs} runs (± stdev):")
        print(f"  python3 -c pass        {base * 1000:7.1f} ms ± {base_sd * 1000:.1f}")
        print(
            f"  gonka --version        {version * 1000:7.1f} ms ± {version_sd * 1000:.1f}  "
            f"(+{(version - base) * 1000:.0f} ms, {version / base:.2f}x)"
        )
        print(
            f"  gonka wallet list      {listing * 1000:7.1f} ms ± {listing_sd * 1000:.1f}  "
            f"(+{(listing - base) * 1000:.0f} ms, {listing / base:.2f}x)"
        )

        key = hd.derive_private_key(hd.generate_mnemonic(), hd.HDPath.bip44())
        message = os.urandom(300)
        signature = key.sign(message)
        fast: tuple[float, float] | None = None
        for backend in ("auto", "ecdsa"):
            used = secp256k1.set_backend(backend)  # type: ignore[arg-type]
            if backend == "auto" and used != "coincurve":
                print("secp256k1: coincurve is not installed; only the ecdsa fallback runs")
                continue
            signs = rate(lambda: key.sign(message))
            verifies = rate(lambda: key.public_key.verify(message, signature))
            label = "libsecp256k1 via coincurve" if used == "coincurve" else "ecdsa fallback"
            print(f"secp256k1 (signing and verifying: {label}):")
            print(f"  signatures per second      {signs:8.0f}")
            print(
                f"  verifications per second   {verifies:8.0f}  ({verifies / signs:.2f}x signing)"
            )
            if fast is None:
                fast = (signs, verifies)
            else:
                print(
                    f"  coincurve is {fast[0] / signs:.0f}x faster signing, "
                    f"{fast[1] / verifies:.0f}x verifying"
                )
        secp256k1.set_backend("auto")

        store = Keystore(Path(home) / "keys")
        password = "benchmark password"  # noqa: S105 - a throwaway key in a temp dir
        start = time.perf_counter()
        store.add_mnemonic("bench", hd.generate_mnemonic(), password, path=hd.HDPath.bip44())
        create_s = time.perf_counter() - start
        unlocks = []
        for _ in range(5):
            start = time.perf_counter()
            store.unlock("bench", password)
            unlocks.append(time.perf_counter() - start)
        print(
            f"keystore (Argon2id {DEFAULT_KDF.memory_kib // 1024} MiB, {DEFAULT_KDF.iterations} "
            f"passes, {DEFAULT_KDF.lanes} lanes):"
        )
        print(f"  unlock, median of 5        {statistics.median(unlocks) * 1000:8.1f} ms")
        print(f"  create (derive + encrypt)  {create_s * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
