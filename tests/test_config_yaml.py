"""Tests of the round-trip YAML layer under the config store: indentation, quoting, key case."""

from __future__ import annotations

from pathlib import Path

import pytest

from astro_jupyter.config_yaml import (
    Indentation,
    detect_indentation,
    find_key,
    get_value,
    load_document,
    set_value,
)
from astro_jupyter.errors import ConfigError

PATH = Path("/home/user/.astro/config.yaml")


def round_trip(text: str) -> str:
    return load_document(text, PATH).dump()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # gopkg.in/yaml.v3: 4-space mappings, dashes 2 spaces in, items 4.
        ("a:\n    b: 1\n    c:\n      - x\n", Indentation(mapping=4, sequence=4, offset=2)),
        # Dashes 4 spaces in, items 6.
        ("a:\n    c:\n        - x\n", Indentation(mapping=4, sequence=6, offset=4)),
        # Hand-edited: 2-space mappings, dashes at the parent key's column.
        ("a:\n  b: 1\nc:\n- x\n", Indentation(mapping=2, sequence=2, offset=0)),
        # Hand-edited: 2-space mappings, dashes 2 spaces in.
        ("a:\n  b:\n    - x\n", Indentation(mapping=2, sequence=4, offset=2)),
        # Comments and blank lines between a key and its value are skipped.
        ("a:\n\n  # note\n  b: 1\n", Indentation(mapping=2, sequence=2, offset=0)),
        # Nothing nested: the layout of gopkg.in/yaml.v3.
        ("a: 1\nb: 2\n", Indentation(mapping=4, sequence=4, offset=2)),
        ("", Indentation(mapping=4, sequence=4, offset=2)),
    ],
)
def test_detect_indentation(text, expected):
    assert detect_indentation(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a:\n    b: 1\n    list:\n      - x\n      - y: 1\n        z: 2\n",
        "a:\n    list:\n        - x\n        - y: 1\n          z: 2\n",
        "# heading\nA: 1  # trailing\n\nb:\n  c: 'single'\n  d: \"double\"\nlist:\n- one\n- two\n",
        "expiresin: 2026-12-04T21:04:05.123456789Z\nother: 2026-12-04T22:04:05.1+01:00\n",
        "port: \"443\"\nempty: ''\nnull_value:\nflag: true\n",
        "---\na: 1\n",
        "# only a comment\n",
    ],
)
def test_round_trip_is_byte_identical(text):
    assert round_trip(text) == text


def test_timestamps_load_as_strings():
    document = load_document("expiresin: 2026-12-04T21:04:05.123456789Z\n", PATH)

    assert document.root["expiresin"] == "2026-12-04T21:04:05.123456789Z"
    assert isinstance(document.root["expiresin"], str)


def test_long_values_not_wrapped():
    token = "Bearer " + "x" * 3000
    document = load_document("token: old\n", PATH)

    set_value(document.root, "token", token)

    assert document.dump() == f"token: {token}\n"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("", '""'),
        ("443", '"443"'),
        ("true", '"true"'),
        ("a: b", '"a: b"'),
        ("Bearer eyJ.a-b_c", "Bearer eyJ.a-b_c"),
        ("2027-01-02T03:04:05.6789Z", "2027-01-02T03:04:05.6789Z"),
    ],
)
def test_new_strings_quoted_like_go_yaml(value, written):
    document = load_document("key: 'old'\n", PATH)

    set_value(document.root, "key", value)

    assert document.dump() == f"key: {written}\n"


def test_comment_only_file_keeps_comments():
    document = load_document("# written by hand\n", PATH)

    set_value(document.root, "context", "astronomer.io")

    assert document.dump() == "# written by hand\ncontext: astronomer.io\n"


def test_find_key_ignores_case():
    document = load_document("Contexts: {}\nExpiresIn: x\n", PATH)

    assert find_key(document.root, "contexts") == "Contexts"
    assert find_key(document.root, "expiresin") == "ExpiresIn"
    assert find_key(document.root, "token") is None
    assert get_value(document.root, "expiresin") == "x"


def test_find_key_prefers_lower_case():
    document = load_document("Token: a\ntoken: b\n", PATH)

    assert get_value(document.root, "token") == "b"


def test_set_value_renames_in_place_with_comment():
    document = load_document("a: 1\nToken: old   # note\nb: 2\n", PATH)

    set_value(document.root, "token", "new")

    assert list(document.root) == ["a", "token", "b"]
    assert document.dump() == "a: 1\ntoken: new   # note\nb: 2\n"


def test_set_value_appends_new_key():
    document = load_document("a: 1\n", PATH)

    set_value(document.root, "token", "new")

    assert document.dump() == "a: 1\ntoken: new\n"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: c: d\n", 2),
        ("a: 1\nb:\n\t- c\n", 3),
        ("a: 1\nb: [1, 2\nc: 3\n", 3),
        ("a: 1\n---\nb: 2\n", 2),
    ],
)
def test_parse_error_names_path_and_line(text, line):
    with pytest.raises(ConfigError) as caught:
        load_document(text, PATH)

    message = str(caught.value)
    assert message.startswith(f"Cannot parse {PATH} at line {line}: ")
    assert message.endswith("Fix or remove the file. It was not changed.")
    assert "\n" not in message
    assert caught.value.path == str(PATH)


def test_top_level_must_be_mapping():
    with pytest.raises(ConfigError, match="the top level is a list"):
        load_document("- a\n- b\n", PATH)


def test_reused_anchor_reads_quietly(tmp_path, recwarn):
    # YAML 1.2 allows an anchor to be defined again; the later one wins.
    path = tmp_path / "config.yaml"
    text = "a: &x 1\nb: &x 2\nc: *x\n"
    document = load_document(text, path)
    assert document.root["c"] == 2
    assert [str(warning.message) for warning in recwarn] == []
