"""The HTTP face of `gonka mlnode serve`: the two ports a host's decentralized-api (DAPI) drives.

`MlNodeServer` serves one `MlNode` (`gonka_cli.mlnode.service`) on two ports, as the stock ML
node does (spec §1.1):

- the **control port** (DAPI's `poc_port`, 8080): `/api/v1/state`, `stop`, `inference/up` and
  `down`, PoC v2 (`inference/pow/init/generate`, `status`, `stop`, `generate`,
  `generate/{request_id}`), the optional `gpu/devices`, `gpu/driver`, `models/status`,
  `models/download`, `models/list`, `models/space`, `DELETE /api/v1/models`, Prometheus
  metrics at `/api/v1/metrics`, gonka's own `/api/v1/gonka/status` (what `gonka mlnode status`
  reads), docker's `/health`, `/livez` and `/readyz` (always 200 while the server runs), and
  every `/v1/...` path of the inference port;
- the **inference port** (DAPI's `inference_port`, 5000): `/health` (200 once a model serves,
  else 503), `/v1/models` and `/v1/chat/completions`.

What DAPI sends, and how it is taken:

- An optional first path segment naming a version (`v\\d+(\\.\\d+)*[^/]*`, e.g.
  `/v3.0.8/api/v1/state`: DAPI inserts the chain's ML-node version) is dropped on both ports
  when what follows is one of the routes above. `/v1/models` keeps its `v1`: the segment is
  only a prefix when a route follows it (`/v1/v1/models`, `/v1/health`).
- Request bodies are JSON whatever the `Content-Type` says (DAPI sends none); an empty body is
  no body (`POST /api/v1/stop`). Bodies over `MAX_BODY_BYTES` answer 413.
- With a token, every request on both ports needs `Authorization: Bearer <token>` (401
  otherwise). The token is compared in constant time and never logged.
- Every error is JSON `{"detail": "..."}`, FastAPI's shape as the real ML node answers it, with
  the status the service gives (`MlNodeError.status`: 400, 404, 409, 422, 429, 503) or the
  server's own (400 bad JSON, 401, 404 unknown path, 405, 413). A 500 means a bug in gonka: it
  is logged with its traceback and answered without details.

Chat streaming: `"stream": true` answers server-sent events in OpenAI's
`chat.completion.chunk` shape, as vLLM does: a first chunk with the assistant role, one chunk
per generated token carrying that token's `logprobs` entry (and `token_ids` when asked), a
chunk with the `finish_reason`, with `stream_options.include_usage` a chunk with `usage` and
no choices, then `data: [DONE]`. The device pool runs whole requests, so the chunks are cut from
the full answer once it is complete: the stream starts when the answer is done, and its
deltas join into exactly the plain answer's `content` (the whole text rides on the first
token's chunk, since the answer carries no per-token text). A request refused before it runs
(503 while PoC generation runs, 400 for a bad body) answers a plain JSON error, not a stream.

Calls into the service that may wait (loading a model, a chat, a `wait=true` job, stopping the
pool) run on worker threads, never on the event loop, so the state and status polls DAPI makes
every few seconds answer while they run.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import logging
import math
import re
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from gonka_cli.errors import GonkaError, InputError
from gonka_cli.mlnode.messages import MlNodeError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from gonka_cli.mlnode.downloads import ModelDownloads
    from gonka_cli.mlnode.service import MlNode

__all__ = [
    "MAX_BODY_BYTES",
    "HttpError",
    "MlNodeServer",
    "chat_stream_events",
    "parse_body",
    "strip_version_prefix",
]

logger = logging.getLogger(__name__)

#: The largest request body taken. A validation job of the queue's whole cap (100,000
#: artifacts of ~60 bytes of JSON each) is ~6 MB, and a chat replay of a long answer with its
#: `enforced_tokens` can reach tens of MB: 64 MiB leaves room for both.
MAX_BODY_BYTES = 64 << 20

START_TIMEOUT_S = 30.0
#: How long in-flight requests get to finish once the server is asked to stop.
GRACEFUL_SHUTDOWN_S = 5
#: How long an idle client connection is kept open.
KEEP_ALIVE_S = 75
#: Threads for calls that may wait long (chat, model loads, `wait=true` jobs), and for the
#: quick ones (state, status): separate, so that long calls never hold up DAPI's polls.
SLOW_THREADS = 64
QUICK_THREADS = 16

_VERSION_SEGMENT = re.compile(r"v\d+(?:\.\d+)*[^/]*")
#: The first segments of the routes; a version prefix is dropped only in front of one of them.
_ROUTE_ROOTS = frozenset({"api", "v1", "health", "livez", "readyz"})
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Endpoint = Callable[["Request"], Awaitable["Response"]]


class HttpError(Exception):
    """A refusal the server itself makes (bad JSON, too large, unauthorized...)."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


# -- request helpers ---------------------------------------------------------------------


def strip_version_prefix(path: str) -> str:
    """`path` without a first segment naming a version, when a route follows it.

    `/v3.0.8/api/v1/state` -> `/api/v1/state`, `/v1/v1/models` -> `/v1/models`, but
    `/v1/models` stays as it is (its `v1` is the route's own).
    """
    if not path.startswith("/v"):
        return path
    first, slash, rest = path[1:].partition("/")
    if not slash or not _VERSION_SEGMENT.fullmatch(first):
        return path
    if rest.partition("/")[0] not in _ROUTE_ROOTS:
        return path
    return "/" + rest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(raw: bytes) -> dict[str, Any] | None:
    """A request body: None when empty (or `null`), else a JSON object; HttpError(400)
    otherwise. NaN and Infinity are refused: they are not JSON."""
    if not raw.strip():
        return None
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and integers too long to convert as well.
        raise HttpError(400, "the request body is not valid JSON") from None
    if body is None:
        return None
    if not isinstance(body, dict):
        raise HttpError(400, f"the request body must be a JSON object, not {_json_type(body)}")
    return body


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


async def _read_body(request: Request) -> bytes:
    from starlette.requests import ClientDisconnect

    too_large = HttpError(413, f"the request body is over the limit of {MAX_BODY_BYTES} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit():
        if int(declared) > MAX_BODY_BYTES:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody will read the answer; say so in the same shape anyway.
        raise HttpError(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


async def _json_body(request: Request) -> dict[str, Any] | None:
    return parse_body(await _read_body(request))


async def _drain(request: Request) -> None:
    """Read and drop a body that the route does not use (bounded like any other)."""
    await _read_body(request)


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    from starlette.responses import Response

    return Response(
        _dumps(data), status_code=status, headers=headers, media_type="application/json"
    )


def _dumps(data: Any) -> str:
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # A NaN or an infinity from the service: JSON has no such numbers.
        return json.dumps(_finite(data), separators=(",", ":"))


#: What vLLM writes for a logprob of minus infinity (a masked token), spec §1.5.
MASKED_LOGPROB = -9999.0


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        # -inf can only be a masked token's logprob; NaN and +inf have no JSON form at all.
        return MASKED_LOGPROB if value == -math.inf else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"detail": detail}, status, headers)


def _status_of(exc: GonkaError) -> int:
    status = getattr(exc, "status", None)
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
        return status
    # A core error that the service did not translate: bad input is the client's, anything
    # else (a device that failed, a model that cannot load) leaves the node unable to serve.
    return 400 if isinstance(exc, InputError) else 503


# -- chat streaming ----------------------------------------------------------------------


def _event(data: Mapping[str, Any]) -> bytes:
    return b"data: " + _dumps(data).encode() + b"\n\n"


def chat_stream_events(answer: Mapping[str, Any], *, include_usage: bool) -> Iterator[bytes]:
    """The server-sent events of a finished chat answer (`chat.completion`, as the service
    returns it), in OpenAI's `chat.completion.chunk` form, ending with `data: [DONE]`.

    One chunk per generated token carries that token's logprobs entry and id; the whole
    content rides on the first of them, so the deltas join into exactly the answer's content.
    """
    choices = answer.get("choices") or [{}]
    choice: Mapping[str, Any] = choices[0] if isinstance(choices[0], Mapping) else {}
    message = choice.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    content = content if isinstance(content, str) else ""
    logprobs = choice.get("logprobs")
    entries = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    entries = entries if isinstance(entries, list) else None
    token_ids = choice.get("token_ids") if isinstance(choice.get("token_ids"), list) else None
    n_tokens = max(len(entries or ()), len(token_ids or ()))
    head = {
        "id": answer.get("id"),
        "object": "chat.completion.chunk",
        "created": answer.get("created"),
        "model": answer.get("model"),
    }

    def chunk(delta: dict[str, Any], **extra: Any) -> bytes:
        body: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None}
        body["finish_reason"] = None
        body.update(extra)
        return _event({**head, "choices": [body]})

    first: dict[str, Any] = {**head, "choices": []}
    first["choices"] = [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    if "prompt_token_ids" in answer:
        first["prompt_token_ids"] = answer["prompt_token_ids"]
    yield _event(first)
    if n_tokens == 0 and content:
        yield chunk({"content": content})
    for i in range(n_tokens):
        extra: dict[str, Any] = {}
        if entries is not None and i < len(entries):
            extra["logprobs"] = {"content": [entries[i]]}
        if token_ids is not None and i < len(token_ids):
            extra["token_ids"] = [token_ids[i]]
        yield chunk({"content": content if i == 0 else ""}, **extra)
    yield chunk({}, finish_reason=choice.get("finish_reason"))
    if include_usage:
        yield _event({**head, "choices": [], "usage": answer.get("usage")})
    yield b"data: [DONE]\n\n"


def _stream_options(body: Mapping[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage) from a chat body; HttpError(400) for wrong types."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise HttpError(400, f"stream must be true or false, got {stream!r:.40}")
    options = body.get("stream_options")
    if options is None:
        return bool(stream), False
    if not isinstance(options, Mapping):
        raise HttpError(400, 'stream_options must be an object such as {"include_usage": true}')
    usage = options.get("include_usage")
    if usage is not None and not isinstance(usage, bool):
        raise HttpError(
            400, f"stream_options.include_usage must be true or false, got {usage!r:.40}"
        )
    return bool(stream), bool(usage)


def _late(owner: Any, name: str) -> Callable[..., Any]:
    """`owner.name`, looked up at each call: what answers is the service's method as it is
    then."""

    def method(*args: Any) -> Any:
        return getattr(owner, name)(*args)

    return method


# -- the applications --------------------------------------------------------------------


class _Apps:
    """The two Starlette applications over one node, and the threads their calls run on."""

    def __init__(self, node: MlNode, downloads: ModelDownloads) -> None:
        import anyio

        self.node = node
        self.downloads = downloads
        self.slow = anyio.CapacityLimiter(SLOW_THREADS)
        self.quick = anyio.CapacityLimiter(QUICK_THREADS)
        self.inference = self._inference_app()
        self.control = self._control_app()

    async def _call(self, fn: Callable[..., Any], *args: Any, slow: bool = False) -> Any:
        import anyio.to_thread

        limiter = self.slow if slow else self.quick
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    def _guard(self, fn: Endpoint) -> Endpoint:
        """Every error an endpoint meets becomes a JSON answer; a bug is logged, not shown."""

        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except HttpError as exc:
                return _error(exc.status, exc.detail, exc.headers)
            except GonkaError as exc:
                return _error(_status_of(exc), exc.message)
            except Exception:
                logger.exception("%s %s failed", request.method, request.url.path)
                return _error(500, "internal error in the ML node; see its log")

        return endpoint

    def _starlette(self, routes: list[Any]) -> Any:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException

        async def http_error(request: Request, exc: Exception) -> Response:
            code = exc.status_code if isinstance(exc, HTTPException) else 500
            headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
            detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
            return _error(code, str(detail), headers)

        app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
        app.router.redirect_slashes = False  # /api/v1/state/ is not found, not redirected
        return app

    # -- inference port ------------------------------------------------------------------

    def _inference_routes(self) -> list[Any]:
        from starlette.routing import Route

        node = self.node

        async def health(request: Request) -> Response:
            if await self._call(_late(node, "healthy")):
                return _json({"status": "ok"})
            return _error(503, "no model is being served; load one with POST /api/v1/inference/up")

        async def models(request: Request) -> Response:
            return _json(await self._call(_late(node, "models")))

        async def chat(request: Request) -> Response:
            from starlette.responses import StreamingResponse

            body = await _json_body(request)
            if body is None:
                raise HttpError(400, "the request body must be a chat completion object")
            stream, include_usage = _stream_options(body)
            answer = await self._call(_late(node, "chat"), body, slow=True)
            if not stream:
                return _json(answer)
            return StreamingResponse(
                iter(list(chat_stream_events(answer, include_usage=include_usage))),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )

        return [
            Route("/health", self._guard(health), methods=["GET"]),
            Route("/v1/models", self._guard(models), methods=["GET"]),
            Route("/v1/chat/completions", self._guard(chat), methods=["POST"]),
        ]

    def _inference_app(self) -> Any:
        return self._starlette(self._inference_routes())

    # -- control port --------------------------------------------------------------------

    def _control_app(self) -> Any:
        from starlette.responses import Response
        from starlette.routing import Route

        node, downloads = self.node, self.downloads
        call, late = self._call, _late

        def get(path: str, fn: Callable[[], Any], *, slow: bool = False) -> Any:
            async def endpoint(request: Request) -> Response:
                return _json(await call(fn, slow=slow))

            return Route(path, self._guard(endpoint), methods=["GET"])

        def post(path: str, fn: Callable[[Any], Any], *, slow: bool = False) -> Any:
            async def endpoint(request: Request) -> Response:
                body = await _json_body(request)
                return _json(await call(fn, body, slow=slow))

            return Route(path, self._guard(endpoint), methods=["POST"])

        def post_no_body(path: str, fn: Callable[[], Any], *, slow: bool = False) -> Any:
            # DAPI sends these with no body; whatever comes is read and ignored.
            async def endpoint(request: Request) -> Response:
                await _drain(request)
                return _json(await call(fn, slow=slow))

            return Route(path, self._guard(endpoint), methods=["POST"])

        async def alive(request: Request) -> Response:
            return _json({"status": "ok"})

        async def job(request: Request) -> Response:
            request_id = request.path_params["request_id"]
            return _json(await call(late(node, "job"), request_id))

        async def metrics(request: Request) -> Response:
            body, media = await call(late(node.metrics, "render"))
            return Response(body, headers={"Cache-Control": "no-store"}, media_type=media)

        async def download(request: Request) -> Response:
            body = await _json_body(request)
            status, answer = await call(downloads.download, body, slow=True)
            return _json(answer, status)

        async def delete_model(request: Request) -> Response:
            body = await _json_body(request)
            return _json(await call(downloads.delete, body, slow=True))

        from gonka_cli.mlnode import hardware

        routes = [
            Route("/health", self._guard(alive), methods=["GET"]),
            Route("/livez", self._guard(alive), methods=["GET"]),
            Route("/readyz", self._guard(alive), methods=["GET"]),
            get("/api/v1/state", late(node, "state")),
            post_no_body("/api/v1/stop", late(node, "stop"), slow=True),
            post("/api/v1/inference/up", late(node, "inference_up"), slow=True),
            post_no_body("/api/v1/inference/down", late(node, "inference_down"), slow=True),
            post("/api/v1/inference/pow/init/generate", late(node, "init_generate"), slow=True),
            get("/api/v1/inference/pow/status", late(node, "pow_status")),
            post("/api/v1/inference/pow/stop", late(node, "pow_stop"), slow=True),
            post("/api/v1/inference/pow/generate", late(node, "generate"), slow=True),
            Route(
                "/api/v1/inference/pow/generate/{request_id}",
                self._guard(job),
                methods=["GET"],
            ),
            get("/api/v1/gonka/status", late(node, "status")),
            Route("/api/v1/metrics", self._guard(metrics), methods=["GET"]),
            get("/api/v1/gpu/devices", hardware.gpu_devices, slow=True),
            get("/api/v1/gpu/driver", hardware.gpu_driver, slow=True),
            post("/api/v1/models/status", downloads.status, slow=True),
            Route("/api/v1/models/download", self._guard(download), methods=["POST"]),
            get("/api/v1/models/list", downloads.list, slow=True),
            get("/api/v1/models/space", downloads.space, slow=True),
            Route("/api/v1/models", self._guard(delete_model), methods=["DELETE"]),
        ]
        # The stock control API proxies /v1/* to vLLM: here, the inference port's handlers.
        routes += [r for r in self._inference_routes() if r.path.startswith("/v1/")]
        return self._starlette(routes)


class _Front:
    """The ASGI entry of both ports: drops a version prefix, checks the token, and hands the
    request to the application of the port it came in on."""

    def __init__(self, apps: _Apps, control_port: int, token: str | None) -> None:
        self.apps = apps
        self.control_port = control_port
        self.token = None if token is None else token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # no lifespan, no websockets
        path = scope.get("path", "")
        stripped = strip_version_prefix(path)
        if stripped != path:
            scope = dict(scope)
            scope["path"] = stripped
            raw = scope.get("raw_path")
            if isinstance(raw, bytes):
                cut = raw.find(b"/", 1)
                scope["raw_path"] = raw[cut:] if cut > 0 else raw
        if self.token is not None and not self._authorized(scope):
            response = _error(
                401,
                "this ML node needs Authorization: Bearer <token>, the --token it was started with",
                {"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        server = scope.get("server")
        port = server[1] if server else None
        app = self.apps.control if port == self.control_port else self.apps.inference
        await app(scope, receive, send)

    def _authorized(self, scope: Mapping[str, Any]) -> bool:
        assert self.token is not None
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
                break
        scheme, _, credential = given.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(credential.strip(), self.token)


# -- the server --------------------------------------------------------------------------


class MlNodeServer:
    """Serves an `MlNode` to DAPI on a control port and an inference port (see the module
    docstring for the routes).

    One uvicorn server listens on both ports, on a daemon thread with its own event loop.
    `start()` serves in the background (port 0 picks a free port: read `control_url` and
    `inference_url`), `stop()` stops; `serve()` serves in the foreground until Ctrl-C or
    SIGTERM, then closes the node. The node's own `start()` is the caller's (it may preload a
    model).

    Example::

        node = MlNode(config)
        node.start()
        exit_code = MlNodeServer(node, token=token).serve()
    """

    def __init__(
        self,
        node: MlNode,
        *,
        host: str = "127.0.0.1",
        control_port: int = 8080,
        inference_port: int = 5000,
        token: str | None = None,
        downloads: ModelDownloads | None = None,
    ) -> None:
        for option, port in (
            ("--control-port", control_port),
            ("--inference-port", inference_port),
        ):
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise InputError(f"invalid {option} {port!r}: give a port from 1 to 65535")
        if control_port and control_port == inference_port:
            raise InputError(
                f"--control-port and --inference-port are both {control_port}: give two ports"
            )
        if not host.strip():
            raise InputError("--host is empty: give the address to listen on, e.g. 127.0.0.1")
        if token is not None and (
            not token.strip() or not token.isascii() or token != token.strip()
        ):
            raise InputError(
                "the token must be printable ASCII without spaces at either end; "
                "give one such as the output of `openssl rand -hex 32`"
            )
        self.node = node
        self.host = host
        self.control_port = control_port
        self.inference_port = inference_port
        self._token = token
        self._downloads = downloads
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._failure: BaseException | None = None

    @property
    def control_url(self) -> str:
        """The control port's base URL, e.g. `http://127.0.0.1:8080` (the bound port once
        started)."""
        return f"http://{_host_port(self.host, self.control_port)}"

    @property
    def inference_url(self) -> str:
        """The inference port's base URL, e.g. `http://127.0.0.1:5000`."""
        return f"http://{_host_port(self.host, self.inference_port)}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Bind both ports and serve from a daemon thread; return once they answer.

        Raises `MlNodeError` when a port cannot be bound (in use, not an address of this
        machine) or the server does not start. Does nothing if already serving.
        """
        import uvicorn

        with self._lock:
            if self._server is not None:
                return
            control = _bind(self.host, self.control_port, "--control-port")
            try:
                inference = _bind(self.host, self.inference_port, "--inference-port")
            except BaseException:
                control.close()
                raise
            sockets = [control, inference]
            self.control_port = int(control.getsockname()[1])
            self.inference_port = int(inference.getsockname()[1])
            try:
                if self._downloads is None:
                    from gonka_cli.mlnode.downloads import ModelDownloads

                    self._downloads = ModelDownloads()
                apps = _Apps(self.node, self._downloads)
                config = uvicorn.Config(
                    _Front(apps, self.control_port, self._token),
                    log_config=None,  # logs go through gonka_cli's loggers only
                    log_level="warning",
                    access_log=False,  # the access log would hold nothing DAPI needs
                    lifespan="off",
                    ws="none",  # no websockets: an upgrade request is a plain request
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                    # Longer than DAPI's polls are apart, so that its client seldom reuses a
                    # connection at the moment the server drops it (Go does not resend a POST).
                    timeout_keep_alive=KEEP_ALIVE_S,
                    limit_concurrency=1024,
                )
                server = uvicorn.Server(config)
            except BaseException:
                for sock in sockets:
                    sock.close()
                raise
            self._failure = None

            def serve() -> None:
                try:
                    server.run(sockets=sockets)
                except BaseException as exc:  # reported by start() or serve()
                    self._failure = exc

            thread = threading.Thread(target=serve, name="gonka-mlnode-http", daemon=True)
            thread.start()
            limit = time.monotonic() + START_TIMEOUT_S
            while not server.started:
                if self._failure is not None or not thread.is_alive() or time.monotonic() > limit:
                    server.should_exit = True
                    thread.join(timeout=10)
                    for sock in sockets:
                        sock.close()
                    why = self._failure or "no answer"
                    raise MlNodeError(503, f"the ML node's HTTP server did not start: {why}")
                time.sleep(0.005)
            self._server, self._thread, self._sockets = server, thread, sockets
        logger.info(
            "serving the ML node: control %s, inference %s", self.control_url, self.inference_url
        )

    def stop(self) -> None:
        """Stop serving (in-flight requests get a few seconds) and free both ports. The node is
        left open. Safe to call more than once, or before `start()`."""
        with self._lock:
            server, thread, sockets = self._server, self._thread, self._sockets
            self._server, self._thread, self._sockets = None, None, []
        if server is None:
            return
        server.should_exit = True
        if thread is not None:
            thread.join(timeout=GRACEFUL_SHUTDOWN_S + 10)
        for sock in sockets:
            sock.close()
        logger.debug("stopped serving the ML node")

    def serve(self) -> int:
        """Serve in the foreground until SIGINT or SIGTERM, then stop and close the node
        (callbacks not yet delivered stay in its outbox for the next start).

        Returns the exit code: 130 after SIGINT (Ctrl-C), 0 after SIGTERM. A second signal
        while shutting down interrupts the shutdown (KeyboardInterrupt for Ctrl-C). Call it
        from the main thread.
        """
        stopping = threading.Event()
        received: list[int] = []
        previous: dict[int, Any] = {}
        failure: BaseException | None = None

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            previous.clear()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            received.append(signum)
            stopping.set()

        for sig in _STOP_SIGNALS:
            previous[sig] = signal.signal(sig, on_signal)
        try:
            self.start()
            while not stopping.wait(0.5):
                thread = self._thread
                if thread is None or not thread.is_alive():
                    break
            # From here a second Ctrl-C is the user's to force.
            restore()
            failure = self._failure if not received else None
            logger.info("stopping the ML node")
            self.stop()
        finally:
            restore()
            with contextlib.suppress(Exception):
                self.stop()
            self.node.close()
        if failure is not None:
            raise MlNodeError(503, f"the ML node's HTTP server stopped: {failure}")
        if not received:
            raise MlNodeError(503, "the ML node's HTTP server stopped by itself; see its log")
        return 130 if received[0] == signal.SIGINT else 0

    def __enter__(self) -> MlNodeServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind(host: str, port: int, option: str) -> socket.socket:
    """A listening socket (port 0: a free one); MlNodeError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it small answers wait for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        where = _host_port(host, port)
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            hint = f"is another ML node running? Stop it or pick another {option}"
        elif exc.errno == errno.EACCES:
            hint = f"pick a port from 1024 up with {option}, or run with the rights for it"
        else:
            hint = f"check --host and {option}"
        raise MlNodeError(503, f"cannot listen on {where} ({reason}); {hint}") from None
    sock.setblocking(False)
    return sock
