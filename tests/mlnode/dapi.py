"""DAPI's side of the ML-node contract, for tests: its HTTP client and its callback server.

`DapiClient` is written from the Go decentralized-api's ML-node client (spec §1.1-1.3:
`mlnodeclient/client.go`, `poc_v2_requests.go`), not from gonka's server:

- POST bodies are JSON bytes sent with **no Content-Type header** (`utils.SendPostJsonRequest`
  never sets one); `POST /api/v1/stop` has no body at all;
- the request structs keep Go's field names and `omitempty` rules (`url`, `wait`,
  `validation`, `stat_test`, `poc_stronger_rng` left out when empty; `k_dim` and `batch_size`
  never sent; `nonces` is `null` when nil, as Go encodes a nil slice);
- an optional version segment goes between the host and the path (`/v3.0.8/api/v1/state`);
- an optional bearer token (`Authorization: Bearer T`).

Chat requests are the one exception: that path sets `Content-Type: application/json` (§1.5).

`FakeDapi` is the callback side (spec §1.4): a real HTTP server on 127.0.0.1 that serves
`POST /v2/poc-batches/:model_id/generated` and `/validated` as the Go handlers do. It matches
routes on the once-decoded path (Go's `URL.Path`) and unescapes the model id once more, so a
sender that re-encodes or decodes the double-escaped id misses the route or the model. It
answers 200 with an empty body, 400 for bad JSON / bad base64 / an empty vector / an unknown
`node_id` / a `block_height` other than the active stage's, 503 outside its accept window,
drops duplicate nonces silently, and records every POST with its arrival time. It can be taken
down and brought back on the same port.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

__all__ = [
    "DEFAULT_STAT_TEST",
    "DapiClient",
    "FakeDapi",
    "Post",
    "callback_url",
    "dapi_chat_body",
    "generate_request",
    "init_generate_request",
    "path_escape",
]

#: The stat-test parameters DAPI sends by default (chain `stat_test` defaults).
DEFAULT_STAT_TEST = {"dist_threshold": 0.4, "p_mismatch": 0.1, "p_value_threshold": 0.05}

# Go's url.PathEscape leaves unreserved characters and these sub-delims alone.
_PATH_SAFE = "-_.~!$&'()*+,;=:@"


def path_escape(text: str) -> str:
    """Go's `url.PathEscape` (a path segment: '/' is escaped)."""
    return urllib.parse.quote(text, safe=_PATH_SAFE)


def callback_url(base: str, model_id: str) -> str:
    """DAPI's callback base for a model: `{base}/v2/poc-batches/{PathEscape(PathEscape(id))}`."""
    return f"{base.rstrip('/')}/v2/poc-batches/{path_escape(path_escape(model_id))}"


def _omit_empty(body: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Drop the `omitempty` fields holding Go's zero value."""
    for name in names:
        if name in body and body[name] in (None, "", False, 0, [], {}):
            del body[name]
    return body


def init_generate_request(
    *,
    block_hash: str,
    block_height: int,
    public_key: str,
    node_id: int,
    node_count: int,
    model: str,
    seq_len: int,
    url: str = "",
    poc_stronger_rng: bool = False,
) -> dict[str, Any]:
    """`PoCInitGenerateRequestV2` as encoding/json writes it."""
    body = {
        "block_hash": block_hash,
        "block_height": block_height,
        "public_key": public_key,
        "node_id": node_id,
        "node_count": node_count,
        "params": {"model": model, "seq_len": seq_len},
        "url": url,
        "poc_stronger_rng": poc_stronger_rng,
    }
    return _omit_empty(body, ("url", "poc_stronger_rng"))


def generate_request(
    *,
    block_hash: str,
    block_height: int,
    public_key: str,
    node_id: int,
    node_count: int,
    nonces: Sequence[int] | None,
    model: str,
    seq_len: int,
    wait: bool = False,
    url: str = "",
    artifacts: Sequence[Mapping[str, Any]] | None = None,
    stat_test: Mapping[str, float] | None = None,
    poc_stronger_rng: bool = False,
) -> dict[str, Any]:
    """`PoCGenerateRequestV2` as encoding/json writes it (`validation` and `stat_test` are
    pointers: absent when nil; `nonces` is a slice without omitempty: null when nil)."""
    body: dict[str, Any] = {
        "block_hash": block_hash,
        "block_height": block_height,
        "public_key": public_key,
        "node_id": node_id,
        "node_count": node_count,
        "nonces": None if nonces is None else [int(n) for n in nonces],
        "params": {"model": model, "seq_len": seq_len},
        "wait": wait,
        "url": url,
        "poc_stronger_rng": poc_stronger_rng,
    }
    _omit_empty(body, ("wait", "url", "poc_stronger_rng"))
    if artifacts is not None:
        body["validation"] = {
            "artifacts": [
                {"nonce": int(a["nonce"]), "vector_b64": str(a["vector_b64"])} for a in artifacts
            ]
        }
    if stat_test is not None:
        body["stat_test"] = dict(stat_test)
    return body


class DapiClient:
    """DAPI's ML-node client: one method per call it makes (spec §1.2), answering the
    `requests.Response` so that a test sees the status code and the raw body."""

    def __init__(
        self,
        poc_url: str,
        inference_url: str,
        *,
        version: str | None = None,
        token: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.poc_url = poc_url.rstrip("/")
        self.inference_url = inference_url.rstrip("/")
        self.version = version
        self.timeout_s = timeout_s
        self.session = requests.Session()
        # requests adds no Content-Type for `data=` bytes; keep its other defaults out as well
        # (Go's client sends User-Agent, Accept-Encoding and Content-Length only).
        self.session.headers = requests.structures.CaseInsensitiveDict(
            {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
        )
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # -- plumbing --------------------------------------------------------------------------

    def url(self, base: str, path: str) -> str:
        """`http://host:port/{version}{segment}{path}` as `broker.go` builds it."""
        prefix = f"/{self.version}" if self.version else ""
        return f"{base}{prefix}{path}"

    def get(self, base: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(base, path), timeout=self.timeout_s, **kwargs)

    def post(
        self, base: str, path: str, payload: Any = None, *, body: bool = True, **kwargs: Any
    ) -> requests.Response:
        """POST `payload` as JSON bytes without Content-Type (`body=False`: no body at all)."""
        data = json.dumps(payload, separators=(",", ":")).encode() if body else None
        return self.session.post(self.url(base, path), data=data, timeout=self.timeout_s, **kwargs)

    # -- control port ------------------------------------------------------------------------

    def state(self) -> requests.Response:
        return self.get(self.poc_url, "/api/v1/state")

    def stop(self) -> requests.Response:
        return self.post(self.poc_url, "/api/v1/stop", body=False)

    def inference_up(
        self, model: str, additional_args: Sequence[str] = (), dtype: str = "auto"
    ) -> requests.Response:
        payload = {"model": model, "dtype": dtype, "additional_args": list(additional_args)}
        return self.post(self.poc_url, "/api/v1/inference/up", payload)

    def inference_down(self) -> requests.Response:
        return self.post(self.poc_url, "/api/v1/inference/down", body=False)

    def init_generate(self, request: Mapping[str, Any]) -> requests.Response:
        return self.post(self.poc_url, "/api/v1/inference/pow/init/generate", dict(request))

    def pow_status(self) -> requests.Response:
        return self.get(self.poc_url, "/api/v1/inference/pow/status")

    def pow_stop(self) -> requests.Response:
        return self.post(self.poc_url, "/api/v1/inference/pow/stop", body=False)

    def generate(self, request: Mapping[str, Any]) -> requests.Response:
        return self.post(self.poc_url, "/api/v1/inference/pow/generate", dict(request))

    def job(self, request_id: str) -> requests.Response:
        return self.get(self.poc_url, f"/api/v1/inference/pow/generate/{request_id}")

    def gpu_devices(self) -> requests.Response:
        return self.get(self.poc_url, "/api/v1/gpu/devices")

    def models_status(self, hf_repo: str) -> requests.Response:
        payload = {"hf_repo": hf_repo, "hf_commit": None}
        return self.post(self.poc_url, "/api/v1/models/status", payload)

    def metrics(self) -> requests.Response:
        return self.get(self.poc_url, "/api/v1/metrics")

    # -- inference port ------------------------------------------------------------------------

    def health(self) -> requests.Response:
        return self.get(self.inference_url, "/health")

    def models(self) -> requests.Response:
        return self.get(self.inference_url, "/v1/models")

    def chat(self, body: Mapping[str, Any], *, stream: bool = False) -> requests.Response:
        return self.session.post(
            self.url(self.inference_url, "/v1/chat/completions"),
            data=json.dumps(dict(body)).encode(),
            headers={"Content-Type": "application/json"},
            timeout=self.timeout_s,
            stream=stream,
        )


def dapi_chat_body(
    user_body: Mapping[str, Any], *, seed: int, logprobs_mode: str = "processed_logprobs"
) -> dict[str, Any]:
    """A user's chat body as `ModifyRequestBodyWithLogprobsMode` rewrites it (spec §1.5)."""
    body = dict(user_body)
    body["logprobs"] = True
    body["top_logprobs"] = 5
    body["skip_special_tokens"] = False
    body["return_token_ids"] = True
    body.setdefault("seed", seed)
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}
    body["logprobs_mode"] = logprobs_mode
    return body


# --- the callback server -------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """One POST the fake DAPI received."""

    kind: str  # "generated", "validated" or "" (no route)
    raw_path: str
    model_id: str | None
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int
    at: float  # time.monotonic() on arrival


@dataclass
class _Stage:
    accepting: bool = True
    accepting_validated: bool = True
    block_height: int | None = None
    node_ids: set[int] | None = None
    fail_next: int = 0


@dataclass
class FakeDapi:
    """DAPI's ML-node callback server on 127.0.0.1 (module docstring).

    `stored[model_id]` maps nonce -> vector_b64 of accepted artifacts (first one wins);
    `validated[model_id]` lists accepted `/validated` bodies; `posts` lists every POST.
    Set `block_height` / `node_ids` to check them (None: anything goes), `accepting` False for
    503 on `/generated`, `fail_next = n` to answer the next n POSTs 503.
    """

    port: int = 0
    posts: list[Post] = field(default_factory=list)
    stored: dict[str, dict[int, str]] = field(default_factory=dict)
    validated: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    duplicates: int = 0

    def __post_init__(self) -> None:
        self.stage = _Stage()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeDapi:
        """Serve (again, on the same port once it has one)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = fake._handle(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                if answer:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take the server down (the port is closed: senders get connection refused)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeDapi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read ---------------------------------------------------------------------

    def of(self, kind: str, status: int | None = None) -> list[Post]:
        with self.lock:
            return [
                p for p in self.posts if p.kind == kind and (status is None or p.status == status)
            ]

    def artifacts(self, model_id: str) -> dict[int, str]:
        with self.lock:
            return dict(self.stored.get(model_id, {}))

    def wait_for(self, predicate: Any, timeout_s: float, what: str) -> Any:
        """Wait until `predicate()` is truthy (re-checked on every POST); a safety net only."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fake DAPI: timed out waiting for {what}")
                self.changed.wait(min(left, 0.5))

    # -- the handlers (post_generated_artifacts_v2_handler.go and the validated one) ------------

    def _handle(self, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        now = time.monotonic()
        kind, model_id = self._route(raw_path)
        parsed: Any = None
        if kind is None:
            status, answer = 404, b'{"error":"not found"}'
        else:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = None
                status, answer = 400, b'{"error":"invalid request body"}'
            else:
                status, answer = self._check(kind, str(model_id), parsed)
        with self.changed:
            self.posts.append(
                Post(kind or "", raw_path, model_id, headers, body, parsed, status, now)
            )
            self.changed.notify_all()
        return status, answer

    @staticmethod
    def _route(raw_path: str) -> tuple[str | None, str | None]:
        path = raw_path.split("?", 1)[0]
        # Go's router sees URL.Path: the raw path decoded once.
        parts = urllib.parse.unquote(path).split("/")
        if len(parts) != 5 or parts[:3] != ["", "v2", "poc-batches"]:
            return None, None
        if parts[4] not in ("generated", "validated") or not parts[3]:
            return None, None
        # ... and the handler unescapes the model id once more.
        return parts[4], urllib.parse.unquote(parts[3])

    def _check(self, kind: str, model_id: str, body: Any) -> tuple[int, bytes]:
        stage = self.stage
        if stage.fail_next > 0:
            stage.fail_next -= 1
            return 503, b'{"error":"store unavailable"}'
        if not isinstance(body, dict):
            return 400, b'{"error":"invalid request body"}'
        if kind == "validated":
            if not stage.accepting_validated:
                return 503, b'{"error":"not in a validation window"}'
            problem = _validated_problem(body)
            if problem:
                return 400, json.dumps({"error": problem}).encode()
            with self.lock:
                self.validated.setdefault(model_id, []).append(body)
            return 200, b""
        if not stage.accepting:
            return 503, b'{"error":"not accepting artifacts now"}'
        node_id = body.get("node_id")
        if not isinstance(node_id, int) or (
            stage.node_ids is not None and node_id not in stage.node_ids
        ):
            return 400, b'{"error":"unknown node_id"}'
        height = body.get("block_height")
        if not isinstance(height, int) or (
            stage.block_height is not None and height != stage.block_height
        ):
            return 400, b'{"error":"block_height does not match the active PoC stage"}'
        artifacts = body.get("artifacts")
        if not isinstance(artifacts, list):
            return 400, b'{"error":"invalid request body"}'
        decoded: list[tuple[int, str]] = []
        for artifact in artifacts:
            if not isinstance(artifact, dict):
                return 400, b'{"error":"invalid artifact"}'
            nonce, vector = artifact.get("nonce"), artifact.get("vector_b64")
            if not isinstance(nonce, int) or not isinstance(vector, str):
                return 400, b'{"error":"invalid artifact"}'
            try:
                raw = base64.b64decode(vector, validate=True)
            except (binascii.Error, ValueError):
                return 400, b'{"error":"invalid base64 vector"}'
            if not raw:
                return 400, b'{"error":"empty vector"}'
            decoded.append((nonce, vector))
        with self.lock:
            store = self.stored.setdefault(model_id, {})
            for nonce, vector in decoded:
                if nonce in store:
                    self.duplicates += 1  # dropped silently, as the SMST store does
                else:
                    store[nonce] = vector
        return 200, b""


def _validated_problem(body: Mapping[str, Any]) -> str:
    for name, kinds in (
        ("request_id", (str,)),
        ("block_hash", (str,)),
        ("block_height", (int,)),
        ("public_key", (str,)),
        ("node_id", (int,)),
        ("n_total", (int,)),
        ("n_mismatch", (int,)),
        ("mismatch_nonces", (list,)),
        ("p_value", (int, float)),
        ("fraud_detected", (bool,)),
    ):
        if name not in body or not isinstance(body[name], kinds):
            return f"invalid {name}"
    return ""
