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
