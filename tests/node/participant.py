"""A minimal participant for the node's tests: real PoC artifacts, sum tree, proofs, inference.

It drives the compute engine in-process (gonka-tiny on the CPU) and talks to the node only
through its HTTP API (`WorkClient`), like a miner would. Misbehaviour is opt-in:
`fake_share` replaces that share of its artifacts with made-up vectors, `alter_tokens`
changes the tokens it returns for inference, `answer_proofs=False` never answers proof
requests, and `stop()` makes it vanish at once. `mine_poc=False` only serves work.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from gonka_cli.compute import artifacts as art
from gonka_cli.compute.smst import SMST
from gonka_cli.compute.validation import build_answers
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import GonkaError
from gonka_cli.miner.worker import run_inference, run_validation
from gonka_cli.workclient import WorkClient

log = logging.getLogger(__name__)


class TestParticipant:
    __test__ = False  # not a test class

    def __init__(
        self,
        url: str,
        *,
        models: tuple[str, ...] = ("gonka-tiny",),
        nonces: int = 200,
        fake_share: float = 0.0,
        alter_tokens: bool = False,
        answer_proofs: bool = True,
        serve_inference: bool = True,
        mine_poc: bool = True,
        key: PrivateKey | None = None,
        lie_validations: bool = False,
        answer_validations: bool = True,
    ) -> None:
        self.key = key or PrivateKey(secrets.token_bytes(32))
        self.client = WorkClient(url, self.key)
        self.address = self.client.address
        self.models = list(models)
        self.nonces = nonces
        self.fake_share = fake_share
        self.alter_tokens = alter_tokens
        self.answer_proofs = answer_proofs
        self.serve_inference = serve_inference
        self.mine_poc = mine_poc
        #: Vote the opposite of the truth on replays and PoC validations / never answer them.
        self.lie_validations = lie_validations
        self.answer_validations = answer_validations
        self.trees: dict[int, SMST] = {}
        self.committed: dict[int, int] = {}
        self.done: list[dict[str, Any]] = []
        self.refusals: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> TestParticipant:
        from tests.node.network_helpers import fund_collateral

        fund_collateral(self.client.url, self.address)
        self.client.register(self.models, [{"name": "cpu"}])
        self._thread = threading.Thread(target=self._run, name=f"participant-{self.address[-6:]}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # The participant reads the wire form, as a miner in another language would.
                epoch = self.client.epoch().to_dict()
                if (
                    self.mine_poc
                    and epoch["phase"] == "generate"
                    and epoch["epoch"] not in self.committed
                ):
                    self.mine(epoch)
                work = self.client.work(wait_s=0.3)
                for item in work.items:
                    if self._stop.is_set():
                        return
                    self.handle(item.to_dict())
            except GonkaError as exc:
                self.refusals.append(str(exc))
                time.sleep(0.05)
            except Exception as exc:  # shown by the test that fails for it
                log.exception("participant %s", self.address)
                self.refusals.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)

    # -- PoC -----------------------------------------------------------------------------

    def artifacts(self, epoch: dict[str, Any]) -> list[tuple[int, bytes]]:
        from gonka_cli.compute.models import load_model
        from gonka_cli.compute.poc import PocInputParams, compute_artifacts

        poc = epoch["poc"]
        model = load_model(poc["model"])
        nonces = list(range(self.nonces))
        vectors = compute_artifacts(
            model,
            epoch["seed"],
            self.key.public_key.to_hex(),
            nonces,
            params=PocInputParams(seq_len=poc["seq_len"]),
        )
        fakes = round(self.fake_share * len(nonces))
        for i in range(fakes):
            # A made-up unit vector: what a host that skips the compute would send.
            index = i * len(nonces) // fakes
            made_up = [0.0] * art.K_DIM
            made_up[i % art.K_DIM] = 1.0
            vectors[index] = art.encode_artifact(made_up)
        return list(zip(nonces, vectors, strict=True))

    def mine(self, epoch: dict[str, Any]) -> None:
        tree = SMST()
        tree.insert_many(art.leaf_data(n, v) for n, v in self.artifacts(epoch))
        self.trees[epoch["epoch"]] = tree
        self.client.commit(epoch["epoch"], epoch["poc"]["model"], tree.count, tree.root().hex())
        self.committed[epoch["epoch"]] = tree.count

    # -- work ----------------------------------------------------------------------------

    def handle(self, item: dict[str, Any]) -> None:
        kind = item["kind"]
        if kind == "poc_proof":
            if not self.answer_proofs:
                return
            tree = self.trees[item["epoch"]]
            answers = build_answers(tree, item["leaf_indices"], item["count"])
            body: dict[str, Any] = {"answers": [a.to_dict() for a in answers]}
        elif kind == "inference":
            if not self.serve_inference:
                return
            body = self.infer(item)
        elif kind == "poc_validation":
            if not self.answer_validations:
                return
            body = self.recheck(item)
        else:
            if not self.answer_validations:
                return
            body = self.replay(item)
        self.done.append({"item": item, "result": self.client.result(item["id"], body)})

    def infer(self, item: dict[str, Any]) -> dict[str, Any]:
        from gonka_cli.compute.models import load_model

        answer = run_inference(load_model(item["model"]), item)
        if self.alter_tokens:
            # Swap every token for another byte: the text a lazy host would make up.
            answer["tokens"] = [(t + 1) % 256 for t in answer["tokens"]]
        return answer

    def replay(self, item: dict[str, Any]) -> dict[str, Any]:
        from gonka_cli.compute.models import load_model

        body = run_validation(load_model(item["model"]), item)
        if self.lie_validations:
            # The other verdict, with a similarity the node's rule agrees with.
            lie = not body["passed"]
            body = {"passed": lie, "similarity": 1.0 if lie else 0.0}
        return body

    def recheck(self, item: dict[str, Any]) -> dict[str, Any]:
        """A `poc_validation` vote: the prover's nonces recomputed in-process."""
        from gonka_cli.compute.models import load_model
        from gonka_cli.compute.poc import PocInputParams, compute_artifacts
        from gonka_cli.miner.worker import run_poc_validation

        model = load_model(item["model"])
        params = PocInputParams(seq_len=item["seq_len"])
        body = run_poc_validation(
            item,
            lambda seed, key, nonces: compute_artifacts(model, seed, key, nonces, params=params),
        )
        if self.lie_validations:
            # The other verdict, with a mismatch count the binomial test agrees with.
            lie = not body["valid"]
            body = {"valid": lie, "n_mismatch": 0 if lie else len(item["nonces"])}
        return body
