"""docs/user-guide.md against the code: the settings reference and the troubleshooting section.

The settings reference must equal what ``tools/config_reference.py`` generates.

The troubleshooting section quotes error messages as list items in double
backtick code spans, with ``<...>`` where a message contains a value. The
messages in the code are found by reading every module of the package except
the emulator: each call of an error class whose first argument is a string, an
f-string, or a local variable assigned one. Both sides are reduced to their
literal fragments, the text between values. The checks are:

- every error class in ``astro_jupyter.errors`` has a heading of its own;
- every message in the code has its longest fragment in a quoted message of
  the guide, so a new message fails until the guide explains it;
- every quoted message contains the longest fragment of a message in the
  code, or its own longest fragment is a string in the code. The second case
  covers messages built by a helper, such as a cancel reason. So an entry for
  a message that was reworded or removed fails too.

Matching on the longest fragment, not the whole text, lets a message change
its other words without failing, and still ties each entry to one message.
It cannot check a message that the code builds in a method or takes from
another exception (``str(error)``), nor that the cause and fix are right.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import astro_jupyter.errors

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "astro_jupyter"
GUIDE_PATH = REPO_ROOT / "docs" / "user-guide.md"
GENERATOR_PATH = REPO_ROOT / "tools" / "config_reference.py"

ERROR_CLASSES = {
    name: value
    for name, value in vars(astro_jupyter.errors).items()
    if inspect.isclass(value) and issubclass(value, Exception)
}
# UsageError is how the magics show a message; TraitError is how traitlets rejects a setting.
MESSAGE_CALLS = set(ERROR_CLASSES) | {"UsageError", "TraitError"}

# Shorter fragments, such as "Cannot", would tie a quoted message to any message.
MIN_KEY_CHARS = 10
# A list item whose text is one code span, opened and closed with two backticks.
_QUOTED_MESSAGE = re.compile(r"^- `` (?P<message>.+) ``$")
_PLACEHOLDER = re.compile(r"<[^<>]+>")
# Quotes around a value ('<email>' in the guide, {email!r} in the code) are not message text,
# and a final period may be added apart from the rest of a message.
_FRAGMENT_EDGES = " '\"."


@dataclass(frozen=True)
class CodeMessage:
    """One message template in the code: where it is, and its literal fragments."""

    location: str
    fragments: tuple[str, ...]

    @property
    def key(self) -> str:
        return max(self.fragments, key=len, default="")


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_reference", GENERATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_fragments(parts: list[str]) -> tuple[str, ...]:
    stripped = (" ".join(part.split()).strip(_FRAGMENT_EDGES) for part in parts)
    return tuple(part for part in stripped if part)


def literal_parts(node: ast.expr, variables: dict[str, list[str]]) -> list[str] | None:
    """Return the literal text of a string expression, split where values go in, or None.

    None means the text is not written in the expression, such as ``str(error)``.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts = [""]
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts[-1] += str(value.value)
            else:
                parts.append("")
        return parts
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = literal_parts(node.left, variables)
        right = literal_parts(node.right, variables)
        if left is None or right is None:
            return None
        return [*left[:-1], left[-1] + right[0], *right[1:]]
    if isinstance(node, ast.Name):
        return variables.get(node.id)
    return None


def called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def string_variables(scope: ast.AST) -> dict[str, list[str]]:
    """Return the local names that ``scope`` assigns a string expression to, once."""
    variables: dict[str, list[str]] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                parts = literal_parts(node.value, {})
                if parts is not None:
                    variables[target.id] = parts
    return variables


def code_messages() -> tuple[list[CodeMessage], list[str]]:
    """Return the message templates in the package, and where a message is not literal."""
    messages: list[CodeMessage] = []
    unreadable: list[str] = []
    seen: set[str] = set()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR)
        if relative.parts[0] == "emulator":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]
        for scope in scopes:
            variables = string_variables(scope)
            for node in ast.walk(scope):
                if not isinstance(node, ast.Call) or called_name(node) not in MESSAGE_CALLS:
                    continue
                if not node.args:
                    continue
                location = f"{relative}:{node.lineno}"
                if location in seen:
                    continue
                seen.add(location)
                parts = literal_parts(node.args[0], variables)
                if parts is None:
                    unreadable.append(f"{location}: {ast.unparse(node.args[0])}")
                    continue
                fragments = clean_fragments(parts)
                if fragments:
                    messages.append(CodeMessage(location, fragments))
    return messages, unreadable


def package_literals() -> list[str]:
    """Return the literal fragments of every string in the package outside the emulator."""
    literals = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.relative_to(PACKAGE_DIR).parts[0] == "emulator":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Constant, ast.JoinedStr)):
                parts = literal_parts(node, {})
                if parts is not None:
                    literals.extend(clean_fragments(parts))
    return literals


def guide_section(text: str, heading: str) -> str:
    """Return the text of the level-2 section ``heading``, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(?P<body>.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"the guide has no section '## {heading}'"
    return match["body"]


def guide_messages() -> list[str]:
    section = guide_section(GUIDE_PATH.read_text(encoding="utf-8"), "Troubleshooting")
    messages = []
    for line in section.splitlines():
        match = _QUOTED_MESSAGE.match(line)
        if match:
            messages.append(" ".join(match["message"].split()))
    return messages


def guide_key(message: str) -> str:
    return max(clean_fragments(_PLACEHOLDER.split(message)), key=len, default="")


def test_config_reference_up_to_date() -> None:
    generator = load_generator()
    text = GUIDE_PATH.read_text(encoding="utf-8")

    assert generator.updated_guide(text) == text, (
        "the settings reference is out of date: run python3 tools/config_reference.py"
    )


def test_config_reference_lists_every_setting() -> None:
    from astro_jupyter.settings import AstroLogin

    generator = load_generator()
    _head, section, _tail = generator.split_guide(GUIDE_PATH.read_text(encoding="utf-8"))
    names = AstroLogin.class_traits(config=True)

    assert names
    for name, trait in names.items():
        # A setting may use a private subclass; the guide names its traitlets type.
        traitlets_types = {
            cls.__name__ for cls in type(trait).__mro__ if cls.__module__.startswith("traitlets")
        }
        rows = [line for line in section.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, name
        assert rows[0].split("|")[2].strip() in traitlets_types, rows[0]


def test_config_reference_rejects_missing_markers() -> None:
    generator = load_generator()

    with pytest.raises(generator.GuideFormatError):
        generator.updated_guide("# A guide without the generated section\n")


def test_troubleshooting_names_every_error_class() -> None:
    section = guide_section(GUIDE_PATH.read_text(encoding="utf-8"), "Troubleshooting")
    headings = set(re.findall(r"^### (\w+)$", section, re.M))

    assert ERROR_CLASSES
    assert set(ERROR_CLASSES) - headings == set(), "give each error class a '### Name' heading"


def test_troubleshooting_covers_every_message() -> None:
    messages, _unreadable = code_messages()
    quoted = "\n".join(guide_messages())

    assert len(messages) > 50, "the scan of the package found few messages, so it is broken"
    missing = [
        f"{message.location}: {message.key!r}" for message in messages if message.key not in quoted
    ]
    assert missing == [], "explain these messages under Troubleshooting in docs/user-guide.md"


def test_troubleshooting_quotes_current_messages() -> None:
    messages, _unreadable = code_messages()
    keys = [message.key for message in messages if len(message.key) >= MIN_KEY_CHARS]
    literals = package_literals()
    quoted = guide_messages()

    assert len(quoted) > 50, "the guide's quoted messages were not found, so the check is empty"
    stale = [
        message
        for message in quoted
        if not any(key in message for key in keys)
        and not any(guide_key(message) in literal for literal in literals)
    ]
    assert stale == [], "these quoted messages are no longer raised; update or remove them"
