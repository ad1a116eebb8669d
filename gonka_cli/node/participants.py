"""Participants: the keys registered to mine, what they serve, and whether they are alive.

Registration is durable (the `participants` table); liveness (`last_seen`, `polling`),
`busy` and `strikes` live in memory and start afresh at every start of the node.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gonka_cli.errors import InputError
from gonka_cli.node.context import NetworkContext
from gonka_cli.protocol import ErrorCode, Refusal, RegisterRequest
from gonka_cli.storage import transaction

log = logging.getLogger(__name__)

MAX_MODELS = RegisterRequest.MAX_MODELS
MAX_DEVICES = RegisterRequest.MAX_DEVICES
MAX_DEVICE_JSON_BYTES = 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    address TEXT PRIMARY KEY,
    pubkey BLOB NOT NULL,
    models TEXT NOT NULL,          -- JSON list of model names
    devices TEXT NOT NULL,         -- JSON list of device summaries
    registered_height INTEGER NOT NULL,
    penalties INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass
class Participant:
    address: str
    pubkey: bytes
    models: tuple[str, ...]
    devices: tuple[dict[str, Any], ...]
    registered_height: int
    penalties: int = 0
    last_seen: float = 0.0
    busy: int = 0  # inference tasks assigned and not answered
    polling: int = 0  # long polls now waiting: a participant in one is responsive
    strikes: int = 0  # tasks that ran past their deadline

    @property
    def capacity(self) -> int:
        return max(1, len(self.devices))

    @property
    def pubkey_hex(self) -> str:
        return self.pubkey.hex()

    def seen(self) -> None:
        self.last_seen = time.monotonic()

    def responsive(self, timeout_s: float, now: float | None = None) -> bool:
        """In a long poll now, or seen within `timeout_s`."""
        now = time.monotonic() if now is None else now
        return bool(self.polling or now - self.last_seen <= timeout_s)


class Participants(Mapping[str, Participant]):
    """The registered participants by address (a read-only mapping; `register` changes it)."""

    def __init__(self, ctx: NetworkContext) -> None:
        self._ctx = ctx
        self._by_address: dict[str, Participant] = {}
        for row in ctx.db.execute(
            "SELECT address, pubkey, models, devices, registered_height, penalties "
            "FROM participants"
        ):
            self._by_address[row[0]] = Participant(
                row[0],
                bytes(row[1]),
                tuple(json.loads(row[2])),
                tuple(json.loads(row[3])),
                row[4],
                row[5],
            )

    def __getitem__(self, address: str) -> Participant:
        return self._by_address[address]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_address)

    def __len__(self) -> int:
        return len(self._by_address)

    def require(self, address: str) -> Participant:
        """The participant `address`; `Refusal(not_registered)` when it is not one."""
        found = self._by_address.get(address)
        if found is None:
            raise Refusal(
                ErrorCode.NOT_REGISTERED,
                f"{address} is not a registered participant: POST /v1/participants first",
            )
        return found

    def pubkey_of(self, address: str) -> bytes | None:
        """The key a request from `address` is checked against: the registered one, else the
        one its account holds on the chain."""
        participant = self._by_address.get(address)
        if participant is not None:
            return participant.pubkey
        account = self._ctx.ledger.account(address)
        return account.pubkey if account and account.pubkey else None

    def serves(self, model: str) -> bool:
        return any(model in p.models for p in self._by_address.values())

    def register(
        self, address: str, pubkey: bytes, models: Sequence[str], devices: Sequence[Any]
    ) -> Participant:
        """Register `address`, or replace its models and devices (keeping its registration
        height and penalties)."""
        from gonka_cli.compute.models import get_spec

        if not 1 <= len(models) <= MAX_MODELS:
            raise Refusal(
                ErrorCode.BAD_REQUEST, f"models must be a list of 1 to {MAX_MODELS} model names"
            )
        for name in models:
            try:
                get_spec(name)
            except InputError as exc:
                raise Refusal(ErrorCode.UNKNOWN_MODEL, str(exc)) from None
        if len(devices) > MAX_DEVICES:
            raise Refusal(
                ErrorCode.BAD_REQUEST, f"devices must be a list of at most {MAX_DEVICES} objects"
            )
        for device in devices:
            if not isinstance(device, dict) or len(json.dumps(device)) > MAX_DEVICE_JSON_BYTES:
                raise Refusal(
                    ErrorCode.BAD_REQUEST, "each device must be a JSON object of at most 1 KiB"
                )
        existing = self._by_address.get(address)
        height = existing.registered_height if existing else self._ctx.ledger.height
        penalties = existing.penalties if existing else 0
        served = tuple(sorted(set(models)))
        with transaction(self._ctx.db):
            self._ctx.db.execute(
                "INSERT OR REPLACE INTO participants VALUES (?, ?, ?, ?, ?, ?)",
                (
                    address,
                    pubkey,
                    json.dumps(list(served)),
                    json.dumps(list(devices)),
                    height,
                    penalties,
                ),
            )
        participant = Participant(
            address, pubkey, served, tuple(devices), height, penalties, last_seen=time.monotonic()
        )
        if existing is not None:
            participant.busy, participant.strikes = existing.busy, existing.strikes
        self._by_address[address] = participant
        log.info("participant %s registered (%s)", address, ", ".join(participant.models))
        return participant

    def penalise(self, address: str) -> None:
        """One more failed replay for `address`; call it inside the caller's transaction."""
        participant = self._by_address.get(address)
        if participant is None:
            return
        self._ctx.db.execute(
            "UPDATE participants SET penalties = ? WHERE address = ?",
            (participant.penalties + 1, address),
        )
        participant.penalties += 1

    def candidates(self, model: str, exclude: set[str]) -> list[Participant]:
        """Who may take a task for `model` now: serves it, responsive, below capacity."""
        now = time.monotonic()
        timeout = self._ctx.params.participant_timeout_s
        return [
            p
            for p in self._by_address.values()
            if model in p.models
            and p.address not in exclude
            and p.busy < p.capacity
            and p.responsive(timeout, now)
        ]
