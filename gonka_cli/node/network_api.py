"""The node's mining API: identity, epochs, participants, the work queue and inference.

Every participant and requester call is a signed request (`chain.signed_request`), checked
against the participant's registered key (or the account's key on chain, or the
`X-Requester-Pubkey` header). Requests are parsed and answers built with the typed messages
of `gonka_cli.protocol`; a refusal is a `protocol.Refusal`, answered in the same JSON shape
as the rest of the API plus its `error_code` (the codes are listed in docs/protocol.md).
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
from gonka_cli.node.http import error_response, parse_json, read_body
from gonka_cli.node.http import json_response as _json
from gonka_cli.node.network import InferenceJob, Network
from gonka_cli.protocol import (
    ChatChoice,
    ChatCompletion,
    CommitRequest,
    EpochCurrent,
    ErrorCode,
    GonkaInfo,
    Identity,
    InferenceTerms,
    PocTerms,
    ProtocolError,
    Refusal,
    RegisterRequest,
    Registration,
    Usage,
    WorkBatch,
)
from gonka_cli.validate import is_int, is_number, is_uint, is_uint_text

MAX_WAIT_S = 60.0
#: The largest epoch number and `since_height` a path or query may carry.
MAX_EPOCH = 10**18 - 1
MAX_HEIGHT = 2**63 - 1
MAX_ITEMS = 64
DEFAULT_MAX_TOKENS = 64


def _refusal(exc: Refusal) -> Response:
    return error_response(exc.status, exc.grpc_code, exc.message, exc.code)


def _parse(parse: Any, data: Any) -> Any:
    """`parse(data)`, a malformed message refused as `bad_request`."""
    try:
        return parse(data)
    except ProtocolError as exc:
        raise Refusal(ErrorCode.BAD_REQUEST, str(exc)) from None


def add_routes(app: FastAPI, network: Network) -> None:
    ledger = network.ledger

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> Response:
        return _refusal(exc)

    @app.exception_handler(RequestAuthError)
    async def unauthenticated(request: Request, exc: RequestAuthError) -> Response:
        return _refusal(Refusal(ErrorCode.BAD_SIGNATURE, str(exc)))

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
            Identity(network.address, network.key.public_key.to_hex(), ledger.chain_id).to_dict()
        )

    @app.get("/v1/epochs/current")
    async def current_epoch() -> Response:
        view = network.view()
        p = network.params
        current = EpochCurrent(
            **vars(view.schedule()),
            seed=network.seed(view.epoch),
            block_time_s=ledger.block_time_s,
            poc=PocTerms(
                model=p.poc_model,
                seq_len=p.seq_len(),
                k_dim=12,
                dist_threshold=p.dist_threshold,
                sample_size=p.sample_size,
                p_mismatch=p.p_mismatch,
                alpha=p.alpha,
                max_porosity=p.max_porosity,
            ),
            terms=InferenceTerms(
                price_per_token_ngonka=p.price_per_token_ngonka,
                max_tokens_limit=p.max_tokens_limit,
                timeout_s=p.inference_timeout_s,
                validation_share=p.validation_share,
                replay_threshold=p.replay_threshold,
            ),
            epoch_reward_ngonka=p.epoch_reward_ngonka,
        )
        return _json(current.to_dict())

    @app.get("/v1/epochs/current/participants")
    async def participants() -> Response:
        return _json(network.participants_view().to_dict())

    @app.get("/v1/epochs/{epoch}")
    async def epoch_info(epoch: str) -> Response:
        if not is_uint_text(epoch, MAX_EPOCH):
            raise Refusal(ErrorCode.BAD_REQUEST, f"epoch {epoch[:24]!r} is not an epoch number")
        record = network.epoch_record(int(epoch))
        if record is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"epoch {epoch} has not started")
        return _json(record.to_dict())

    @app.get("/v1/inferences/{inference_id}")
    async def inference_info(inference_id: str) -> Response:
        record = network.inference_record(inference_id[:80])
        if record is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no inference {inference_id[:80]!r}")
        return _json(record.to_dict())

    @app.get("/v1/participants/{address}/earnings")
    async def earnings(address: str, request: Request) -> Response:
        from gonka_cli.crypto.address import normalize

        try:
            canonical = normalize(address[:100], "gonka")
        except InputError as exc:
            raise Refusal(ErrorCode.BAD_REQUEST, f"invalid address: {exc}") from None
        text = request.query_params.get("since_height", "0")
        if not is_uint_text(text, MAX_HEIGHT):
            raise Refusal(
                ErrorCode.BAD_REQUEST,
                f"since_height must be a block height (decimal digits), not {text[:24]!r}",
            )
        return _json(network.earnings(canonical, int(text)).to_dict())

    # -- participants --------------------------------------------------------------------

    @app.post("/v1/participants")
    async def register(request: Request) -> Response:
        raw = await read_body(request)
        body = parse_json(raw)
        pubkey_hex = body.get("pubkey")
        if not isinstance(pubkey_hex, str) or len(pubkey_hex) != 66:
            raise Refusal(ErrorCode.BAD_PUBKEY, "pubkey must be the 33-byte compressed key in hex")
        try:
            pubkey = bytes.fromhex(pubkey_hex)
        except ValueError:
            raise Refusal(ErrorCode.BAD_PUBKEY, "pubkey is not hex") from None
        if pubkey[0] not in (2, 3):
            raise Refusal(
                ErrorCode.BAD_PUBKEY, "pubkey must be a compressed key (starting with 02 or 03)"
            )
        requester = verify_request(
            request.headers, raw, network.address, lambda _a: pubkey, network.guard
        )
        registered = network.participants.get(requester.address)
        if registered is not None and registered.pubkey != pubkey:
            raise Refusal(
                ErrorCode.KEY_MISMATCH, f"{requester.address} is registered with another key"
            )
        from gonka_cli.crypto.address import address_from_pubkey

        if address_from_pubkey(pubkey) != requester.address:
            raise Refusal(ErrorCode.KEY_MISMATCH, "pubkey is not the key of X-Requester-Address")
        registration: RegisterRequest = _parse(RegisterRequest.from_dict, body)
        participant = network.register(
            requester.address, pubkey, registration.models, registration.devices
        )
        return _json(
            Registration(
                participant.address,
                participant.models,
                participant.capacity,
                participant.registered_height,
                network.address,
                network.participants.collateral(participant.address),
                participant.lock_tx,
            ).to_dict()
        )

    @app.get("/v1/participants/{address}/stake")
    async def stake(address: str) -> Response:
        return _json(network.stake(_address(address)).to_dict())

    @app.delete("/v1/participants/{address}")
    async def leave(address: str, request: Request) -> Response:
        requester, _ = await signed(request)
        canonical = _address(address)
        if canonical != requester.address:
            raise Refusal(
                ErrorCode.KEY_MISMATCH,
                f"{requester.address} may not ask {canonical} to leave: sign with its key",
            )
        network.participant(canonical)
        return _json(network.leave(canonical).to_dict())

    @app.post("/v1/poc/commits")
    async def commit(request: Request) -> Response:
        requester, raw = await signed(request)
        network.participant(requester.address)
        commit: CommitRequest = _parse(CommitRequest.from_dict, parse_json(raw))
        return _json(network.commit(requester.address, commit).to_dict())

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
            WorkBatch(
                view.epoch, view.phase, ledger.height, tuple(i.message() for i in items)
            ).to_dict()
        )

    @app.post("/v1/work/{item_id}/result")
    async def result(item_id: str, request: Request) -> Response:
        requester, raw = await signed(request)
        body = parse_json(raw)
        answer = await network.submit_result(requester.address, item_id[:64], raw, body)
        return _json(answer.to_dict())

    # -- inference -----------------------------------------------------------------------

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        requester, raw = await signed(request)
        body = parse_json(raw)
        model, prompt, max_tokens, sampling = _chat_request(body, network)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise Refusal(ErrorCode.BAD_REQUEST, "stream must be true or false")
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
        return _json(_completion(job, answer, created, body.get("logprobs") is True).to_dict())


def _address(text: str) -> str:
    """A path's `gonka1` address in canonical form; `bad_request` when it is not one."""
    from gonka_cli.crypto.address import normalize

    try:
        return normalize(text[:100], "gonka")
    except InputError as exc:
        raise Refusal(ErrorCode.BAD_REQUEST, f"invalid address: {exc}") from None


def _float_param(request: Request, name: str, default: float, low: float, high: float) -> float:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise Refusal(
            ErrorCode.BAD_REQUEST, f"{name} must be a number between {low:g} and {high:g}"
        ) from None
    if not low <= value <= high:
        raise Refusal(
            ErrorCode.BAD_REQUEST, f"{name} must be a number between {low:g} and {high:g}"
        )
    return value


def _chat_request(
    body: dict[str, Any], network: Network
) -> tuple[str, list[int], int, dict[str, Any]]:
    from gonka_cli.compute.models import get_spec
    from gonka_cli.compute.tokenizer import chat_template

    model = body.get("model")
    if not isinstance(model, str):
        raise Refusal(ErrorCode.BAD_REQUEST, "model is required (a model name, e.g. gonka-tiny)")
    try:
        spec = get_spec(model)
    except InputError as exc:
        raise Refusal(ErrorCode.UNKNOWN_MODEL, str(exc)) from None
    try:
        prompt = chat_template(body.get("messages"))  # type: ignore[arg-type]
    except InputError as exc:
        raise Refusal(ErrorCode.BAD_REQUEST, str(exc)) from None
    limit = network.params.max_tokens_limit
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", DEFAULT_MAX_TOKENS))
    if not is_int(max_tokens) or max_tokens < 1:
        raise Refusal(ErrorCode.BAD_REQUEST, f"max_tokens must be an integer between 1 and {limit}")
    if max_tokens > limit:
        raise Refusal(
            ErrorCode.BAD_REQUEST,
            f"max_tokens {max_tokens} is over this network's limit of {limit}",
        )
    if len(prompt) + max_tokens > spec.max_seq_len:
        raise Refusal(
            ErrorCode.BAD_REQUEST,
            f"the prompt ({len(prompt)} tokens) and max_tokens ({max_tokens}) exceed the "
            f"{spec.max_seq_len}-token context of {model}",
        )
    temperature = body.get("temperature")
    temperature = 1.0 if temperature is None else temperature  # OpenAI clients send null for unset
    if not is_number(temperature) or not 0 <= temperature <= 2:
        raise Refusal(ErrorCode.BAD_REQUEST, "temperature must be a number between 0 and 2")
    top_p = body.get("top_p")
    top_p = 1.0 if top_p is None else top_p  # OpenAI clients send null for unset
    if not is_number(top_p) or not 0 < top_p <= 1:
        raise Refusal(ErrorCode.BAD_REQUEST, "top_p must be a number in (0, 1]")
    seed = body.get("seed")
    if seed is not None and not is_uint(seed, 2**63 - 1):
        raise Refusal(ErrorCode.BAD_REQUEST, "seed must be a non-negative integer")
    if body.get("n", 1) != 1:
        raise Refusal(
            ErrorCode.BAD_REQUEST, "n must be 1: this network returns one choice per request"
        )
    if body.get("stop") is not None:
        raise Refusal(
            ErrorCode.BAD_REQUEST, "stop sequences are not supported; the model stops at <eos>"
        )
    for name in ("logprobs", "stream"):
        if not isinstance(body.get(name, False), bool):
            raise Refusal(ErrorCode.BAD_REQUEST, f"{name} must be true or false")
    sampling = {"temperature": float(temperature), "top_p": float(top_p), "seed": seed}
    return model, prompt, max_tokens, sampling


async def _wait(network: Network, job: InferenceJob, patience: float) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(asyncio.shield(job.future), patience)
    except asyncio.TimeoutError:
        network.abandon(job, "no executor finished the request in time")
        raise Refusal(
            ErrorCode.INFERENCE_TIMEOUT,
            f"no executor finished the request within {patience:g} s",
        ) from None
    except asyncio.CancelledError:
        network.abandon(job, "the requester went away")
        raise


def _text(tokens: list[int]) -> str:
    from gonka_cli.compute.tokenizer import decode

    return decode(tokens, skip_special=True)


def _usage(job: InferenceJob, answer: dict[str, Any]) -> Usage:
    return Usage(len(job.prompt_tokens), len(answer["tokens"]))


def _logprobs(answer: dict[str, Any]) -> dict[str, Any]:
    # `token` is the decimal id as a string, as on mainnet (spec mlnode §1.5).
    content = []
    for token, entries in zip(answer["tokens"], answer["top_logprobs"], strict=True):
        pairs = [_pair(e) for e in entries]
        own = next((lp for t, lp in pairs if t == token), None)
        content.append(
            {
                "token": str(token),
                "token_id": token,
                "logprob": own,
                "top_logprobs": [
                    {"token": str(t), "token_id": t, "logprob": lp}
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


def _gonka(job: InferenceJob, answer: dict[str, Any]) -> GonkaInfo:
    return GonkaInfo(job.id, answer["executor"], job.escrow, job.epoch)


def _completion(
    job: InferenceJob, answer: dict[str, Any], created: int, with_logprobs: bool
) -> ChatCompletion:
    choice = ChatChoice(
        content=_text(answer["tokens"]),
        finish_reason=answer["finish_reason"],
        logprobs=_logprobs(answer) if with_logprobs else None,
    )
    return ChatCompletion(
        job.id, created, job.model, choice, _usage(job, answer), _gonka(job, answer)
    )


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
    except Refusal as exc:
        error = {
            "error": {
                "message": exc.message,
                "code": exc.grpc_code,
                "status": exc.status,
                "error_code": exc.code.value,
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
        usage=_usage(job, answer).to_dict(),
        gonka=_gonka(job, answer).to_dict(),
    )
    yield b"data: [DONE]\n\n"
