"""The one error hierarchy of gonka.

Every error the core raises is a `GonkaError` whose message is one line that says what
happened and what to do next. Messages never contain secrets (passwords, mnemonics, private
keys). The CLI maps these classes to exit codes (`gonka_cli/cli/main.py`).
"""

from __future__ import annotations


class GonkaError(Exception):
    """Base of every error gonka raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(GonkaError):
    """A value the user gave is malformed (address, amount, name, mnemonic...)."""


class ConfigError(GonkaError):
    """The configuration file or a setting is unusable."""


# --- wallet -----------------------------------------------------------------------------


class WalletError(GonkaError):
    """Keys and the keystore."""


class InvalidAddress(InputError):
    pass


class InvalidAmount(InputError):
    pass


class InvalidMnemonic(InputError):
    pass


class InvalidPrivateKey(InputError):
    pass


class InvalidPublicKey(InputError):
    pass


class InvalidKeyName(InputError):
    pass


class KeyNotFound(WalletError):
    pass


class KeyExists(WalletError):
    pass


class WrongPassword(WalletError):
    pass


class PasswordRequired(WalletError):
    """No password source: not a terminal and neither the env var nor a password file."""


class KeystoreCorrupt(WalletError):
    pass


class SecretUnavailable(WalletError):
    """The key holds no secret of the asked kind (e.g. a mnemonic for a hex import)."""


class Cancelled(GonkaError):
    """The user declined a confirmation; nothing was changed."""


# --- chain ------------------------------------------------------------------------------


class ChainError(GonkaError):
    """Talking to a Gonka (Cosmos SDK) node."""


class NodeUnreachable(ChainError):
    pass


class NodeResponseError(ChainError):
    """The node answered, but not with what the API promises."""


class ChainIdMismatch(ChainError):
    pass


class AccountNotFound(ChainError):
    pass


class InsufficientFunds(ChainError):
    pass


class TxNotFound(ChainError):
    pass


class TxTimeout(ChainError):
    pass


class TxError(ChainError):
    """The chain refused a transaction (at broadcast) or included it as failed."""

    def __init__(self, message: str, *, codespace: str, code: int, txhash: str = "") -> None:
        super().__init__(message)
        self.codespace = codespace
        self.code = code
        self.txhash = txhash


class RequestRefused(ChainError):
    """The node refused a mining-API request (`status` is the HTTP status)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


# --- compute engine (models, PoC, inference) --------------------------------------------


class UnknownModel(InputError):
    """A model name that is not in the catalogue."""


class InvalidComputeInput(InputError):
    """A nonce, block hash, public key, token or artifact that the compute engine cannot use."""


class CheckpointError(InputError):
    """A model checkpoint that cannot be used: no checkpoint files, corrupt weights, or an
    architecture the engine does not run."""


class ModelDownloadError(GonkaError):
    """A checkpoint could not be downloaded from the model hub (offline, unknown repo...)."""


class InvalidProof(InputError):
    """A sum-tree proof or a PoC proof answer that is malformed (wrong length, bad index...)."""


class DeviceError(GonkaError):
    """A compute device (GPU or CPU backend) that cannot do what was asked."""


class DeviceUnavailable(DeviceError):
    """CUDA (or another backend) was asked for and is not usable: never fall back silently."""


class InsufficientMemory(DeviceError):
    """A model or batch does not fit in the device's free memory."""


class BackendUnavailable(DeviceError):
    """A compute backend (onnxruntime, an execution provider) is not installed or not usable."""


# --- miner -----------------------------------------------------------------------------


class MinerError(GonkaError):
    """Mining: the miner's own state (artifact store, outbox) and its work."""


class ArtifactStoreError(MinerError):
    """The on-disk artifact store (the sum-tree file) cannot be opened, written or trusted."""


# --- local network node -----------------------------------------------------------------


class NodeError(GonkaError):
    """The local network node (`gonka node`): its home, genesis and state."""


class GenesisError(NodeError):
    """The genesis file is missing, unreadable or inconsistent."""


class NodeStateError(NodeError):
    """The node's database is unreadable or does not match its genesis."""


class NodeRunning(NodeError):
    """Another node process already holds this home or port."""
