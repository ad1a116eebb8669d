"""HTTP to a network profile's nodes, failing over from one node to the next.

One copy of the transport that every node client uses (`chain.client.ChainClient` for the
Cosmos REST API, the mining-API client for `/v1/...`): a `requests` session, a timeout on every
request, the rules for which failures mean "try the next node", and a `NodeUnreachable` that
names every node tried and why.

Usage::

    with FailoverSession(profile.rest_urls, timeout_s=10) as nodes:
        reply = nodes.request("GET", "/cosmos/base/tendermint/v1beta1/node_info")
        reply.status, reply.data, reply.url   # HTTP status, parsed JSON, the node that answered

Rules:

- Nodes are tried in order; the node that answered last is tried first next time
  (`FailoverSession.url`). It stays first even when an earlier node recovers.
- A connection failure, a timeout, a gateway status (502/503/504 by default) and, with
  `expect_json=True`, a body that is not JSON (a captive portal, a proxy's HTML page) move on to
  the next node. Any other status, 4xx and 5xx included, is the node's answer: it is returned,
  and the caller decides what it means.
- `idempotent=False` (for a request that must not run twice, e.g. a mining result): only
  failures before the request left this machine (connection refused, unknown host, connect
  timeout) move on; a read timeout, a reset connection or a gateway status raise
  `NodeUnreachable` at once, since the node may have acted on the request.
- `node_headers(url)` builds headers for one node, called once per node tried: requests signed
  for a node's own identity (`chain.signed_request`) are signed anew for each node. It may
  raise `NodeUnreachable` (e.g. when it could not fetch that node's identity); that node is
  then skipped like one that did not answer.
- `node=URL` asks that one node only (no failover), e.g. to fetch its identity for signing.
- `stream=True` (with `expect_json=False`) returns the response unread, for server-sent events;
  the caller closes it (`with reply.response: ...`).

Raises `NodeUnreachable` (a `ChainError`) with a one-line message:
``no node answered: tried URL (reason); URL (reason); <hint>``. Never raises `requests`
exceptions. A session may be shared between threads: the order of the nodes is guarded by a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gonka_cli.errors import NodeUnreachable

if TYPE_CHECKING:
    import requests

__all__ = ["DEFAULT_HINT", "FAILOVER_STATUSES", "USER_AGENT", "FailoverSession", "NodeReply"]

log = logging.getLogger(__name__)

USER_AGENT = "gonka-cli"
#: Statuses a gateway or load balancer sends when the node behind it is down or overloaded.
FAILOVER_STATUSES = frozenset({502, 503, 504})
DEFAULT_HINT = "check the connection or pass --node URL"


@dataclass(frozen=True)
class NodeReply:
    """A node's answer: its HTTP status, the JSON body (None unless `expect_json`), the node."""

    url: str
    status: int
    data: Any
    response: requests.Response


@dataclass(frozen=True)
class _Call:
    """One request as `FailoverSession.request` was asked to send it, to whichever node."""

    method: str
    path: str
    params: Mapping[str, Any] | None
    json: Any
    data: bytes | None
    headers: Mapping[str, str] | None
    node_headers: Callable[[str], Mapping[str, str]] | None
    timeout_s: float
    expect_json: bool
    stream: bool
    idempotent: bool


class _Skip(Exception):
    """This node failed in a way that allows trying the next one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FailoverSession:
    """HTTP requests to the first node of `urls` that answers (see the module docstring).

    `timeout_s` bounds the connection and each read of every request (a request may pass its
    own). `headers` go with every request (a User-Agent is set). `hint` ends the message of
    `NodeUnreachable`: what the user can do.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        hint: str = DEFAULT_HINT,
        failover_statuses: frozenset[int] = FAILOVER_STATUSES,
    ) -> None:
        import requests  # lazy: keeps `gonka --help` fast

        if isinstance(urls, str):
            raise TypeError("urls is a sequence of URLs, not one string")
        cleaned = [u.rstrip("/") for u in urls]
        if not cleaned:
            raise ValueError("a node URL is needed")
        self.timeout_s = timeout_s
        self.hint = hint
        self.failover_statuses = failover_statuses
        self._urls = list(dict.fromkeys(cleaned))
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        if headers:
            self._session.headers.update(headers)

    @property
    def url(self) -> str:
        """The node tried first: the last one that answered (the first given until then)."""
        with self._lock:
            return self._urls[0]

    @property
    def urls(self) -> tuple[str, ...]:
        """Every node, in the order the next request tries them."""
        with self._lock:
            return tuple(self._urls)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> FailoverSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        node_headers: Callable[[str], Mapping[str, str]] | None = None,
        timeout_s: float | None = None,
        expect_json: bool = True,
        stream: bool = False,
        idempotent: bool = True,
        node: str | None = None,
    ) -> NodeReply:
        """`method` `path` (starting with "/") on the first node that answers.

        `json` sends a JSON body; `data` sends bytes as they are (a signed body must reach the
        node byte for byte). Returns the answer, whatever its status (see the module docstring
        for which failures move on); raises `NodeUnreachable` when no node answered.
        """
        if node is not None:
            candidates = [node.rstrip("/")]
        else:
            candidates = list(self.urls)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        call = _Call(
            method=method,
            path=path,
            params=params,
            json=json,
            data=data,
            headers=headers,
            node_headers=node_headers,
            timeout_s=timeout,
            expect_json=expect_json,
            stream=stream,
            idempotent=idempotent,
        )
        failures: list[str] = []
        for url in candidates:
            try:
                reply = self._attempt(url, call)
            except _Skip as skip:
                failures.append(f"{url} ({skip.reason})")
                continue
            except _Stop as stop:
                failures.append(f"{url} ({stop.reason})")
                raise NodeUnreachable(
                    f"no node answered: tried {'; '.join(failures)}; the request may have "
                    "reached that node, so it was not sent to another"
                ) from None
            if node is None:
                self._promote(url)
            return reply
        raise NodeUnreachable(f"no node answered: tried {'; '.join(failures)}; {self.hint}")

    # -- one node ------------------------------------------------------------------------

    def _attempt(self, url: str, call: _Call) -> NodeReply:
        import requests

        timeout_s, idempotent = call.timeout_s, call.idempotent
        all_headers = dict(call.headers or {})
        if call.node_headers is not None:
            try:
                all_headers.update(call.node_headers(url))
            except NodeUnreachable as exc:
                raise _Skip(f"no identity: {exc}") from None
        try:
            response = self._session.request(
                call.method,
                url + call.path,
                params=call.params,
                json=call.json,
                data=call.data,
                headers=all_headers,
                timeout=timeout_s,
                stream=call.stream,
            )
        except requests.ConnectTimeout:
            raise _Skip(f"no connection in {timeout_s:g} s") from None
        except requests.Timeout:
            reason = f"no answer in {timeout_s:g} s"
            raise (_Skip(reason) if idempotent else _Stop(reason)) from None
        except requests.RequestException as exc:
            reason = _connection_reason(exc)
            if idempotent or _before_sending(exc):
                raise _Skip(reason) from None
            raise _Stop(reason) from None
        if response.status_code in self.failover_statuses:
            response.close()
            reason = f"HTTP {response.status_code}"
            raise (_Skip(reason) if idempotent else _Stop(reason))
        body: Any = None
        if call.expect_json:
            try:
                body = response.json()
            except (ValueError, RecursionError):
                response.close()
                raise _Skip(
                    f"HTTP {response.status_code}, not JSON: is this a node's API?"
                ) from None
        return NodeReply(url=url, status=response.status_code, data=body, response=response)

    def _promote(self, url: str) -> None:
        with self._lock:
            if url in self._urls and self._urls[0] != url:
                self._urls.remove(url)
                self._urls.insert(0, url)
                log.info("switched to node %s", url)


class _Stop(Exception):
    """This node may have acted on a request that must not run twice."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _before_sending(exc: Exception) -> bool:
    """Whether the request failed before any byte left (no connection was made)."""
    from urllib3.exceptions import NewConnectionError

    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        if isinstance(item, NewConnectionError):
            return True
        todo.extend(item.args)
        todo.append(getattr(item, "reason", None))
        todo.append(item.__cause__)
        todo.append(item.__context__)
    return False


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    for marker, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "DNS failure"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
        ("RemoteDisconnected", "connection closed"),
        ("Connection reset", "connection reset"),
    ):
        if marker in text:
            return reason
    return type(exc).__name__
