"""Key material: secp256k1 keys and signatures, bech32 addresses, BIP39/BIP32 derivation."""
