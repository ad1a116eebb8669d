"""The compute engine: the math that `gonka mine`, `gonka bench` and the local node share.

- `devices`: device names, dtypes and free memory.
- `rng`: portable MurmurHash3 / Box-Muller randomness (PoC v2).
- `models`: the model interface, `load_model`, the built-in seeded models and their catalogue.
- `checkpoints`: Hugging Face checkpoints run through `transformers`.
- `hub`: the Hugging Face cache (list, pull, remove).
- `tokenizer`: the byte-level tokenizer.
- `artifacts`: one PoC artifact (12 fp16 values) and one commitment leaf, encoded and decoded.
- `poc`: nonces to artifacts.
- `smst`: the sparse Merkle sum tree, keyed by nonce, that commits to artifacts, with proofs.
- `validation`: checking a prover's answers and the binomial fraud test.
- `inference`: generation with top-k logprobs and replay validation.

torch and numpy are imported inside the modules that compute, never by this package.
"""
