"""The byte-level tokenizer: round trips, special tokens, the chat template, bad ids."""

from __future__ import annotations

import pytest

from gonka_cli.compute import tokenizer as tok
from gonka_cli.compute.models import list_models
from gonka_cli.errors import InvalidComputeInput

TEXTS = [
    "",
    "Hello, world!",
    "Привет, мир",
    "こんにちは世界",
    "emoji \U0001f680\U0001f30d and combining e\u0301",
    "tabs\tnew\nlines\r\n\x00nul",
]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(text: str) -> None:
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text


def test_bos_and_specials_by_name() -> None:
    ids = [*tok.encode("hi", add_bos=True), tok.EOS_ID]
    assert ids[0] == tok.BOS_ID
    assert tok.decode(ids) == "<bos>hi<eos>"
    assert tok.decode(ids, skip_special=True) == "hi"
    assert tok.id_to_piece(tok.END_OF_TURN_ID) == "<|end|>"
    assert tok.id_to_piece(ord("a")) == "a"
    assert [tok.is_special(i) for i in (0, 255, 256, 263)] == [False, False, True, True]
    assert len(tok.SPECIAL_TOKENS) == tok.VOCAB_SIZE - 256


def test_special_token_text_is_not_parsed() -> None:
    # A user who types "<eos>" gets five bytes, never the control token.
    assert tok.encode("<eos>") == list(b"<eos>")
    assert tok.EOS_ID not in tok.encode("<eos><|user|>")


def test_invalid_utf8_is_replaced() -> None:
    assert tok.decode([0xFF]) == "\ufffd"
    euro = list("€".encode())
    assert tok.decode(euro[:2]) == "\ufffd"
    # A special token between the bytes of one character splits it: each side is invalid
    # (the two continuation bytes after it become one U+FFFD each).
    assert tok.decode([euro[0], tok.EOS_ID, *euro[1:]]) == "\ufffd<eos>\ufffd\ufffd"


@pytest.mark.parametrize("bad", [-1, tok.VOCAB_SIZE, 10**9, "a", 1.0, True])
def test_out_of_range_ids_raise(bad: object) -> None:
    with pytest.raises(InvalidComputeInput):
        tok.decode([65, bad])  # type: ignore[list-item]
    with pytest.raises(InvalidComputeInput):
        tok.id_to_piece(bad)  # type: ignore[arg-type]


def test_encode_rejects_non_text() -> None:
    with pytest.raises(InvalidComputeInput):
        tok.encode(b"bytes")  # type: ignore[arg-type]


def test_lone_surrogates_are_refused() -> None:
    # JSON can carry "\ud800", which Python decodes to a str that has no UTF-8 form.
    with pytest.raises(InvalidComputeInput, match="surrogate"):
        tok.encode("ok \ud800")
    with pytest.raises(InvalidComputeInput, match="message 0"):
        tok.chat_template([{"role": "user", "content": "\udc80"}])


def test_chat_template_layout() -> None:
    ids = tok.chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
            },
            {"role": "assistant", "content": "Hello"},
            {"role": "developer", "content": None},
        ]
    )
    expected = [
        tok.BOS_ID,
        tok.SYSTEM_ID, *b"Be brief.", tok.END_OF_TURN_ID,
        tok.USER_ID, *b"Hi there", tok.END_OF_TURN_ID,
        tok.ASSISTANT_ID, *b"Hello", tok.END_OF_TURN_ID,
        tok.SYSTEM_ID, tok.END_OF_TURN_ID,
        tok.ASSISTANT_ID,
    ]  # fmt: skip
    assert ids == expected
    no_prompt = tok.chat_template([{"role": "user", "content": "x"}], add_generation_prompt=False)
    assert no_prompt[-1] == tok.END_OF_TURN_ID
    assert tok.decode(no_prompt) == "<bos><|user|>x<|end|>"


@pytest.mark.parametrize(
    "messages",
    [
        [],
        "hello",
        [{"role": "wizard", "content": "x"}],
        [{"content": "x"}],
        ["not a message"],
        [{"role": "user", "content": 5}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}],
        [{"role": "user", "content": [{"type": "text", "text": None}]}],
    ],
)
def test_chat_template_rejects_bad_messages(messages: object) -> None:
    with pytest.raises(InvalidComputeInput):
        tok.chat_template(messages)  # type: ignore[arg-type]


def test_every_model_has_the_tokenizer_vocabulary() -> None:
    assert {spec.vocab_size for spec in list_models()} == {tok.VOCAB_SIZE}
    assert tok.STOP_IDS == (tok.EOS_ID, tok.END_OF_TURN_ID)


# --- a model's tokenizer ----------------------------------------------------------------------


def test_built_in_models_use_the_byte_tokenizer() -> None:
    from gonka_cli.compute.models import load_model

    bytes_tok = tok.tokenizer_for(load_model("gonka-tiny"))
    assert bytes_tok is tok.BYTE_TOKENIZER and isinstance(bytes_tok, tok.ChatTokenizer)
    messages = [{"role": "user", "content": "hi"}]
    assert bytes_tok.chat_ids(messages) == tok.chat_template(messages)
    assert bytes_tok.stop_ids == tok.STOP_IDS and bytes_tok.vocab_size == tok.VOCAB_SIZE
    assert bytes_tok.encode_text("hé") == tok.encode("hé")


def test_a_checkpoints_tokenizer_keeps_its_template_and_drops_padding_ids(
    qwen3_checkpoint: object,
) -> None:
    import transformers

    from tests.compute.hf_checkpoints import build_tokenizer

    hf = transformers.AutoTokenizer.from_pretrained(str(qwen3_checkpoint))
    wrapped = tok.HfChatTokenizer(hf, extra_stop_ids=[0, hf.eos_token_id])
    assert wrapped.stop_ids == (hf.eos_token_id, 0)  # its own end of sequence first
    assert wrapped.vocab_size == len(build_tokenizer()) == len(hf)
    messages = [{"role": "user", "content": [{"type": "text", "text": "Gonka"}]}]
    ids = wrapped.chat_ids(messages)
    assert hf.decode(ids) == "<|im_start|>user\nGonka<|im_end|>\n<|im_start|>assistant\n"
    text = wrapped.encode_text("validators")
    assert wrapped.decode([*text, wrapped.vocab_size, 511]) == "validators"
    assert wrapped.decode([hf.eos_token_id], skip_special=True) == ""
    with pytest.raises(InvalidComputeInput, match="message 0"):
        wrapped.chat_ids([{"role": "user", "content": 5}])
    with pytest.raises(InvalidComputeInput):
        wrapped.chat_ids([])
    hf.chat_template = None
    with pytest.raises(InvalidComputeInput, match="chat template"):
        wrapped.chat_ids([{"role": "user", "content": "x"}])
