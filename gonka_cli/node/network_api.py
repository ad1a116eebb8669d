"""The node's mining API: identity, epochs, participants, the work queue and inference.

Every participant and requester call is a signed request (`chain.signed_request`), checked
against the participant's registered key (or the account's key on chain, or the
`X-Requester-Pubkey` header). Errors use the same JSON shape as the rest of the API; the
statuses are listed in docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from gonka_cli.chain.signed_request import RequestAuthError, Requester, verify_request
from gonka_cli.errors import InputError
from gonka_cli.node.api import ApiError, _json, parse_json, read_body
from gonka_cli.node.network import ApiRefusal, InferenceJob, Network

#: gRPC codes for the statuses this API answers with.
_GRPC_FOR_HTTP = {
    400: 3,
    401: 16,
    402: 9,
    403: 7,
    404: 5,
    409: 6,
    410: 9,
    413: 3,
    422: 3,
    503: 14,
    504: 4,
}
MAX_WAIT_S = 60.0
MAX_ITEMS = 64
DEFAULT_MAX_TOKENS = 64


def _refusal(exc: ApiRefusal) -> Response:
    code = _GRPC_FOR_HTTP.get(exc.status, 2)
    return _json({"code": code, "message": str(exc), "details": []}, exc.status)


def add_routes(app: FastAPI, network: Network) -> None:
    ledger = network.ledger

    @app.exception_handler(ApiRefusal)
    async def refused(request: Request, exc: ApiRefusal) -> Response:
        return _refusal(exc)

    @app.exception_handler(RequestAuthError)
    async def unauthenticated(request: Request, exc: RequestAuthError) -> Response:
        return _refusal(ApiRefusal(401, str(exc)))

    async def signed(request: Request, pubkey: bytes | None = None) -> tuple[Requester, bytes]:
        raw = await read_body(request)

        def pubkey_of(address: str) -> bytes | None:
            known = network.pubkey_of(address)
            return known if known is not None else pubkey

        requester = verify_request(request.headers, raw, network.address, pubkey_of, network.guard)
        return requester, raw

    # -- identity and epochs -------------------------------------------------------------

    @app.get("/v1/identity")
    async def identity() -> Response:
        return _json(
            {
                "address": network.address,
                "pubkey": network.key.public_key.to_hex(),
                "chain_id": ledger.chain_id,
            }
        )

    @app.get("/v1/epochs/current")
    async def current_epoch() -> Response:
        view = network.view()
        p = network.params
        data = view.to_dict()
        data.update(
            seed=network.seed(view.epoch),
            block_time_s=ledger.block_time_s,
            poc={
                "model": p.poc_model,
                "seq_len": p.seq_len(),
                "k_dim": 12,
                "dist_threshold": p.dist_threshold,
                "sample_size": p.sample_size,
                "p_mismatch": p.p_mismatch,
                "alpha": p.alpha,
                "max_porosity": p.max_porosity,
            },
            inference={
                "price_per_token_ngonka": str(p.price_per_token_ngonka),
                "max_tokens_limit": p.max_tokens_limit,
                "timeout_s": p.inference_timeout_s,
                "validation_share": p.validation_share,
                "replay_threshold": p.replay_threshold,
            },
            epoch_reward_ngonka=str(p.epoch_reward_ngonka),
        )
        return _json(data)

    @app.get("/v1/epochs/current/participants")
    async def participants() -> Response:
        rows = network.participant_rows()
        weight_epoch, _ = network.weights()
        return _json(
            {
                "epoch": network.view().epoch,
                "weight_epoch": weight_epoch,
                "total_weight": sum(r["weight"] for r in rows),
                "participants": rows,
            }
        )

    @app.get("/v1/epochs/{epoch}")
    async def epoch_info(epoch: str) -> Response:
        if not (epoch.isascii() and epoch.isdigit() and len(epoch) <= 18):
            raise ApiError(3, f"epoch {epoch[:24]!r} is not an epoch number")
        record = network.epoch_record(int(epoch))
        if record is None:
            raise ApiError(5, f"epoch {epoch} has not started")
        return _json(record)

    @app.get("/v1/inferences/{inference_id}")
    async def inference_info(inference_id: str) -> Response:
        record = network.inference_record(inference_id[:80])
        if record is None:
            raise ApiError(5, f"no inference {inference_id[:80]!r}")
        return _json(record)

    # -- participants --------------------------------------------------------------------

    @app.post("/v1/participants")
    async def register(request: Request) -> Response:
        raw = await read_body(request)
        body = parse_json(raw)
        pubkey_hex = body.get("pubkey")
        if not isinstance(pubkey_hex, str) or len(pubkey_hex) != 66:
            raise ApiRefusal(400, "pubkey must be the 33-byte compressed key in hex")
        try:
            pubkey = bytes.fromhex(pubkey_hex)
        except ValueError:
            raise ApiRefusal(400, "pubkey is not hex") from None
        requester = verify_request(
            request.headers, raw, network.address, lambda _a: pubkey, network.guard
        )
        registered = network.participants.get(requester.address)
        if registered is not None and registered.pubkey != pubkey:
            raise ApiRefusal(403, f"{requester.address} is registered with another key")
        from gonka_cli.crypto.address import address_from_pubkey

        if address_from_pubkey(pubkey) != requester.address:
            raise ApiRefusal(403, "pubkey is not the key of X-Requester-Address")
        participant = network.register(
            requester.address, pubkey, body.get("models"), body.get("devices", [])
        )
        return _json(
            {
                "address": participant.address,
                "models": list(participant.models),
                "capacity": participant.capacity,
                "registered_height": participant.registered_height,
                "node_address": network.address,
            }
        )

    @app.post("/v1/poc/commits")
    async def commit(request: Request) -> Response:
        requester, raw = await signed(request)
        return _json(network.commit(requester.address, parse_json(raw)))

    # -- work ----------------------------------------------------------------------------

    @app.get("/v1/work")
    async def work(request: Request) -> Response:
        requester, _ = await signed(request)
        wait = _float_param(request, "wait", 0.0, 0.0, MAX_WAIT_S)
        limit = int(_float_param(request, "max", 16, 1, MAX_ITEMS))
        everything = request.query_params.get("all", "") in ("1", "true")
        items = await network.poll(requester.address, wait, limit, everything)
        view = network.view()
        return _json(
            {
                "epoch": view.epoch,
                "phase": view.phase,
                "height": ledger.height,
                "items": [item.to_dict() for item in items],
            }
        )

    @app.post("/v1/work/{item_id}/result")
    async def result(item_id: str, request: Request) -> Response:
        requester, raw = await signed(request)
        body = parse_json(raw)
        return _json(await network.submit_result(requester.address, item_id[:64], raw, body))

    # -- inference -----------------------------------------------------------------------

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        requester, raw = await signed(request)
        body = parse_json(raw)
        model, prompt, max_tokens, sampling = _chat_request(body, network)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiRefusal(400, "stream must be true or false")
        job = network.new_inference(requester.address, model, prompt, max_tokens, sampling)
        created = int(time.time())
        patience = (
            network.params.inference_attempts * network.params.inference_timeout_s
            + network.params.participant_timeout_s
        )
        if stream:
            return StreamingResponse(
                _stream(network, job, created, patience),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        answer = await _wait(network, job, patience)
        return _json(_completion(job, answer, created, body.get("logprobs") is True))


def _float_param(request: Request, name: str, default: float, low: float, high: float) -> float:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise ApiRefusal(400, f"{name} must be a number between {low:g} and {high:g}") from None
    if not low <= value <= high:
        raise ApiRefusal(400, f"{name} must be a number between {low:g} and {high:g}")
    return value


def _chat_request(
    body: dict[str, Any], network: Network
) -> tuple[str, list[int], int, dict[str, Any]]:
    from gonka_cli.compute.models import get_spec
    from gonka_cli.compute.tokenizer import chat_template

    model = body.get("model")
    if not isinstance(model, str):
        raise ApiRefusal(400, "model is required (a model name, e.g. gonka-tiny)")
    try:
        spec = get_spec(model)
        prompt = chat_template(body.get("messages"))  # type: ignore[arg-type]
    except InputError as exc:
        raise ApiRefusal(400, str(exc)) from None
    limit = network.params.max_tokens_limit
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", DEFAULT_MAX_TOKENS))
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens:
        raise ApiRefusal(400, f"max_tokens must be an integer between 1 and {limit}")
    if max_tokens > limit:
        raise ApiRefusal(400, f"max_tokens {max_tokens} is over this network's limit of {limit}")
    if len(prompt) + max_tokens > spec.max_seq_len:
        raise ApiRefusal(
            400,
            f"the prompt ({len(prompt)} tokens) and max_tokens ({max_tokens}) exceed the "
            f"{spec.max_seq_len}-token context of {model}",
        )
    temperature = body.get("temperature")
    temperature = 1.0 if temperature is None else temperature  # OpenAI clients send null for unset
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature <= 2
    ):
        raise ApiRefusal(400, "temperature must be a number between 0 and 2")
    top_p = body.get("top_p")
    top_p = 1.0 if top_p is None else top_p  # OpenAI clients send null for unset
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ApiRefusal(400, "top_p must be a number in (0, 1]")
    seed = body.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63
    ):
        raise ApiRefusal(400, "seed must be a non-negative integer")
    if body.get("n", 1) != 1:
        raise ApiRefusal(400, "n must be 1: this network returns one choice per request")
    if body.get("stop") is not None:
        raise ApiRefusal(400, "stop sequences are not supported; the model stops at <eos>")
    for name in ("logprobs", "stream"):
        if not isinstance(body.get(name, False), bool):
            raise ApiRefusal(400, f"{name} must be true or false")
    sampling = {"temperature": float(temperature), "top_p": float(top_p), "seed": seed}
    return model, prompt, max_tokens, sampling


async def _wait(network: Network, job: InferenceJob, patience: float) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(asyncio.shield(job.future), patience)
    except asyncio.TimeoutError:
        network.abandon(job, "no executor finished the request in time")
        raise ApiRefusal(504, f"no executor finished the request within {patience:g} s") from None
    except asyncio.CancelledError:
        network.abandon(job, "the requester went away")
        raise


def _text(tokens: list[int]) -> str:
    from gonka_cli.compute.tokenizer import decode

    return decode(tokens, skip_special=True)


def _usage(job: InferenceJob, answer: dict[str, Any]) -> dict[str, int]:
    completion = len(answer["tokens"])
    return {
        "prompt_tokens": len(job.prompt_tokens),
        "completion_tokens": completion,
        "total_tokens": len(job.prompt_tokens) + completion,
    }


def _logprobs(answer: dict[str, Any]) -> dict[str, Any]:
    from gonka_cli.compute.tokenizer import id_to_piece

    content = []
    for token, entries in zip(answer["tokens"], answer["top_logprobs"], strict=True):
        pairs = [_pair(e) for e in entries]
        own = next((lp for t, lp in pairs if t == token), None)
        content.append(
            {
                "token": id_to_piece(token),
                "token_id": token,
                "logprob": own,
                "top_logprobs": [
                    {"token": id_to_piece(t), "token_id": t, "logprob": lp}
                    for t, lp in pairs
                    if isinstance(t, int) and 0 <= t < 264
                ],
            }
        )
    return {"content": content}


def _pair(entry: Any) -> tuple[Any, Any]:
    if isinstance(entry, dict):
        return entry.get("token"), entry.get("logprob")
    if isinstance(entry, (list, tuple)) and len(entry) == 2:
        return entry[0], entry[1]
    return None, None


def _gonka(job: InferenceJob, answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "inference_id": job.id,
        "executor": answer["executor"],
        "escrow_ngonka": str(job.escrow),
        "epoch": job.epoch,
    }


def _completion(
    job: InferenceJob, answer: dict[str, Any], created: int, with_logprobs: bool
) -> dict[str, Any]:
    return {
        "id": job.id,
        "object": "chat.completion",
        "created": created,
        "model": job.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _text(answer["tokens"])},
                "logprobs": _logprobs(answer) if with_logprobs else None,
                "finish_reason": answer["finish_reason"],
            }
        ],
        "usage": _usage(job, answer),
        "gonka": _gonka(job, answer),
    }


async def _stream(
    network: Network, job: InferenceJob, created: int, patience: float
) -> AsyncIterator[bytes]:
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`."""
    import codecs

    def event(choice: dict[str, Any], **extra: Any) -> bytes:
        chunk = {
            "id": job.id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": job.model,
            "choices": [{"index": 0, **choice}],
            **extra,
        }
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    yield event({"delta": {"role": "assistant", "content": ""}, "finish_reason": None})
    try:
        answer = await _wait(network, job, patience)
    except ApiRefusal as exc:
        error = {
            "error": {
                "message": str(exc),
                "code": _GRPC_FOR_HTTP.get(exc.status, 2),
                "status": exc.status,
            }
        }
        yield b"data: " + json.dumps(error).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
        return
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    for token in answer["tokens"]:
        piece = decoder.decode(bytes([token])) if token < 256 else ""
        if piece:
            yield event({"delta": {"content": piece}, "finish_reason": None})
    tail = decoder.decode(b"", final=True)
    if tail:
        yield event({"delta": {"content": tail}, "finish_reason": None})
    yield event(
        {"delta": {}, "finish_reason": answer["finish_reason"]},
        usage=_usage(job, answer),
        gonka=_gonka(job, answer),
    )
    yield b"data: [DONE]\n\n"
