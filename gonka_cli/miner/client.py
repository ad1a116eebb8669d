"""A client for a node's mining API: signed requests for participants and requesters.

Every call but the public reads is signed with the caller's key for the node's identity
(`chain.signed_request`); the node's address is fetched once from `GET /v1/identity`. A
refusal raises `RequestRefused` with the node's message and HTTP status; a node that cannot
be reached raises `NodeUnreachable`. See docs/protocol.md for every endpoint.

Given several URLs (a network profile's nodes), the client fails over: a node that cannot be
reached makes the next one current, so the caller's retry goes there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import requests

from gonka_cli.chain.signed_request import sign_request
from gonka_cli.crypto import address as addr
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import NodeResponseError, NodeUnreachable, RequestRefused

USER_AGENT = "gonka-cli"


class NetworkClient:
    """The mining API of one node, as the holder of `key` (None: public reads only)."""

    def __init__(
        self, url: str | Sequence[str], key: PrivateKey | None = None, *, timeout_s: float = 10.0
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("a node URL is needed")
        self.urls = [u.rstrip("/") for u in urls]
        self.url = self.urls[0]
        self.key = key
        self.address = addr.address_from_pubkey(key.public_key.to_bytes()) if key else ""
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._node_address = ""

    def close(self) -> None:
        self._session.close()

    # -- transport -----------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        signed: bool = False,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        stream: bool = False,
    ) -> requests.Response:
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if signed:
            if self.key is None:
                raise RequestRefused("this call needs a key to sign with", status=401)
            headers.update(sign_request(self.key, raw, self.node_address(), with_pubkey=True))
        try:
            response = self._session.request(
                method,
                self.url + path,
                data=raw or None,
                headers=headers,
                params=params,
                timeout=timeout_s or self.timeout_s,
                stream=stream,
            )
        except requests.RequestException as exc:
            url = self.url
            self._fail_over()
            raise NodeUnreachable(
                f"cannot reach the node at {url} ({type(exc).__name__}); is it running?"
            ) from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text[:200]
            except ValueError:
                message = response.text[:200]
            raise RequestRefused(
                f"the node refused {method} {path} ({response.status_code}): {message}",
                status=response.status_code,
            )
        return response

    def _json(self, *args: Any, **kwargs: Any) -> Any:
        response = self._request(*args, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise NodeResponseError(
                f"the node at {self.url} answered with something not JSON"
            ) from None

    def _fail_over(self) -> None:
        if len(self.urls) > 1:
            self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
            self._node_address = ""  # each node signs as itself

    def node_address(self) -> str:
        """The node's own address (the receiver of signed requests)."""
        if not self._node_address:
            self._node_address = str(self._json("GET", "/v1/identity")["address"])
        return self._node_address

    # -- reads ---------------------------------------------------------------------------

    def epoch(self) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/epochs/current"))

    def epoch_record(self, epoch: int) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/epochs/{epoch}"))

    def participants(self) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/epochs/current/participants"))

    def inference(self, inference_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/inferences/{inference_id}"))

    # -- participants --------------------------------------------------------------------

    def register(
        self, models: list[str], devices: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        if self.key is None:
            raise RequestRefused("registering needs a key", status=401)
        body = {
            "pubkey": self.key.public_key.to_hex(),
            "models": models,
            "devices": devices or [],
        }
        return dict(self._json("POST", "/v1/participants", body, signed=True))

    def commit(self, epoch: int, model: str, count: int, root: str) -> dict[str, Any]:
        body = {"epoch": epoch, "model": model, "count": count, "root": root}
        return dict(self._json("POST", "/v1/poc/commits", body, signed=True))

    def work(
        self, wait_s: float = 0.0, limit: int = 16, *, everything: bool = False
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"wait": f"{wait_s:g}", "max": limit}
        if everything:
            params["all"] = "1"
        return dict(
            self._json(
                "GET", "/v1/work", signed=True, params=params, timeout_s=self.timeout_s + wait_s
            )
        )

    def result(self, item_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/work/{item_id}/result", body, signed=True))

    # -- inference -----------------------------------------------------------------------

    def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 64,
        temperature: float = 1.0,
        seed: int | None = None,
        logprobs: bool = False,
        timeout_s: float = 150.0,
    ) -> dict[str, Any]:
        body = _chat_body(model, messages, max_tokens, temperature, seed, logprobs, False)
        return dict(
            self._json("POST", "/v1/chat/completions", body, signed=True, timeout_s=timeout_s)
        )

    def chat_stream(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 64,
        temperature: float = 1.0,
        seed: int | None = None,
        timeout_s: float = 150.0,
    ) -> Iterator[dict[str, Any]]:
        """The server-sent chunks of a streamed completion, as JSON objects."""
        body = _chat_body(model, messages, max_tokens, temperature, seed, False, True)
        response = self._request(
            "POST", "/v1/chat/completions", body, signed=True, timeout_s=timeout_s, stream=True
        )
        with response:
            for line in response.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                data = line[len(b"data: ") :]
                if data == b"[DONE]":
                    return
                yield json.loads(data)


def _chat_body(
    model: str,
    messages: list[dict[str, Any]],
    max_tokens: int,
    temperature: float,
    seed: int | None,
    logprobs: bool,
    stream: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "logprobs": logprobs,
        "stream": stream,
    }
    if seed is not None:
        body["seed"] = seed
    return body
