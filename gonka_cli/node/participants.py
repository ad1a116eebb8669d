"""Participants: the keys registered to mine, what they serve, whether they are alive, and
the stake that they can lose.

Registration is durable (the `participants` table); liveness (`last_seen`, `polling`),
`busy` and `strikes` live in memory and start afresh at every start of the node.

**Stake.** Registering locks `collateral_ngonka` from the participant's wallet into the
`collateral` module account (a system transaction, `collateral_locks`); registering again
locks only what is missing. Settlements burn part of it for a PoC fraud and for each failed
replay, and return the rest after a leave request and `unbonding_epochs` (`stake_moves`,
written by `settlement`). The collateral held for an address is its locks that are in a
block or still in the mempool, less its moves: a lock lost with the mempool (the node died
before its block) never counts, and registering again locks anew. A participant is
*eligible* (may commit, be dispatched, validate and be paid) while it holds collateral, is
not jailed (a `fraud` or `invalid` PoC verdict in the last `jail_epochs` epochs, its own
included) and has not asked to leave.
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
from gonka_cli.node.epochs import GNK
from gonka_cli.node.ledger import COLLATERAL_ADDRESS, FundsShort
from gonka_cli.protocol import ErrorCode, Refusal, RegisterRequest, StakeInfo, StakeMove
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
CREATE TABLE IF NOT EXISTS collateral_locks (
    txhash TEXT PRIMARY KEY,       -- the system transaction that moved it
    address TEXT NOT NULL,
    amount INTEGER NOT NULL,       -- ngonka
    epoch INTEGER NOT NULL         -- the epoch of the registration
);
CREATE INDEX IF NOT EXISTS collateral_locks_by_address ON collateral_locks (address);
CREATE TABLE IF NOT EXISTS stake_moves (
    epoch INTEGER NOT NULL,        -- the settlement that made it
    address TEXT NOT NULL,
    kind TEXT NOT NULL,            -- fraud_slash | validation_slash | return
    amount INTEGER NOT NULL,       -- ngonka out of the collateral account
    subject TEXT                   -- the inference id of a failed validation
);
CREATE INDEX IF NOT EXISTS stake_moves_by_address ON stake_moves (address, epoch);
CREATE TABLE IF NOT EXISTS stake_exits (
    address TEXT PRIMARY KEY,
    leave_epoch INTEGER NOT NULL,  -- the epoch of the leave request: no weight from it on
    release_epoch INTEGER NOT NULL -- the settlement of this epoch returns the collateral
);
"""

#: PoC verdicts that slash and jail: a fraud, and proofs that do not prove the commit.
JAILING_STATUSES = ("fraud", "invalid")


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
    lock_tx: str = ""  # the collateral lock its latest registration made ("" when none)

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
        #: Eligibility by (address, epoch), valid for one height (see `eligible`).
        self._eligible: dict[tuple[str, int], bool] = {}
        self._eligible_height = -1
        #: address -> the epochs of its failed replays (the window of `dispatch_weight`).
        self._failures: dict[str, list[int]] = {}
        for executor, epoch in ctx.db.execute(
            "SELECT executor, COALESCE(selection_epoch, epoch) FROM inferences "
            "WHERE validation = 'failed' AND executor != ''"
        ):
            self._failures.setdefault(executor, []).append(int(epoch))
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
        """Whether a participant eligible now serves `model`."""
        epoch = self._ctx.view().epoch
        return any(
            model in p.models and self.eligible(p.address, epoch) for p in self._by_address.values()
        )

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
        lock_tx, shortfall = self._lock_collateral(address)
        with transaction(self._ctx.db):
            if lock_tx:
                # OR REPLACE: a lock lost with the mempool and made again can hash the same
                # (same sender, amount and node sequence).
                self._ctx.db.execute(
                    "INSERT OR REPLACE INTO collateral_locks VALUES (?, ?, ?, ?)",
                    (lock_tx, address, shortfall, self._ctx.view().epoch),
                )
            # Registering again rebonds: a pending leave is called off.
            self._ctx.db.execute("DELETE FROM stake_exits WHERE address = ?", (address,))
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
        participant.lock_tx = lock_tx
        self._by_address[address] = participant
        self.stake_changed()
        log.info("participant %s registered (%s)", address, ", ".join(participant.models))
        return participant

    # -- stake ---------------------------------------------------------------------------

    def _lock_collateral(self, address: str) -> tuple[str, int]:
        """Lock what `address` lacks of the collateral; returns the transaction and amount
        (`""`, 0 when nothing is missing). Refuses with `insufficient_collateral`."""
        required = self._ctx.params.collateral_ngonka
        shortfall = required - self.collateral(address)
        if shortfall <= 0:
            return "", 0
        try:
            txhash = self._ctx.ledger.submit_system(
                [(address, COLLATERAL_ADDRESS, shortfall)], f"participant {address} collateral"
            )
        except FundsShort:
            spendable = self._ctx.ledger.spendable(address)
            raise Refusal(
                ErrorCode.INSUFFICIENT_COLLATERAL,
                f"registering locks a collateral of {_gnk(required)} ({required} ngonka); "
                f"{address} lacks {shortfall} ngonka and can spend {spendable} ngonka: fund "
                "it first (on a devnet: `gonka wallet faucet <wallet>`, or POST /faucet) and "
                "wait for the next block",
            ) from None
        return txhash, shortfall

    def stake_changed(self) -> None:
        """Forget cached eligibility (a lock, a leave or a settlement's moves changed it)."""
        self._eligible.clear()

    def _counted_locks(self, address: str) -> list[tuple[str, int, bool]]:
        """`(txhash, amount, in_block)` of the locks of `address` that count: in a block
        (and successful) or still in the mempool."""
        ledger = self._ctx.ledger
        found = []
        for txhash, amount in self._ctx.db.execute(
            "SELECT txhash, amount FROM collateral_locks WHERE address = ?", (address,)
        ).fetchall():
            if ledger.pending(txhash):
                found.append((txhash, int(amount), False))
                continue
            record = ledger.tx(txhash)
            if record is not None and record.code == 0:
                found.append((txhash, int(amount), True))
        return found

    def _moved(self, address: str) -> int:
        row = self._ctx.db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM stake_moves WHERE address = ?", (address,)
        ).fetchone()
        return int(row[0])

    def collateral(self, address: str) -> int:
        """The collateral held for `address` now (locks in a block or pending, less moves)."""
        locked = sum(amount for _, amount, _ in self._counted_locks(address))
        return max(0, locked - self._moved(address))

    def collateral_in_blocks(self, address: str) -> int:
        """The part of `collateral` whose lock is in a block: what a settlement can move."""
        locked = sum(amount for _, amount, landed in self._counted_locks(address) if landed)
        return max(0, locked - self._moved(address))

    def jailed_until(self, address: str, epoch: int) -> int | None:
        """The last epoch of the jail that `epoch` is in, or None when not jailed then."""
        jail = self._ctx.params.jail_epochs
        marks = ",".join("?" for _ in JAILING_STATUSES)
        row = self._ctx.db.execute(
            f"SELECT MAX(epoch) FROM poc_results WHERE address = ? AND epoch <= ? "  # noqa: S608
            f"AND status IN ({marks})",
            (address, epoch, *JAILING_STATUSES),
        ).fetchone()
        if row is None or row[0] is None or int(row[0]) + jail < epoch:
            return None
        return int(row[0]) + jail

    def exit_of(self, address: str) -> tuple[int, int] | None:
        """`(leave_epoch, release_epoch)` when `address` asked to leave."""
        row = self._ctx.db.execute(
            "SELECT leave_epoch, release_epoch FROM stake_exits WHERE address = ?", (address,)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def eligible(self, address: str, epoch: int) -> bool:
        """Whether `address` may have weight, work and rewards in `epoch`: registered and
        holding collateral (when the network asks for collateral), not jailed, not leaving."""
        height = self._ctx.ledger.height
        if height != self._eligible_height:
            self._eligible.clear()
            self._eligible_height = height
        key = (address, epoch)
        found = self._eligible.get(key)
        if found is None:
            found = self._eligible[key] = self._eligible_now(address, epoch)
        return found

    def _eligible_now(self, address: str, epoch: int) -> bool:
        if self._ctx.params.collateral_ngonka > 0:
            # Without stake (collateral 0) a verdict's address needs nothing more.
            if address not in self._by_address or self.collateral(address) <= 0:
                return False
        leaving = self.exit_of(address)
        if leaving is not None and leaving[0] <= epoch:
            return False
        return self.jailed_until(address, epoch) is None

    def require_eligible(self, address: str, epoch: int) -> Participant:
        """The participant `address`, refused with `not_eligible` (saying why) when it may not
        take part in `epoch`."""
        participant = self.require(address)
        if self.eligible(address, epoch):
            return participant
        jailed = self.jailed_until(address, epoch)
        leaving = self.exit_of(address)
        if jailed is not None:
            why = f"it is jailed until the end of epoch {jailed} for a PoC fraud verdict"
        elif leaving is not None and leaving[0] <= epoch:
            why = (
                f"it asked to leave in epoch {leaving[0]}; register again (POST "
                "/v1/participants) to stay"
            )
        else:
            why = (
                "it holds no collateral; register again (POST /v1/participants) to lock "
                f"{_gnk(self._ctx.params.collateral_ngonka)}"
            )
        raise Refusal(
            ErrorCode.NOT_ELIGIBLE, f"{address} may not take part in epoch {epoch}: {why}"
        )

    def leave(self, address: str) -> StakeInfo:
        """Start unbonding `address`: no weight or work from now on, and its collateral comes
        back with the settlement of `unbonding_epochs` epochs after this one. Asking again
        changes nothing."""
        self.require(address)
        if self.exit_of(address) is None:
            epoch = self._ctx.view().epoch
            with transaction(self._ctx.db):
                self._ctx.db.execute(
                    "INSERT INTO stake_exits VALUES (?, ?, ?)",
                    (address, epoch, epoch + self._ctx.params.unbonding_epochs),
                )
            self.stake_changed()
            log.info("participant %s leaves in epoch %d", address, epoch)
        return self.stake(address)

    def stake(self, address: str) -> StakeInfo:
        """What the network holds of `address`'s collateral, and what it may do."""
        epoch = self._ctx.view().epoch
        collateral = self.collateral(address)
        jailed = self.jailed_until(address, epoch)
        leaving = self.exit_of(address)
        counted = {h for h, _, _ in self._counted_locks(address)}
        moves = [
            StakeMove(int(e), "lock", int(a), t)
            for t, a, e in self._ctx.db.execute(
                "SELECT txhash, amount, epoch FROM collateral_locks WHERE address = ?",
                (address,),
            ).fetchall()
            if t in counted
        ]
        moves += [
            StakeMove(int(e), k, int(a), s)
            for e, k, a, s in self._ctx.db.execute(
                "SELECT epoch, kind, amount, subject FROM stake_moves WHERE address = ?",
                (address,),
            ).fetchall()
        ]
        moves.sort(key=lambda m: (m.epoch, m.kind != "lock"))
        if address not in self._by_address or not moves:
            status = "none"
        elif leaving is not None:
            status = "unbonding" if collateral > 0 else "returned"
        elif jailed is not None:
            status = "jailed"
        else:
            status = "bonded"
        return StakeInfo(
            address=address,
            epoch=epoch,
            status=status,
            eligible=self.eligible(address, epoch),
            collateral_ngonka=collateral,
            required_ngonka=self._ctx.params.collateral_ngonka,
            jailed_until_epoch=jailed,
            unbonding_until_epoch=leaving[1] if leaving else None,
            collateral_address=COLLATERAL_ADDRESS,
            moves=tuple(moves),
        )

    def recent_failures(self, address: str) -> int:
        """Failed replays of `address` recorded in the last `penalty_window_epochs` epochs."""
        first = self._ctx.view().epoch - self._ctx.params.penalty_window_epochs + 1
        return sum(1 for e in self._failures.get(address, ()) if e >= first)

    def dispatch_weight(self, participant: Participant, weight: int) -> float:
        """A candidate's share of dispatch: (1 + PoC weight) / (1 + its recent failed
        replays)."""
        return (1 + weight) / (1 + self.recent_failures(participant.address))

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
        self._failures.setdefault(address, []).append(self._ctx.view().epoch)

    def candidates(self, model: str, exclude: set[str]) -> list[Participant]:
        """Who may take a task for `model` now: serves it, responsive, below capacity, and
        eligible in the current epoch."""
        now = time.monotonic()
        timeout = self._ctx.params.participant_timeout_s
        epoch = self._ctx.view().epoch
        return [
            p
            for p in self._by_address.values()
            if model in p.models
            and p.address not in exclude
            and p.busy < p.capacity
            and p.responsive(timeout, now)
            and self.eligible(p.address, epoch)
        ]


def _gnk(ngonka: int) -> str:
    whole, rest = divmod(ngonka, GNK)
    return f"{whole} GNK" if not rest else f"{ngonka / GNK:g} GNK"
