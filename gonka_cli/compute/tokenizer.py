"""The byte-level tokenizer of the built-in models.

Ids 0-255 are the bytes of the UTF-8 text; ids 256-263 are special tokens. Every built-in
model has `VOCAB_SIZE` (264) rows in its embedding and output matrices.

Special tokens are never produced by `encode`: the text "<eos>" encodes as its five bytes, so
user content cannot inject a control token. They enter a sequence only through
`chat_template` (or by id). `decode` writes them by name ("<eos>") unless asked to skip them.
No torch or NumPy here: this module is cheap to import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from gonka_cli.errors import InvalidComputeInput

__all__ = [
    "ASSISTANT_ID",
    "BOS_ID",
    "BYTE_TOKENIZER",
    "END_OF_TURN_ID",
    "EOS_ID",
    "PAD_ID",
    "ROLE_IDS",
    "SPECIAL_TOKENS",
    "STOP_IDS",
    "SYSTEM_ID",
    "TOOL_ID",
    "USER_ID",
    "VOCAB_SIZE",
    "ByteTokenizer",
    "ChatTokenizer",
    "HfChatTokenizer",
    "chat_template",
    "decode",
    "encode",
    "id_to_piece",
    "is_special",
    "tokenizer_for",
]

BYTE_TOKENS = 256
PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
SYSTEM_ID = 259
USER_ID = 260
ASSISTANT_ID = 261
TOOL_ID = 262
END_OF_TURN_ID = 263
VOCAB_SIZE = 264

#: Names of the special tokens, by id.
SPECIAL_TOKENS: Mapping[int, str] = {
    PAD_ID: "<pad>",
    BOS_ID: "<bos>",
    EOS_ID: "<eos>",
    SYSTEM_ID: "<|system|>",
    USER_ID: "<|user|>",
    ASSISTANT_ID: "<|assistant|>",
    TOOL_ID: "<|tool|>",
    END_OF_TURN_ID: "<|end|>",
}

#: The marker that opens a message of each OpenAI role ("developer" is the newer "system").
ROLE_IDS: Mapping[str, int] = {
    "system": SYSTEM_ID,
    "developer": SYSTEM_ID,
    "user": USER_ID,
    "assistant": ASSISTANT_ID,
    "tool": TOOL_ID,
}

#: Tokens that end a generation: end of text, and the end of the assistant's turn in a chat.
STOP_IDS: tuple[int, ...] = (EOS_ID, END_OF_TURN_ID)


def is_special(token_id: int) -> bool:
    """True for the ids of special tokens (256-263)."""
    return BYTE_TOKENS <= token_id < VOCAB_SIZE


def _check_id(token_id: object, where: int) -> int:
    if isinstance(token_id, bool) or not isinstance(token_id, int):
        raise InvalidComputeInput(f"token {where} is not an integer id: {token_id!r}")
    if not 0 <= token_id < VOCAB_SIZE:
        raise InvalidComputeInput(
            f"token id {token_id} at position {where} is outside the vocabulary [0, {VOCAB_SIZE})"
        )
    return token_id


def encode(text: str, *, add_bos: bool = False) -> list[int]:
    """The byte ids of `text` in UTF-8, after a <bos> when `add_bos` is true."""
    if not isinstance(text, str):
        raise InvalidComputeInput(f"only text can be encoded, got {type(text).__name__}")
    try:
        ids = list(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        # JSON's "\ud800" decodes to a lone surrogate, which has no UTF-8 form.
        raise InvalidComputeInput(
            f"text holds a lone surrogate at character {exc.start}: not valid Unicode"
        ) from None
    return [BOS_ID, *ids] if add_bos else ids


def id_to_piece(token_id: int) -> str:
    """One token as text: a special token's name, or its byte (invalid UTF-8 as U+FFFD)."""
    _check_id(token_id, 0)
    if is_special(token_id):
        return SPECIAL_TOKENS[token_id]
    return bytes([token_id]).decode("utf-8", errors="replace")


def decode(ids: Iterable[int], *, skip_special: bool = False) -> str:
    """The text of a sequence of ids.

    Runs of byte tokens are decoded as UTF-8 with invalid sequences replaced by U+FFFD;
    special tokens are written by name, or left out with `skip_special`. An id outside
    [0, VOCAB_SIZE) raises InvalidComputeInput.
    """
    parts: list[str] = []
    run = bytearray()
    for where, token_id in enumerate(ids):
        _check_id(token_id, where)
        if token_id < BYTE_TOKENS:
            run.append(token_id)
            continue
        if run:
            parts.append(run.decode("utf-8", errors="replace"))
            run.clear()
        if not skip_special:
            parts.append(SPECIAL_TOKENS[token_id])
    if run:
        parts.append(run.decode("utf-8", errors="replace"))
    return "".join(parts)


def _content_text(content: Any, where: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, Sequence):
        # OpenAI content parts: only text parts carry meaning for a text model.
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise InvalidComputeInput(f"message {where}: only text content parts are supported")
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidComputeInput(f"message {where}: a text part needs a string 'text'")
            texts.append(text)
        return "".join(texts)
    raise InvalidComputeInput(f"message {where}: content must be a string or a list of parts")


def chat_template(
    messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True
) -> list[int]:
    """Token ids for OpenAI-style chat messages (`[{"role": ..., "content": ...}, ...]`).

    Layout: `<bos>`, then per message its role marker, the content bytes and `<|end|>`; with
    `add_generation_prompt` a final `<|assistant|>` so the model writes the answer next.
    Roles: system, developer (as system), user, assistant, tool.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidComputeInput("messages must be a list of {role, content} objects")
    if not messages:
        raise InvalidComputeInput("a chat needs at least one message")
    ids = [BOS_ID]
    for where, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidComputeInput(f"message {where} is not an object with role and content")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLE_IDS:
            known = ", ".join(sorted(ROLE_IDS))
            raise InvalidComputeInput(f"message {where} has role {role!r}; known roles: {known}")
        ids.append(ROLE_IDS[role])
        content = _content_text(message.get("content"), where)
        try:
            ids.extend(encode(content))
        except InvalidComputeInput as exc:
            raise InvalidComputeInput(f"message {where}: {exc}") from None
        ids.append(END_OF_TURN_ID)
    if add_generation_prompt:
        ids.append(ASSISTANT_ID)
    return ids


# --- the tokenizer of a model ---------------------------------------------------------------


@runtime_checkable
class ChatTokenizer(Protocol):
    """What inference needs from a model's tokenizer.

    `vocab_size` counts the ids the tokenizer knows; a checkpoint's embedding may have more
    rows (padding), whose ids the model can still score and emit. `stop_ids` end a
    generation, the first one is the end-of-sequence token a replay appends.
    """

    @property
    def vocab_size(self) -> int: ...

    @property
    def stop_ids(self) -> tuple[int, ...]: ...

    def chat_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]: ...

    def encode_text(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str: ...


class ByteTokenizer:
    """The built-in models' tokenizer as a `ChatTokenizer` (their chat layout above)."""

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return STOP_IDS

    def chat_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        return chat_template(messages)

    def encode_text(self, text: str) -> list[int]:
        return encode(text)

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        return decode(ids, skip_special=skip_special)


#: The built-in models' tokenizer.
BYTE_TOKENIZER = ByteTokenizer()


class HfChatTokenizer:
    """A Hugging Face tokenizer (`transformers`) with the checkpoint's own chat template.

    Ids the tokenizer does not know (the padding rows of a checkpoint's embedding) decode
    to nothing: they have no text, only their decimal id in logprobs.
    """

    def __init__(self, tokenizer: Any, extra_stop_ids: Iterable[int] = ()) -> None:
        self._tok = tokenizer
        self._size = len(tokenizer)
        stops: list[int] = []
        eos = getattr(tokenizer, "eos_token_id", None)
        for token_id in [eos, *extra_stop_ids]:
            if isinstance(token_id, int) and token_id not in stops:
                stops.append(token_id)
        self._stops = tuple(stops)

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return self._stops

    def chat_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise InvalidComputeInput("messages must be a list of {role, content} objects")
        if not messages:
            raise InvalidComputeInput("a chat needs at least one message")
        if getattr(self._tok, "chat_template", None) is None:
            raise InvalidComputeInput(
                "this checkpoint has no chat template: add `chat_template` to its "
                "tokenizer_config.json (or a chat_template.jinja file)"
            )
        normalised = []
        for where, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise InvalidComputeInput(f"message {where} is not an object with role and content")
            role = message.get("role")
            if not isinstance(role, str):
                raise InvalidComputeInput(f"message {where} needs a string role")
            normalised.append({**message, "content": _content_text(message.get("content"), where)})
        try:
            ids = self._tok.apply_chat_template(
                normalised, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        except Exception as exc:  # jinja2's TemplateError and the template's own raise_exception
            raise InvalidComputeInput(f"the chat template refused the messages: {exc}") from None
        if isinstance(ids, Mapping):  # some versions answer a BatchEncoding whatever is asked
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def encode_text(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise InvalidComputeInput(f"only text can be encoded, got {type(text).__name__}")
        return [int(i) for i in self._tok.encode(text, add_special_tokens=False)]

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        known = [int(i) for i in ids if 0 <= int(i) < self._size]
        return str(self._tok.decode(known, skip_special_tokens=skip_special))


def tokenizer_for(model: Any) -> ChatTokenizer:
    """The tokenizer of a loaded model: the checkpoint's own (its end-of-sequence token
    first, then the model's other `generation_eos_ids`), or the built-in byte tokenizer."""
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        if getattr(model, "spec", None) is not None and model.spec.vocab_size != VOCAB_SIZE:
            raise InvalidComputeInput(
                f"{model.spec.name} has no tokenizer: inference needs its tokenizer.json"
            )
        return BYTE_TOKENIZER
    if isinstance(tok, ChatTokenizer):
        return tok
    return HfChatTokenizer(tok, getattr(model, "generation_eos_ids", ()))
