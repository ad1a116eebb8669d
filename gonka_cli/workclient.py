"""A client for a node's work protocol (the mining API), with typed answers.

Every answer is parsed into its `gonka_cli.protocol` message (`EpochCurrent`, `WorkBatch`,
`Earnings`...); a body that does not have the documented shape raises `ProtocolError`. A
refusal raises `WorkRefused`, which carries the node's HTTP `status`, its stable `code`
(`protocol.ErrorCode`) and `reason` (the node's own words, for people): callers act on `code`
and `status`, never on the words. A node that cannot be reached raises `errors.NodeUnreachable`.

Calls other than the public reads are signed with the caller's key for the node's identity
(`chain.signed_request`); each node's address is fetched once from `GET /v1/identity`. The
transport is `httpclient.FailoverSession`: given a network profile's nodes, a node that does
not answer makes the next one current, and a request is signed anew for each node it tries.
See docs/protocol.md for every endpoint.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gonka_cli import protocol as p
from gonka_cli.chain.signed_request import sign_request
from gonka_cli.crypto import address as addr
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import GonkaError, NodeResponseError, RequestRefused
from gonka_cli.httpclient import FailoverSession

__all__ = [
    "RETRYABLE_STATUSES",
    "WorkClient",
    "WorkRefused",
    "commits_closed",
    "is_retryable",
    "node_reason",
    "refusal_code",
]

#: Refusals that may pass if the same request is sent again later (with a fresh signature).
RETRYABLE_STATUSES = frozenset({401, 408, 425, 429})
DEFAULT_HINT = "is it running?"


class WorkRefused(RequestRefused, p.Refusal):
    """The node refused a request: `status` (HTTP), `code` (`protocol.ErrorCode`), `reason`
    (the node's message); `str()` says which request it was."""

    def __init__(self, method: str, path: str, refusal: p.Refusal) -> None:
        GonkaError.__init__(
            self, f"the node refused {method} {path} ({refusal.status}): {refusal.message}"
        )
        self.status = refusal.status
        self.code = refusal.code
        self.reason = refusal.message


def is_retryable(exc: RequestRefused) -> bool:
    """Whether the same request may succeed later: a signature or rate problem, a node
    error (5xx). Everything else is the node's final word on it."""
    return exc.status in RETRYABLE_STATUSES or exc.status >= 500


def node_reason(exc: RequestRefused) -> str:
    """The node's own words, without the "the node refused POST ..." preamble."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    text = str(exc)
    return text.split("): ", 1)[1] if "): " in text else text


def refusal_code(exc: BaseException) -> p.ErrorCode:
    code = getattr(exc, "code", None)
    return code if isinstance(code, p.ErrorCode) else p.ErrorCode.UNKNOWN


def commits_closed(exc: RequestRefused) -> bool:
    """A commit refused because its epoch's generate phase is over (or its epoch past)."""
    return refusal_code(exc) in (p.ErrorCode.COMMITS_CLOSED, p.ErrorCode.STALE_EPOCH)


class WorkClient:
    """The mining API of a profile's nodes, as the holder of `key` (None: public reads)."""

    def __init__(
        self,
        url: str | Sequence[str],
        key: PrivateKey | None = None,
        *,
        timeout_s: float = 10.0,
        hint: str = DEFAULT_HINT,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("a node URL is needed")
        self.key = key
        self.address = addr.address_from_pubkey(key.public_key.to_bytes()) if key else ""
        self.timeout_s = timeout_s
        # The mining API answers 503 (no_executor) and 504 (inference_timeout) itself, with an
        # error_code: those are refusals, not a gateway that failed. Only 502 moves on.
        self._nodes = FailoverSession(
            urls, timeout_s=timeout_s, hint=hint, failover_statuses=frozenset({502})
        )
        self._identities: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The node used first: the last one that answered."""
        return self._nodes.url

    @property
    def urls(self) -> tuple[str, ...]:
        return self._nodes.urls

    def close(self) -> None:
        self._nodes.close()

    # -- transport -----------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        signed: bool = False,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        idempotent: bool = True,
        stream: bool = False,
        node: str | None = None,
    ) -> Any:
        """The JSON of a 200 answer (the response itself when `stream`)."""
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        node_headers = None
        if signed:
            key = self.key
            if key is None:
                raise WorkRefused(
                    method,
                    path,
                    p.Refusal(p.ErrorCode.BAD_SIGNATURE, "this call needs a key to sign with"),
                )

            def node_headers(url: str) -> Mapping[str, str]:
                return sign_request(key, raw, self.node_address(url), with_pubkey=True)

        reply = self._nodes.request(
            method,
            path,
            params=params,
            data=raw or None,
            headers=headers,
            node_headers=node_headers,
            timeout_s=timeout_s,
            expect_json=not stream,
            stream=stream,
            idempotent=idempotent,
            node=node,
        )
        if reply.status >= 400:
            data = reply.data
            if stream:
                with reply.response:
                    try:
                        data = reply.response.json()
                    except ValueError:
                        data = None
            raise WorkRefused(method, path, p.Refusal.from_response(reply.status, data))
        if stream:
            return reply.response
        if reply.status != 200:
            raise NodeResponseError(
                f"the node at {reply.url} answered {method} {path} with HTTP {reply.status}"
            )
        return reply.data

    def node_address(self, url: str | None = None) -> str:
        """The address of node `url` (the current one by default): what signatures bind."""
        target = (url or self.url).rstrip("/")
        with self._lock:
            known = self._identities.get(target)
        if known:
            return known
        identity = p.Identity.from_dict(self._call("GET", "/v1/identity", node=target))
        with self._lock:
            self._identities[target] = identity.address
        return identity.address

    # -- reads ---------------------------------------------------------------------------

    def identity(self) -> p.Identity:
        return p.Identity.from_dict(self._call("GET", "/v1/identity"))

    def epoch(self) -> p.EpochCurrent:
        return p.EpochCurrent.from_dict(self._call("GET", "/v1/epochs/current"))

    def epoch_record(self, epoch: int) -> p.EpochRecord:
        return p.EpochRecord.from_dict(self._call("GET", f"/v1/epochs/{epoch}"))

    def participants(self) -> p.ParticipantsView:
        return p.ParticipantsView.from_dict(self._call("GET", "/v1/epochs/current/participants"))

    def inference(self, inference_id: str) -> p.InferenceRecord:
        return p.InferenceRecord.from_dict(self._call("GET", f"/v1/inferences/{inference_id}"))

    def earnings(self, address: str, since_height: int) -> p.Earnings:
        """What the network paid `address` in the blocks after `since_height`."""
        return p.Earnings.from_dict(
            self._call(
                "GET",
                f"/v1/participants/{address}/earnings",
                params={"since_height": since_height},
            )
        )

    # -- participants --------------------------------------------------------------------

    def register(
        self, models: Sequence[str], devices: Sequence[Mapping[str, Any]] = ()
    ) -> p.Registration:
        if self.key is None:
            raise WorkRefused(
                "POST",
                "/v1/participants",
                p.Refusal(p.ErrorCode.BAD_SIGNATURE, "registering needs a key"),
            )
        request = p.RegisterRequest(self.key.public_key.to_hex(), tuple(models), tuple(devices))
        data = self._call("POST", "/v1/participants", request.to_dict(), signed=True)
        return p.Registration.from_dict(data)

    def stake(self, address: str | None = None) -> p.StakeInfo:
        """The collateral the network holds for `address` (this client's by default)."""
        who = address or self.address
        return p.StakeInfo.from_dict(self._call("GET", f"/v1/participants/{who}/stake"))

    def leave(self) -> p.StakeInfo:
        """Stop taking part: no weight or work from now on; the collateral comes back after
        the unbonding delay. Registering again calls it off."""
        data = self._call("DELETE", f"/v1/participants/{self.address}", signed=True)
        return p.StakeInfo.from_dict(data)

    def commit(self, epoch: int, model: str, count: int, root: str) -> p.CommitAnswer:
        request = p.CommitRequest(epoch, model, count, root)
        data = self._call("POST", "/v1/poc/commits", request.to_dict(), signed=True)
        return p.CommitAnswer.from_dict(data)

    def work(
        self, wait_s: float = 0.0, limit: int = 16, *, everything: bool = False
    ) -> p.WorkBatch:
        params: dict[str, Any] = {"wait": f"{wait_s:g}", "max": limit}
        if everything:
            params["all"] = "1"
        data = self._call(
            "GET", "/v1/work", signed=True, params=params, timeout_s=self.timeout_s + wait_s
        )
        return p.WorkBatch.from_dict(data)

    def result(self, item_id: str, body: Mapping[str, Any]) -> p.ResultAnswer:
        # Resending a result is safe (the node answers "duplicate"), so failover may retry it.
        data = self._call("POST", f"/v1/work/{item_id}/result", body, signed=True)
        return p.ResultAnswer.from_dict(data)

    # -- inference -----------------------------------------------------------------------

    def _post_chat(self, request: p.ChatRequest, timeout_s: float) -> Any:
        """The JSON answer to `request` (the open response when it streams)."""
        return self._call(
            "POST",
            "/v1/chat/completions",
            request.to_dict(),
            signed=True,
            timeout_s=timeout_s,
            idempotent=False,  # each request pays an escrow
            stream=request.stream,
        )

    def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int = 64,
        temperature: float = 1.0,
        seed: int | None = None,
        logprobs: bool = False,
        timeout_s: float = 150.0,
    ) -> p.ChatCompletion:
        request = p.ChatRequest(
            model,
            tuple(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            logprobs=logprobs,
        )
        return p.ChatCompletion.from_dict(self._post_chat(request, timeout_s))

    def chat_stream(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int = 64,
        temperature: float = 1.0,
        seed: int | None = None,
        timeout_s: float = 150.0,
    ) -> Iterator[dict[str, Any]]:
        """The server-sent chunks of a streamed completion, as JSON objects."""
        request = p.ChatRequest(
            model,
            tuple(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            stream=True,
        )
        response = self._post_chat(request, timeout_s)
        with response:
            for line in response.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                data = line[len(b"data: ") :]
                if data == b"[DONE]":
                    return
                yield json.loads(data)
