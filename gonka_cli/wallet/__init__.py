"""The GNK wallet: an encrypted keystore, and sending GNK."""
