"""Epochs of the local network: their parameters (a genesis section) and their schedule.

An epoch is `epoch_blocks` blocks. Epoch `e` covers heights `e*L + 1 .. (e+1)*L` and runs
three phases, each a range of heights (the phase of the chain is the phase of its latest
block):

- **generate** (`poc_generate_blocks`): participants compute PoC artifacts with the seed =
  the hash of the epoch's first block, and commit `(count, root)`;
- **validate** (`poc_validate_blocks`): the node samples leaves with the hash of the phase's
  first block, asks for proofs and recomputes the sampled artifacts;
- **inference** (the rest): participants serve inference requests and validations.

At the end of an epoch (the block after its last) the node settles it: the epoch reward is
minted in proportion to accepted PoC weight and inference fees move from escrow to executors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gonka_cli.chain.amount import MAX_AMOUNT
from gonka_cli.errors import GenesisError
from gonka_cli.protocol import EpochSchedule, PhaseSpan
from gonka_cli.validate import is_int, is_number

GNK = 10**9
GENERATE = "generate"
VALIDATE = "validate"
INFERENCE = "inference"
#: Before the first block: no epoch has started.
STARTING = "starting"


@dataclass(frozen=True)
class NetworkParams:
    """The network's epoch, PoC, inference and reward parameters (genesis `network`)."""

    epoch_blocks: int = 120
    poc_generate_blocks: int = 40
    poc_validate_blocks: int = 30
    #: The model of PoC rounds and its sequence length (0: the model's own `poc_seq_len`).
    poc_model: str = "gonka-tiny"
    poc_seq_len: int = 0
    dist_threshold: float = 0.15
    sample_size: int = 200
    #: 0.05, not mainnet's 0.1: honest hosts mismatch on no nonce at dist_threshold 0.15
    #: (docs/compute.md), and at 0.05 a host faking 15% of its artifacts is caught in one
    #: epoch with probability 0.999 (16 mismatches of 200 make a fraud) instead of 0.68.
    p_mismatch: float = 0.05
    alpha: float = 0.05
    max_porosity: float = 100.0
    #: Minted at the end of each epoch and shared in proportion to accepted PoC weight.
    epoch_reward_ngonka: int = 10_000 * GNK
    #: What a requester pays per token, prompt and completion alike.
    price_per_token_ngonka: int = 1_000
    max_tokens_limit: int = 256
    #: An executor that has not answered within this time loses the task to another one.
    inference_timeout_s: float = 30.0
    inference_attempts: int = 3
    #: A participant that has not polled for work within this time is skipped.
    participant_timeout_s: float = 30.0
    #: The share of inferences validated by replay (chosen by the epoch's secret).
    validation_share: float = 0.1
    replay_threshold: float = 0.96
    # -- validators (docs/protocol.md "PoC validation", "Validation by replay") --
    #: Validators drawn by PoC weight for each sampled inference and each accepted proof
    #: answer (fewer when fewer participants have weight; the node itself when none has).
    inference_validators: int = 3
    poc_validators: int = 3
    #: PoC votes are due this many blocks after the validate phase (at most the epoch's end).
    poc_vote_blocks: int = 10
    #: The share of disputed verdicts (votes not unanimous) the node re-checks itself.
    dispute_recheck_share: float = 0.5
    #: Nonces the node recomputes itself per epoch (0: no limit).
    recompute_budget_nonces: int = 100_000
    # -- stake (docs/protocol.md "Stake") --
    #: Locked from the wallet at registration; 0 turns stake off (nothing locked, no slash).
    collateral_ngonka: int = 1_000 * GNK
    #: Share of the collateral burned for a PoC verdict `fraud` or `invalid`.
    slash_fraction_fraud: float = 0.2
    #: Share of the collateral burned for each inference answer that fails its replay.
    slash_fraction_failed_validation: float = 0.01
    #: Epochs after a fraud verdict's own in which the participant has no weight.
    jail_epochs: int = 2
    #: Epochs after the one of a leave request whose settlement returns the collateral.
    unbonding_epochs: int = 1
    #: Paid (minted) per validation vote the weighted majority agreed with.
    validation_reward_ngonka: int = 100_000
    #: Failed replays recorded in this many latest epochs divide a participant's dispatch share.
    penalty_window_epochs: int = 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> NetworkParams:
        if not isinstance(data, dict):
            raise GenesisError("genesis network: must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise GenesisError(f"genesis network: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            params = cls(**data)
        except TypeError as exc:
            raise GenesisError(f"genesis network: {exc}") from None
        params.check()
        return params

    def check(self) -> None:
        for name in (
            "epoch_blocks",
            "poc_generate_blocks",
            "poc_validate_blocks",
            "sample_size",
            "max_tokens_limit",
            "inference_attempts",
        ):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise GenesisError(f"genesis network: {name} must be a positive integer")
        for name in (
            "poc_seq_len",
            "epoch_reward_ngonka",
            "price_per_token_ngonka",
            "collateral_ngonka",
            "jail_epochs",
            "validation_reward_ngonka",
        ):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise GenesisError(f"genesis network: {name} must be an integer >= 0")
        if self.poc_generate_blocks + self.poc_validate_blocks >= self.epoch_blocks:
            raise GenesisError(
                "genesis network: the generate and validate phases must leave blocks for the "
                "inference phase (poc_generate_blocks + poc_validate_blocks < epoch_blocks)"
            )
        for name in ("inference_timeout_s", "participant_timeout_s"):
            value = getattr(self, name)
            if not is_number(value) or not 0.1 <= value <= 3600:
                raise GenesisError(f"genesis network: {name} must be between 0.1 and 3600")
        if not is_number(self.validation_share) or not 0 <= self.validation_share <= 1:
            raise GenesisError("genesis network: validation_share must be between 0 and 1")
        if not is_number(self.replay_threshold) or not 0 < self.replay_threshold < 1:
            raise GenesisError("genesis network: replay_threshold must be between 0 and 1")
        for name in ("inference_validators", "poc_validators", "poc_vote_blocks"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise GenesisError(f"genesis network: {name} must be a positive integer")
        if not is_int(self.recompute_budget_nonces) or self.recompute_budget_nonces < 0:
            raise GenesisError("genesis network: recompute_budget_nonces must be an integer >= 0")
        if not is_number(self.dispute_recheck_share) or not 0 <= self.dispute_recheck_share <= 1:
            raise GenesisError("genesis network: dispute_recheck_share must be between 0 and 1")
        for name in ("slash_fraction_fraud", "slash_fraction_failed_validation"):
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value <= 1:
                raise GenesisError(f"genesis network: {name} must be between 0 and 1")
        for name in ("unbonding_epochs", "penalty_window_epochs"):
            # At least one epoch: a replay is settled up to one epoch after its request, and
            # the collateral must still be there to slash.
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise GenesisError(f"genesis network: {name} must be a positive integer")
        if self.collateral_ngonka > MAX_AMOUNT or self.validation_reward_ngonka > MAX_AMOUNT:
            raise GenesisError("genesis network: amounts must be at most 2^256 - 1 ngonka")
        if not isinstance(self.poc_model, str):
            raise GenesisError("genesis network: poc_model must be a model name")
        from gonka_cli.compute.models import get_spec
        from gonka_cli.errors import InputError

        try:
            get_spec(self.poc_model)
            self.poc_params()
        except InputError as exc:
            raise GenesisError(f"genesis network: {exc}") from None

    def poc_params(self) -> Any:
        """The validation parameters as the compute engine takes them (`PocParams`)."""
        from gonka_cli.compute.validation import PocParams

        return PocParams(
            dist_threshold=self.dist_threshold,
            sample_size=self.sample_size,
            p_mismatch=self.p_mismatch,
            alpha=self.alpha,
            max_porosity=self.max_porosity,
        )

    def seq_len(self) -> int:
        from gonka_cli.compute.models import get_spec

        return self.poc_seq_len or get_spec(self.poc_model).poc_seq_len


@dataclass(frozen=True)
class EpochView:
    """Where the chain stands in the epoch schedule at `height` (the latest block)."""

    epoch: int
    phase: str
    height: int
    start_height: int
    generate: tuple[int, int]
    validate: tuple[int, int]
    inference: tuple[int, int]

    @property
    def end_height(self) -> int:
        return self.inference[1]

    def schedule(self) -> EpochSchedule:
        """This view as the protocol's schedule message (the heights as spans)."""
        return EpochSchedule(
            epoch=self.epoch,
            phase=self.phase,
            height=self.height,
            start_height=self.start_height,
            end_height=self.end_height,
            generate=PhaseSpan(*self.generate),
            validate=PhaseSpan(*self.validate),
            inference=PhaseSpan(*self.inference),
        )

    @property
    def phase_end_height(self) -> int:
        """The last height of the current phase."""
        return self.schedule().phase_end_height

    def to_dict(self) -> dict[str, Any]:
        return self.schedule().to_dict()


def epoch_at(params: NetworkParams, height: int) -> EpochView:
    """The epoch and phase of the chain whose latest block is `height` (0: none yet)."""
    length = params.epoch_blocks
    epoch = max(height - 1, 0) // length
    start = epoch * length + 1
    gen_end = start + params.poc_generate_blocks - 1
    val_end = gen_end + params.poc_validate_blocks
    end = start + length - 1
    if height < 1:
        phase = STARTING
    elif height <= gen_end:
        phase = GENERATE
    elif height <= val_end:
        phase = VALIDATE
    else:
        phase = INFERENCE
    return EpochView(
        epoch=epoch,
        phase=phase,
        height=height,
        start_height=start,
        generate=(start, gen_end),
        validate=(gen_end + 1, val_end),
        inference=(val_end + 1, end),
    )
