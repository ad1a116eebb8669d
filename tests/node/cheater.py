"""An adversarial participant: each attack of the devnet's threat table, over the real protocol.

`Cheater` is a `TestParticipant` (real gonka-tiny compute in-process, a sum tree, the node
reached only through `WorkClient`) that misbehaves in one way, named by `attack`:

- `inflate`: commits counts far above the nonces it computed (2**62, 2**32, then a sum tree
  whose real subtree is repeated to claim 2**20 leaves) and answers every sampled rank with a
  real leaf under the repeated tree's siblings;
- `any_text`: answers inference with arbitrary tokens and the model's true logprobs for them,
  from one prefill pass;
- `random_short`: answers with 7 random tokens and made-up logprobs;
- `smaller_model`: answers with another, smaller model's generation (tokens and logprobs);
- `fail_every_answer`: as a validator, fails every answer it replays and every PoC answer it
  votes on (with `mine_poc=False`: a free Sybil key);
- `junk`: commits made-up vectors for every nonce, computing nothing (`junk_keys` makes many
  such keys);
- `fake_share`: replaces a share (`fake_share=0.05`, `0.15`) of its artifacts with made-up
  vectors.

Everything else it does honestly, so that a test can tell what each defence takes from it.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any

from gonka_cli.compute import artifacts as art
from gonka_cli.compute.smst import EMPTY, SMST, encode_proof_item, leaf_hash, node_hash
from gonka_cli.compute.validation import ProofAnswer
from gonka_cli.protocol import INFERENCE_TASK, POC_PROOF, POC_VALIDATION, VALIDATION_TASK, ErrorCode
from gonka_cli.workclient import WorkRefused
from tests.node.participant import TestParticipant

ATTACKS = (
    "inflate",
    "any_text",
    "random_short",
    "smaller_model",
    "fail_every_answer",
    "junk",
    "fake_share",
)
#: The counts an inflater tries first: above 2**62 (the old limit) and above a uint32.
TOO_LARGE_COUNTS = (2**62, 2**32)
#: The forged tree: 2**REAL_LOG2 real leaves, repeated to claim 2**CLAIM_LOG2, depth 24.
REAL_LOG2 = 5
CLAIM_LOG2 = 20
TREE_DEPTH = 24
#: What `random_short` sends.
SHORT_TOKENS = 7

#: A forged tree: (height, prefix) -> (hash, leaf count).
Forged = Callable[[int, int], tuple[bytes, int]]


def repeated_tree(real: SMST, real_log2: int, claim_log2: int) -> Forged:
    """The nodes of a sum tree that holds `real`'s first 2**real_log2 leaves at every
    2**real_log2-aligned block of ranks up to 2**claim_log2: the same hashes and counts as a
    tree of that many distinct leaves would have, were leaves not keyed by their nonce."""

    @functools.cache
    def node(height: int, prefix: int) -> tuple[bytes, int]:
        if height <= real_log2:
            copy = prefix >> (real_log2 - height)
            if copy >= 1 << (claim_log2 - real_log2):
                return EMPTY[height], 0
            if copy:  # every copy is the first one
                return node(height, prefix & ((1 << (real_log2 - height)) - 1))
            if height == 0:
                return leaf_hash(real.leaf(prefix)), 1
        left, right = node(height - 1, 2 * prefix), node(height - 1, 2 * prefix + 1)
        total = left[1] + right[1]
        return node_hash(left[0], right[0], total), total

    return node


def forged_answers(
    real: SMST, node: Forged, indices: list[int], real_log2: int, depth: int
) -> list[ProofAnswer]:
    """Each sampled rank answered with the real leaf it repeats, under the forged siblings."""
    answers = []
    for index in indices:
        items = [
            encode_proof_item(*node(height, (index >> height) ^ 1))
            for height in range(depth - 1, -1, -1)
        ]
        nonce, vector = art.parse_leaf(real.leaf(index & ((1 << real_log2) - 1)))
        answers.append(ProofAnswer(index, nonce, vector, tuple(items)))
    return answers


def arbitrary_text_answer(model: Any, item: dict[str, Any], tokens: list[int]) -> dict[str, Any]:
    """`tokens` as the answer, with the model's true processed logprobs for them: one prefill
    pass over prompt + tokens (no end of sequence appended)."""
    from gonka_cli.compute.inference import generate

    gen = generate(
        model,
        item["prompt_tokens"],
        len(tokens),
        temperature=item["temperature"],
        top_p=item["top_p"],
        top_k_logprobs=item.get("top_logprobs", 5) or 5,
        stop_tokens=(),
        enforced_tokens=tokens,
    ).to_dict()
    return {"tokens": gen["tokens"], "top_logprobs": gen["top_logprobs"], "finish_reason": "length"}


def made_up_answer(rng: random.Random, vocab: int, n: int, width: int = 5) -> dict[str, Any]:
    """`n` random tokens, each claimed to be the model's favourite by far."""
    tokens = [rng.randrange(vocab) for _ in range(n)]
    top = []
    for token in tokens:
        others = rng.sample([t for t in range(vocab) if t != token], width - 1)
        entries = [{"token": token, "logprob": -0.05}]
        entries += [{"token": t, "logprob": -4.0 - i} for i, t in enumerate(others)]
        top.append(entries)
    return {"tokens": tokens, "top_logprobs": top, "finish_reason": "length"}


class Cheater(TestParticipant):
    """A participant that runs one attack of `ATTACKS` and is honest otherwise."""

    def __init__(
        self,
        url: str,
        attack: str,
        *,
        smaller_model: str = "gonka-tiny",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if attack not in ATTACKS:
            raise ValueError(f"unknown attack {attack!r}: one of {', '.join(ATTACKS)}")
        if attack == "junk":
            kwargs["fake_share"] = 1.0
        if attack == "inflate":
            kwargs["nonces"] = 1 << REAL_LOG2
        super().__init__(url, **kwargs)
        self.attack = attack
        self.smaller_model = smaller_model
        self.rng = random.Random(seed)
        #: epoch -> count -> the error code of the commit the node refused.
        self.refused: dict[int, dict[int, ErrorCode]] = {}
        self.forged: dict[int, tuple[SMST, Forged]] = {}
        #: inference ids this cheater answered with its attack.
        self.cheated: list[str] = []

    @classmethod
    def junk_keys(cls, url: str, n: int, **kwargs: Any) -> list[Cheater]:
        """`n` fresh keys that each commit made-up vectors (a flood of free keys)."""
        return [cls(url, "junk", **kwargs) for _ in range(n)]

    # -- PoC -------------------------------------------------------------------------------

    def artifacts(self, epoch: dict[str, Any]) -> list[tuple[int, bytes]]:
        if self.attack != "junk":
            return super().artifacts(epoch)
        # Junk costs nothing: made-up vectors, no model run at all.
        made_up = []
        for nonce in range(self.nonces):
            vector = [0.0] * art.K_DIM
            vector[nonce % art.K_DIM] = 1.0
            made_up.append((nonce, art.encode_artifact(vector)))
        return made_up

    def mine(self, epoch: dict[str, Any]) -> None:
        if self.attack == "inflate":
            self.inflate(epoch)
        else:  # junk and fake_share: TestParticipant's made-up vectors
            super().mine(epoch)

    def inflate(self, epoch: dict[str, Any]) -> None:
        """Count inflation: the counts that do not fit, then the repeated subtree."""
        real = SMST()
        real.insert_many(art.leaf_data(n, v) for n, v in self.artifacts(epoch))
        node = repeated_tree(real, REAL_LOG2, CLAIM_LOG2)
        root, count = node(TREE_DEPTH, 0)
        model = epoch["poc"]["model"]
        for too_many in TOO_LARGE_COUNTS:
            try:
                self._commit(epoch["epoch"], model, too_many, root.hex())
            except WorkRefused as exc:
                self.refused.setdefault(epoch["epoch"], {})[too_many] = exc.code
        self.forged[epoch["epoch"]] = (real, node)
        self._commit(epoch["epoch"], model, count, root.hex())
        self.committed[epoch["epoch"]] = count

    def _commit(self, epoch: int, model: str, count: int, root: str) -> None:
        """Commit, trying again while the node does not yet count the collateral just locked
        (a commit in the same block as the registration can be refused `not_eligible`)."""
        for _ in range(50):
            try:
                self.client.commit(epoch, model, count, root)
                return
            except WorkRefused as exc:
                if exc.code != ErrorCode.NOT_ELIGIBLE or self._stop.is_set():
                    raise
            time.sleep(0.1)
        self.client.commit(epoch, model, count, root)

    def answer_from_repeats(self, item: dict[str, Any]) -> None:
        """Count inflation's proofs: every sampled rank from the one real subtree."""
        real, node = self.forged[item["epoch"]]
        answers = forged_answers(real, node, item["leaf_indices"], REAL_LOG2, TREE_DEPTH)
        body = {"answers": [a.to_dict() for a in answers]}
        try:
            result = self.client.result(item["id"], body)
        except WorkRefused as exc:
            self.done.append({"item": item, "refused": exc})
            return
        self.done.append({"item": item, "result": result})

    # -- work ------------------------------------------------------------------------------

    def handle(self, item: dict[str, Any]) -> None:
        if item["kind"] == POC_PROOF and self.attack == "inflate":
            self.answer_from_repeats(item)
            return
        if item["kind"] == INFERENCE_TASK and self.attack in (
            "any_text",
            "random_short",
            "smaller_model",
        ):
            self.cheated.append(item["inference_id"])
        if item["kind"] in (VALIDATION_TASK, POC_VALIDATION) and self.attack == "fail_every_answer":
            body = self.fail_every_answer(item)
            self.done.append({"item": item, "result": self.client.result(item["id"], body)})
            return
        super().handle(item)

    def infer(self, item: dict[str, Any]) -> dict[str, Any]:
        from gonka_cli.compute.models import load_model

        if self.attack == "any_text":
            return self.any_text(load_model(item["model"]), item)
        if self.attack == "random_short":
            return self.random_short(load_model(item["model"]), item)
        if self.attack == "smaller_model":
            return self.answer_with_smaller_model(item)
        return super().infer(item)

    def any_text(self, model: Any, item: dict[str, Any]) -> dict[str, Any]:
        """Any text, with the model's true logprobs for it (one cheap prefill pass)."""
        vocab = int(model.spec.vocab_size)
        tokens = [self.rng.randrange(vocab) for _ in range(item["max_tokens"])]
        return arbitrary_text_answer(model, item, tokens)

    def random_short(self, model: Any, item: dict[str, Any]) -> dict[str, Any]:
        """A random answer of 7 tokens whose made-up logprobs claim each was the favourite."""
        n = min(SHORT_TOKENS, item["max_tokens"])
        return made_up_answer(self.rng, int(model.spec.vocab_size), n)

    def answer_with_smaller_model(self, item: dict[str, Any]) -> dict[str, Any]:
        """The generation of `smaller_model` (cheaper) for a request made for another."""
        from gonka_cli.compute.models import load_model
        from gonka_cli.miner.worker import run_inference

        return run_inference(load_model(self.smaller_model), item)

    def fail_every_answer(self, item: dict[str, Any]) -> dict[str, Any]:
        """A validator's vote against whatever it is given, with the statistics that a node's
        consistency check accepts for that vote."""
        if item["kind"] == POC_VALIDATION:
            return {"valid": False, "n_mismatch": len(item["nonces"])}
        return {"passed": False, "similarity": 0.0}
