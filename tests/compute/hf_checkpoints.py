"""Tiny random Hugging Face checkpoints, written the way real ones are, for tests.

`write_checkpoint(kind, directory)` saves a seeded random model with `save_pretrained`
(safetensors) and a small byte-level BPE tokenizer whose `tokenizer_config.json` carries a
ChatML chat template (Qwen's). `lay_into_hub_cache(directory, cache, repo_id)` copies a
checkpoint into the Hugging Face hub cache layout (`models--org--name/blobs`, `snapshots/REV`
linking to the blobs, `refs/main`), as `huggingface_hub` writes it.

Sizes stay tiny (hidden 64, 2-3 layers, vocabulary 512 with about 300 real tokens, so the
last rows are padding) so that every test that builds one is fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512
TOKENIZER_VOCAB = 300
CORPUS = [
    "Gonka is a decentralized compute network.",
    "Proof of compute turns nonces into artifacts that validators check.",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "Hosts run models; validators replay inference and compare logprobs.",
]
KINDS = ("qwen3", "llama", "qwen2", "qwen3_moe")


def config_for(kind: str, **overrides: Any) -> Any:
    """A tiny `transformers` config of `kind` (qwen3, llama, qwen2, qwen3_moe)."""
    import transformers

    common: dict[str, Any] = {
        "hidden_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }
    if kind == "qwen3":
        config = transformers.Qwen3Config(
            **common, head_dim=32, rope_theta=1e6, tie_word_embeddings=True
        )
    elif kind == "qwen3_moe":
        common.update(num_hidden_layers=2)
        config = transformers.Qwen3MoeConfig(
            **common,
            head_dim=16,
            moe_intermediate_size=32,
            num_experts=4,
            num_experts_per_tok=2,
            decoder_sparse_step=1,
            norm_topk_prob=True,
            rope_theta=1e6,
        )
    elif kind == "qwen2":
        config = transformers.Qwen2Config(**common, rope_theta=1e6, tie_word_embeddings=True)
    elif kind == "llama":
        config = transformers.LlamaConfig(**common, rope_theta=5e5)
    else:
        raise ValueError(kind)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def build_model(kind: str, seed: int = 0, **overrides: Any) -> Any:
    """A seeded random `transformers` causal LM of `kind`, float32, eval mode.

    Weights are scaled up from transformers' 0.02 init so that layers move the stream, as in
    a trained model (otherwise a PoC artifact would barely depend on the layers).
    """
    import torch
    import transformers

    config = config_for(kind, **overrides)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2:
                param.normal_(0.0, 1.0 / param.shape[-1] ** 0.5)
            elif "norm" in name:
                param.uniform_(0.8, 1.2)
    return model.eval()


def build_tokenizer() -> Any:
    """A byte-level BPE tokenizer (about 300 tokens) with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def write_checkpoint(
    kind: str, directory: Path, *, seed: int = 0, dtype: str = "float32", **overrides: Any
) -> Path:
    """Save a tiny `kind` checkpoint (safetensors, tokenizer, chat template) in `directory`."""
    import torch

    model = build_model(kind, seed, **overrides)
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(directory)
    # Real checkpoints (Qwen3, Llama 3) keep the chat template in tokenizer_config.json.
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2))
    (directory / "chat_template.jinja").unlink(missing_ok=True)
    return directory


def lay_into_hub_cache(
    directory: Path, cache: Path, repo_id: str, revision: str = "0" * 40
) -> Path:
    """Copy a checkpoint into hub-cache layout under `repo_id`; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    blobs = repo / "blobs"
    snapshot = repo / "snapshots" / revision
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(directory.iterdir()):
        if not file.is_file():
            continue
        data = file.read_bytes()
        # The hub names LFS blobs by SHA-256 and small files by their git SHA-1.
        if file.suffix == ".safetensors":
            name = hashlib.sha256(data).hexdigest()
        else:
            name = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324
        blob = blobs / name
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.name
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, snapshot), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot
