"""Device statistics: speed, duty cycle and the speed-collapse rule.

Every figure comes from the workers' own timing of each task (`worker.Done.started` and
`.finished`, on the machine-wide monotonic clock), never from the miner's view of it:

- **speed** — `DeviceStats.rate()`: nonces per second of wall time over the last seconds,
  what the device delivers; `compute_rate()`: nonces per second of compute over the last
  chunks, what it can do (this sizes the next chunk);
- **duty cycle** — `duty_cycle()`: the share of a window's wall time the devices spent
  computing, summed over the busy intervals each device recorded;
- **speed collapse** — `record_chunk()` answers True when a device's compute rate has stayed
  below `COLLAPSE_SHARE` of its best for `COLLAPSE_WINDOW_S` (a wedged driver context, a
  throttled card): the pool then restarts its worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gonka_cli.miner.devices import DeviceReading, MiningDevice

__all__ = [
    "COLLAPSE_SHARE",
    "COLLAPSE_WINDOW_S",
    "DeviceStats",
    "GeneratePhase",
    "duty_cycle",
    "overlap",
]

#: A device whose PoC speed stays below this share of its best for `COLLAPSE_WINDOW_S` is
#: restarted.
COLLAPSE_SHARE = 0.2
COLLAPSE_WINDOW_S = 20.0
#: Busy intervals kept per device: enough for the longest generate phase at 4 chunks/s.
_BUSY_KEPT = 4096


@dataclass
class DeviceStats:
    """What one device has done and how it is doing (mutated under the pool's lock)."""

    device: MiningDevice
    state: str = "starting"
    nonces: int = 0
    restarts: int = 0
    reading: DeviceReading = field(default_factory=DeviceReading)
    last_error: str | None = None
    #: A standing problem the user must see (an unreadable temperature under --temp-limit).
    warning: str | None = None
    #: (start, finish, nonces) of recent PoC chunks, for the speeds shown and checked.
    recent: deque[tuple[float, float, int]] = field(default_factory=lambda: deque(maxlen=64))
    best_rate: float = 0.0
    slow_since: float | None = None
    busy: list[tuple[float, float]] = field(default_factory=list)

    def rate(self, now: float, window_s: float = 5.0) -> float:
        """Nonces per second of wall time over the last `window_s` (what the device delivers)."""
        chunks = [(s, n) for s, f, n in self.recent if now - f <= window_s]
        if not chunks:
            return 0.0
        span = min(window_s, now - min(s for s, _ in chunks))
        return sum(n for _, n in chunks) / span if span > 0 else 0.0

    def compute_rate(self) -> float:
        """Nonces per second of compute over the last chunks (what the device can do)."""
        chunks = list(self.recent)[-8:]
        busy = sum(f - s for s, f, _ in chunks)
        return sum(n for _, _, n in chunks) / busy if busy > 0 else 0.0

    def record_busy(self, started: float, finished: float) -> None:
        """A task of any kind kept the device busy from `started` to `finished`."""
        self.busy.append((started, finished))
        if len(self.busy) > _BUSY_KEPT:
            del self.busy[: _BUSY_KEPT // 2]

    def record_chunk(self, started: float, finished: float, nonces: int) -> bool:
        """Note a finished PoC chunk; True when the device's speed has collapsed: its
        compute rate stayed under `COLLAPSE_SHARE` of its best for `COLLAPSE_WINDOW_S`."""
        self.nonces += nonces
        self.recent.append((started, finished, nonces))
        self.record_busy(started, finished)
        if len(self.recent) < 8:
            return False
        rate = self.compute_rate()
        self.best_rate = max(self.best_rate, rate)
        if rate >= COLLAPSE_SHARE * self.best_rate:
            self.slow_since = None
            return False
        self.slow_since = self.slow_since or finished
        if finished - self.slow_since < COLLAPSE_WINDOW_S:
            return False
        self.last_error = f"speed collapsed to {rate:.0f} nonces/s from {self.best_rate:.0f}"
        self.slow_since = None
        self.recent.clear()
        return True

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.device.id,
            "name": self.device.name,
            "state": self.state,
            "nonces": self.nonces,
            "nonces_per_second": round(self.rate(now), 1),
            "temperature_c": self.reading.temperature_c,
            "power_w": self.reading.power_w,
            "utilization_pct": self.reading.utilization_pct,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "warning": self.warning,
        }


def overlap(interval: tuple[float, float], window: tuple[float, float]) -> float:
    """Seconds of `interval` inside `window`."""
    return max(0.0, min(interval[1], window[1]) - max(interval[0], window[0]))


def duty_cycle(stats: Iterable[DeviceStats], window: tuple[float, float]) -> tuple[float, float]:
    """`(busy_s, share)`: the devices' compute time inside `window`, and its share of the
    window's wall time on every device."""
    devices = list(stats)
    busy = sum(overlap(interval, window) for s in devices for interval in s.busy)
    seconds = window[1] - window[0]
    share = busy / (seconds * len(devices)) if seconds > 0 and devices else 0.0
    return busy, share


@dataclass(frozen=True)
class GeneratePhase:
    """How one generate phase went: the duty cycle and speed figures."""

    epoch: int
    seconds: float
    busy_s: float
    duty_cycle: float
    nonces: int
    nonces_per_second: float
    committed: int
    full_phase: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "seconds": round(self.seconds, 3),
            "busy_s": round(self.busy_s, 3),
            "duty_cycle": round(self.duty_cycle, 4),
            "nonces": self.nonces,
            "nonces_per_second": round(self.nonces_per_second, 1),
            "committed": self.committed,
            "full_phase": self.full_phase,
        }
