"""HTTP helpers shared by the node's two APIs (the Cosmos REST paths and the mining API).

Error bodies have the grpc-gateway shape `{"code": <gRPC code>, "message": ..., "details": []}`;
the mining API's refusals (`gonka_cli.protocol.Refusal`) add `error_code`. Bodies are limited
to `MAX_BODY_BYTES`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from gonka_cli.protocol import ErrorCode

MAX_BODY_BYTES = 1 << 20
_HTTP_FOR_GRPC = {3: 400, 5: 404, 8: 429, 12: 501, 13: 500, 16: 401}


class ApiError(Exception):
    """A refusal in the grpc-gateway shape; `error_code` is added to the body when given."""

    def __init__(
        self,
        grpc_code: int,
        message: str,
        status: int | None = None,
        *,
        error_code: ErrorCode | None = None,
    ) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code
        self.message = message
        self.status = status or _HTTP_FOR_GRPC.get(grpc_code, 400)
        self.error_code = error_code


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def error_response(
    status: int, grpc_code: int, message: str, error_code: ErrorCode | None = None
) -> Response:
    body: dict[str, Any] = {"code": grpc_code, "message": message, "details": []}
    if error_code is not None:
        body["error_code"] = error_code.value
    return json_response(body, status)


async def read_body(request: Request) -> bytes:
    """The raw request body, refusing bodies over `MAX_BODY_BYTES`."""
    too_large = ApiError(
        3,
        f"request body too large (limit {MAX_BODY_BYTES} bytes)",
        413,
        error_code=ErrorCode.BODY_TOO_LARGE,
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away mid-body: nobody reads the answer, and it is not our error.
        raise ApiError(
            3,
            "the client disconnected before sending the whole body",
            error_code=ErrorCode.BAD_REQUEST,
        ) from None
    return b"".join(chunks)


def parse_json(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(
            3, "request body is not valid JSON", error_code=ErrorCode.BAD_REQUEST
        ) from None
    if not isinstance(body, dict):
        raise ApiError(3, "request body must be a JSON object", error_code=ErrorCode.BAD_REQUEST)
    return body


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, refusing bodies over `MAX_BODY_BYTES`."""
    return parse_json(await read_body(request))
