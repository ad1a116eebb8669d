"""Settlement: each epoch's secret, and the one system transaction that pays an epoch.

Right after an epoch's first block the node settles the epoch before it: the epoch reward
minted to eligible participants by accepted PoC weight, validation rewards minted per agreed
vote, inference fees from escrow to executors and the unused escrow back to requesters,
collateral burned for PoC frauds and failed replays, and collateral returned to participants
whose unbonding is over, summed into one `MsgSend` per sender and recipient. What each
address was paid is also kept per payment (the `payments` table), which is what
`GET /v1/participants/{address}/earnings` reads, and each collateral move in `stake_moves`.
A settlement is recorded with its transaction hash; if that transaction never reaches a
block (the node died before it), the record, its payments and its moves are undone and the
epoch is settled again.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
from decimal import Decimal

from gonka_cli.node.context import NetworkContext
from gonka_cli.node.inference_market import InferenceMarket
from gonka_cli.node.ledger import COLLATERAL_ADDRESS, ESCROW_ADDRESS, MINT_ADDRESS
from gonka_cli.node.participants import JAILING_STATUSES, Participants
from gonka_cli.node.poc_round import PocRound
from gonka_cli.protocol import (
    INFERENCE_FEE,
    POC_REWARD,
    VALIDATION_REWARD,
    EarningRecord,
    Earnings,
    EpochRecord,
)
from gonka_cli.storage import transaction

log = logging.getLogger(__name__)

#: Validations still waiting after this many epochs are settled as not validated.
VALIDATION_GRACE_EPOCHS = 1
#: Settlements of the last this many blocks are checked for a lost transaction.
LOST_SETTLEMENT_BLOCKS = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS epochs (
    epoch INTEGER PRIMARY KEY,
    secret TEXT NOT NULL,
    settlement_tx TEXT,
    settled_height INTEGER
);
CREATE TABLE IF NOT EXISTS payments (
    epoch INTEGER NOT NULL,        -- the settled epoch
    address TEXT NOT NULL,         -- who was paid
    kind TEXT NOT NULL,            -- poc_reward | inference_fee
    amount INTEGER NOT NULL,       -- ngonka
    inference_id TEXT              -- the inference whose fee it is; NULL for a reward
);
CREATE INDEX IF NOT EXISTS payments_by_address ON payments (address, epoch);
"""


class Settlement:
    """Epoch secrets, settlements, and what they paid."""

    def __init__(
        self,
        ctx: NetworkContext,
        poc: PocRound,
        market: InferenceMarket,
        participants: Participants | None = None,
    ) -> None:
        self._ctx = ctx
        self._poc = poc
        self._market = market
        self._participants = participants

    def epoch_secret(self, epoch: int) -> str:
        """The 32-byte secret of `epoch` in hex, drawn (and kept) the first time it is asked."""
        db = self._ctx.db
        row = db.execute("SELECT secret FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
        if row:
            return str(row[0])
        secret = secrets.token_hex(32)
        with transaction(db):
            db.execute("INSERT INTO epochs (epoch, secret) VALUES (?, ?)", (epoch, secret))
        return secret

    def last_epoch_with_secret(self) -> int | None:
        row = self._ctx.db.execute("SELECT MAX(epoch) FROM epochs").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def settle(self, epoch: int) -> str | None:
        """Pay epoch `epoch`: rewards by weight, inference fees and refunds. Idempotent.

        Returns the transaction hash, `"-"` when there was nothing to move, or None when the
        settlement has to wait (answers still being recomputed)."""
        db, ledger, params = self._ctx.db, self._ctx.ledger, self._ctx.params
        row = db.execute("SELECT settlement_tx FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
        if row is not None and row[0]:
            return str(row[0])
        recomputing = self._poc.recomputing(epoch)
        if recomputing:
            # Their answers came in time: wait for the verdicts rather than pay them nothing.
            log.info("epoch %d: settlement waits for %d validations", epoch, len(recomputing))
            return None
        self._poc.close_validation(epoch)
        self.epoch_secret(epoch)
        transfers: dict[tuple[str, str], int] = {}
        payments: list[tuple[int, str, str, int, str | None]] = []
        moves: list[tuple[int, str, str, int, str | None]] = []
        # What each participant's collateral can still give in this settlement.
        held: dict[str, int] = {}

        def add(sender: str, recipient: str, amount: int) -> None:
            if amount > 0:
                transfers[(sender, recipient)] = transfers.get((sender, recipient), 0) + amount

        def take(address: str, kind: str, fraction: float, subject: str | None) -> None:
            """Burn `fraction` of what `address` still holds."""
            if self._participants is None:
                return
            if address not in held:
                held[address] = self._participants.collateral_in_blocks(address)
            amount = int(held[address] * Decimal(repr(fraction)))
            if amount > 0:
                held[address] -= amount
                add(COLLATERAL_ADDRESS, MINT_ADDRESS, amount)
                moves.append((epoch, address, kind, amount, subject))

        weights = [
            (address, weight)
            for address, weight in db.execute(
                "SELECT address, weight FROM poc_results WHERE epoch = ? AND weight > 0 "
                "ORDER BY address",
                (epoch,),
            ).fetchall()
            if self._participants is None or self._participants.eligible(address, epoch)
        ]
        total = sum(w for _, w in weights)
        reward = params.epoch_reward_ngonka
        for address, weight in weights:
            amount = reward * weight // total
            add(MINT_ADDRESS, address, amount)
            if amount > 0:
                payments.append((epoch, address, POC_REWARD, amount, None))
        marks = ",".join("?" for _ in JAILING_STATUSES)
        for (address,) in db.execute(
            f"SELECT address FROM poc_results WHERE epoch = ? AND status IN ({marks}) "  # noqa: S608
            "ORDER BY address",
            (epoch, *JAILING_STATUSES),
        ).fetchall():
            take(address, "fraud_slash", params.slash_fraction_fraud, None)
        for validator, (agreed, _contradicted) in self._validator_outcomes(epoch).items():
            amount = agreed * params.validation_reward_ngonka
            if amount > 0 and validator != self._ctx.address:
                add(MINT_ADDRESS, validator, amount)
                payments.append((epoch, validator, VALIDATION_REWARD, amount, None))
        settled: list[str] = []
        price = params.price_per_token_ngonka
        for (
            inference_id,
            requester,
            executor,
            status,
            validation,
            escrow,
            escrow_tx,
            prompt,
            completion,
            created,
        ) in db.execute(
            "SELECT id, requester, executor, status, validation, escrow, escrow_tx, "
            "prompt_tokens, completion_tokens, epoch FROM inferences "
            "WHERE settled_epoch IS NULL AND epoch <= ?",
            (epoch,),
        ).fetchall():
            if status == "queued" and self._market.waiting_for_executor(inference_id):
                continue  # still waiting for an executor
            if validation == "pending" and created + VALIDATION_GRACE_EPOCHS > epoch:
                continue  # settled once its replay is known
            if escrow_tx:
                if ledger.pending(escrow_tx):
                    continue
                record = ledger.tx(escrow_tx)
                if record is None or record.code != 0:
                    settled.append(inference_id)  # the escrow never landed: nothing to move
                    continue
            paid = 0
            if status == "completed" and validation == "failed":
                take(
                    executor,
                    "validation_slash",
                    params.slash_fraction_failed_validation,
                    inference_id,
                )
            if status == "completed" and validation != "failed":
                paid = min(escrow, (prompt + completion) * price)
                add(ESCROW_ADDRESS, executor, paid)
                if paid > 0:
                    payments.append((epoch, executor, INFERENCE_FEE, paid, inference_id))
            add(ESCROW_ADDRESS, requester, escrow - paid)
            settled.append(inference_id)
        if self._participants is not None:
            # Unbonding over: what is left comes back, after this settlement's slashes.
            for (address,) in db.execute(
                "SELECT address FROM stake_exits WHERE release_epoch <= ? ORDER BY address",
                (epoch,),
            ).fetchall():
                if address not in held:
                    held[address] = self._participants.collateral_in_blocks(address)
                if held[address] > 0:
                    add(COLLATERAL_ADDRESS, address, held[address])
                    moves.append((epoch, address, "return", held[address], None))
                    held[address] = 0
        txhash = ""
        if transfers:
            txhash = ledger.submit_system(
                [(s, r, a) for (s, r), a in transfers.items()], f"epoch {epoch} settlement"
            )
        with transaction(db):
            db.execute(
                "UPDATE epochs SET settlement_tx = ?, settled_height = ? WHERE epoch = ?",
                (txhash or "-", ledger.height, epoch),
            )
            db.executemany(
                "UPDATE inferences SET settled_epoch = ? WHERE id = ?",
                [(epoch, i) for i in settled],
            )
            db.execute("DELETE FROM payments WHERE epoch = ?", (epoch,))
            db.executemany("INSERT INTO payments VALUES (?, ?, ?, ?, ?)", payments)
            db.execute("DELETE FROM stake_moves WHERE epoch = ?", (epoch,))
            db.executemany("INSERT INTO stake_moves VALUES (?, ?, ?, ?, ?)", moves)
        if self._participants is not None:
            self._participants.stake_changed()
        log.info(
            "epoch %d settled: %d rewards (%d ngonka minted), %d inferences, tx %s",
            epoch,
            len(weights),
            sum(a for (s, _), a in transfers.items() if s == MINT_ADDRESS),
            len(settled),
            txhash or "none",
        )
        return txhash or "-"

    def _validator_outcomes(self, epoch: int) -> dict[str, tuple[int, int]]:
        """`validator -> (agreed, contradicted)` votes of `epoch` (none before the votes'
        table exists)."""
        from gonka_cli.node.votes import validator_outcomes

        try:
            return validator_outcomes(self._ctx.db, epoch)
        except sqlite3.OperationalError:
            return {}

    def settle_overdue(self, current: int) -> None:
        """Settle the ended epochs whose settlement had to wait."""
        for (epoch,) in self._ctx.db.execute(
            "SELECT epoch FROM epochs WHERE settlement_tx IS NULL AND epoch < ?", (current,)
        ).fetchall():
            self.settle(epoch)

    def check_settlements(self) -> None:
        """Undo a settlement whose transaction was lost (the node died before its block)."""
        db, ledger = self._ctx.db, self._ctx.ledger
        for epoch, txhash in db.execute(
            "SELECT epoch, settlement_tx FROM epochs WHERE settlement_tx IS NOT NULL "
            "AND settlement_tx != '-' AND settled_height >= ?",
            (ledger.height - LOST_SETTLEMENT_BLOCKS,),
        ).fetchall():
            if ledger.pending(txhash) or ledger.tx(txhash) is not None:
                continue
            log.warning("epoch %d: settlement %s was lost; settling again", epoch, txhash)
            with transaction(db):
                db.execute(
                    "UPDATE epochs SET settlement_tx = NULL, settled_height = NULL WHERE epoch = ?",
                    (epoch,),
                )
                db.execute(
                    "UPDATE inferences SET settled_epoch = NULL WHERE settled_epoch = ?", (epoch,)
                )
                db.execute("DELETE FROM payments WHERE epoch = ?", (epoch,))
                db.execute("DELETE FROM stake_moves WHERE epoch = ?", (epoch,))
            if self._participants is not None:
                self._participants.stake_changed()
            self.settle(epoch)

    def epoch_record(self, epoch: int) -> EpochRecord | None:
        """What is known of `epoch`; its secret only once it has ended."""
        view = self._ctx.view()
        if epoch > view.epoch:
            return None
        secret = self.epoch_secret(epoch)
        row = self._ctx.db.execute(
            "SELECT settlement_tx, settled_height FROM epochs WHERE epoch = ?", (epoch,)
        ).fetchone()
        ended = epoch < view.epoch
        return EpochRecord(
            epoch=epoch,
            seed=self._ctx.seed(epoch),
            ended=ended,
            secret_sha256=hashlib.sha256(bytes.fromhex(secret)).hexdigest(),
            secret=secret if ended else None,
            validation_share=self._ctx.params.validation_share,
            poc_results=tuple(self._poc.results(epoch)),
            settlement_tx=(row[0] if row and row[0] not in (None, "-") else None),
            settled_height=row[1] if row else None,
        )

    def earnings(self, address: str, since_height: int) -> Earnings:
        """What settlements paid `address` in blocks after `since_height`: each payment counts
        once its settlement transaction is in a block, at that block's height."""
        ledger = self._ctx.ledger
        records: list[EarningRecord] = []
        heights: dict[str, int | None] = {}
        for epoch, kind, amount, inference_id, txhash in self._ctx.db.execute(
            "SELECT p.epoch, p.kind, p.amount, p.inference_id, e.settlement_tx "
            "FROM payments p JOIN epochs e ON e.epoch = p.epoch "
            "WHERE p.address = ? ORDER BY p.epoch, p.kind DESC, p.inference_id",
            (address,),
        ).fetchall():
            if txhash not in heights:
                tx = ledger.tx(txhash) if txhash and txhash != "-" else None
                heights[txhash] = tx.height if tx is not None and tx.code == 0 else None
            height = heights[txhash]
            if height is None or height <= since_height:
                continue
            records.append(EarningRecord(height, epoch, kind, amount, inference_id))
        return Earnings(address, since_height, ledger.height, tuple(records))
