"""The one set of field checks (`storymesh.vocabulary`): what each accepts, and the code and
message of what it refuses. Pure: dicts in, values or FatalAgentError out."""

from __future__ import annotations

from typing import Any

import pytest

from storymesh import vocabulary
from storymesh.errors import FatalAgentError


def refused(check: Any, *args: Any, **kwargs: Any) -> FatalAgentError:
    with pytest.raises(FatalAgentError) as caught:
        check(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize(("payload", "code", "words"), [
    ({}, "bad_request", "'n' is required"),
    ({"n": True}, "bad_request", "'n' must be an integer, got bool"),
    ({"n": 2.0}, "bad_request", "'n' must be an integer, got float"),
    ({"n": 0}, "bad_request", "'n' must be between 1 and 9, got 0"),
    ({"n": 10}, "bad_request", "'n' must be between 1 and 9, got 10"),
])
def test_int_field_refuses(payload: dict[str, Any], code: str, words: str) -> None:
    error = refused(vocabulary.int_field, payload, "n", 1, 9)
    assert (error.code, error.message) == (code, words)


def test_int_field_takes_an_int_in_range_or_the_default() -> None:
    assert vocabulary.int_field({"n": 9}, "n", 1, 9) == 9
    assert vocabulary.int_field({}, "n", 1, 9, default=4) == 4


@pytest.mark.parametrize(("value", "words"), [
    ("1", "'x' must be a number, got str"), (False, "'x' must be a number, got bool"),
    (float("nan"), "'x' must be between 0 and 5"), (float("inf"), "'x' must be between 0 and 5"),
    (-0.5, "'x' must be between 0 and 5"), (5.5, "'x' must be between 0 and 5"),
])
def test_number_field_refuses(value: Any, words: str) -> None:
    error = refused(vocabulary.number_field, {"x": value}, "x", 0, 5, default=1.0)
    assert error.code == "bad_request"
    assert error.message.startswith(words)


def test_number_field_takes_ints_and_floats() -> None:
    assert vocabulary.number_field({"x": 2}, "x", 0, 5, default=1.0) == 2.0
    assert vocabulary.number_field({}, "x", 0, 5, default=1.5) == 1.5


def test_bytes_field() -> None:
    assert vocabulary.bytes_field({}, "png") is None
    assert vocabulary.bytes_field({"png": bytearray(b"ab")}, "png") == b"ab"
    error = refused(vocabulary.bytes_field, {"png": "iVBOR"}, "png", where="chapters[1].png")
    assert (error.code, error.message) == ("bad_request",
                                           "'chapters[1].png' must be bytes, got str")
    error = refused(vocabulary.bytes_field, {"png": b"abc"}, "png", limit=2)
    assert error.code == "too_large"


def test_list_field() -> None:
    assert vocabulary.list_field({}, "items", 3) == []
    assert vocabulary.list_field({"items": (1, 2)}, "items", 3) == [1, 2]
    assert refused(vocabulary.list_field, {}, "items", 3, required=True).message == (
        "'items' is required")
    assert refused(vocabulary.list_field, {"items": "abc"}, "items", 3).message == (
        "'items' must be a list, got str")
    error = refused(vocabulary.list_field, {"items": [1, 2, 3, 4]}, "items", 3)
    assert (error.code, error.message) == ("too_large", "'items' has 4 entries; the limit is 3")


def test_strings_field_checks_each_entry() -> None:
    assert vocabulary.strings_field({}, "tags", 4) is None
    assert vocabulary.strings_field({"tags": ["a", "b"]}, "tags", 4) == ("a", "b")
    assert "must be a string, got int" in refused(
        vocabulary.strings_field, {"tags": ["a", 1]}, "tags", 4).message
    assert "unknown value 'c' in 'tags'" in refused(
        vocabulary.strings_field, {"tags": ["a", "c"]}, "tags", 4, choices=("a", "b")).message


def test_text_field_names_a_nested_field() -> None:
    error = refused(vocabulary.text_field, {"text": 3}, "text", 10, where="chapters[2].text")
    assert error.message == "'chapters[2].text' must be a string, got int"
    assert vocabulary.text_field({"text": "  hi "}, "text", 10) == "hi"


def test_formats_field() -> None:
    assert vocabulary.formats_field({}) == vocabulary.FORMATS
    assert vocabulary.formats_field({}, ("pdf",)) == ("pdf",)
    assert vocabulary.formats_field({"formats": ["epub", "pdf", "epub"]}) == ("epub", "pdf")
    assert refused(vocabulary.formats_field, {"formats": []}).code == "bad_request"
    assert "docx" in refused(vocabulary.formats_field, {"formats": ["docx"]}).message
    assert refused(vocabulary.formats_field, {"formats": "pdf"}).code == "bad_request"


def test_chapters_and_themes_keep_their_messages() -> None:
    assert "between 1 and" in refused(vocabulary.chapters_field, {"chapters": 0}).message
    assert "integer" in refused(vocabulary.chapters_field, {"chapters": "3"}).message
    assert "list" in refused(vocabulary.themes_field, {"themes": "love"}).message
    assert refused(vocabulary.themes_field, {"themes": ["a"] * 50}).code == "too_large"
