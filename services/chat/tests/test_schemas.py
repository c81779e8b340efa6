"""The shared schemas refuse text no back-end can store, in every string field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chat import schemas


class Note(schemas.Payload):
    """A payload as another module might declare it: plain `str` fields, no Text type."""

    title: str
    tags: list[str] = []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"title": "broken \ud83d"}, "title is not valid Unicode text (a lone surrogate)"),
        ({"title": "ok", "tags": ["fine", "nul \x00"]}, "tags contains a NUL character"),
    ],
)
def test_a_payload_with_a_plain_str_field_still_refuses_unstorable_text(payload, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Note.model_validate(payload)


def test_storable_text_passes_unchanged():
    text = "emoji 👩‍💻, CJK 漢字, bell \x07, RTL \u202e"
    assert Note.model_validate({"title": text, "tags": [text]}).title == text
    assert schemas.storable(text) == text


@pytest.mark.parametrize("text", ["\ud83d", "a\udfff", "\x00"])
def test_the_text_types_refuse_it_field_by_field(text):
    with pytest.raises(ValidationError) as info:
        schemas.MessageEvent.model_validate({"room": "general", "text": "hi", "client_id": text})
    assert [e["loc"] for e in info.value.errors()] == [("client_id",)]


def test_the_message_payload_type_has_the_fields_of_the_documented_message():
    """MessagePayload (the dict pushed and returned) and MessageOut (the OpenAPI schema)."""
    assert schemas.MessagePayload.__required_keys__ == set(schemas.MessageOut.model_fields)
    assert schemas.MessagePayload.__optional_keys__ == frozenset()
