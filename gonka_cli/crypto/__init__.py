"""Key material: secp256k1 keys and signatures, bech32 addresses, BIP39/BIP32 derivation."""

#: BIP44 coin type of Gonka keys (`inferenced keys add` uses it); 118 is the Cosmos Hub's.
GONKA_COIN_TYPE = 1200
COSMOS_COIN_TYPE = 118
