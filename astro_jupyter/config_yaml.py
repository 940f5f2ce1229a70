"""Round-trip YAML for the Astro CLI's ``config.yaml``.

Loads the file with ruamel.yaml's round-trip mode and dumps it back, so that
the parts a change does not touch keep their comments, quoting, key order and
indentation. Keys are matched case-insensitively, because the Go CLI's viper
library lower-cases keys when it writes and ignores case when it reads.

This module does not read or write files, take locks or know which keys hold
the login: ``config_files`` and ``config_store`` do that.
"""

from __future__ import annotations

import io
import re
import sys
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.emitter import RoundTripEmitter
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
)
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import PlainScalarString, ScalarString

from .errors import ConfigError

# catch_warnings() changes process-wide state, so parses that silence a warning
# take turns. A parse takes milliseconds.
_WARNINGS_LOCK = threading.Lock()

__all__ = [
    "ConfigDocument",
    "Indentation",
    "detect_indentation",
    "find_key",
    "get_value",
    "load_document",
    "set_value",
    "yaml_kind",
]

# A config the CLI writes nests 3 levels deep and has no aliases. These limits
# leave room for hand edits while keeping hostile files cheap to reject. Deep
# nesting would exhaust the parser's recursion. Aliases nested in aliases
# ("billion laughs") expand exponentially wherever a value is copied or
# converted to text, so the count of values with every alias expanded is
# capped. A 1 MiB file without aliases has well under a million values.
MAX_NESTING_DEPTH = 64
MAX_EXPANDED_VALUES = 1_000_000

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"

# A line whose value starts on the next line: "key:" or "- key:", maybe with a comment.
_BLOCK_OPENER = re.compile(r"^(?P<indent> *)(?P<dash>- +)?[^\s#][^#]*:[ \t]*(#.*)?$")


class _UntypedTimestampResolver(VersionedResolver):
    """Resolver that loads YAML timestamps as plain strings.

    ruamel.yaml's timestamp type keeps only microseconds and re-formats the
    value when it dumps it, so Go's nanosecond timestamps would change even
    where nothing touched them. As strings they load and dump unchanged.
    """

    @property
    def versioned_resolver(self) -> Any:
        resolvers = super().versioned_resolver
        # New lists on every call, because VersionedResolver.resolve extends the
        # list it gets with "+=" and would otherwise grow the cached one.
        return {
            first: [(tag, pattern) for tag, pattern in entries if tag != _TIMESTAMP_TAG]
            for first, entries in resolvers.items()
        }


class _GoQuotingEmitter(RoundTripEmitter):
    """Emitter that double-quotes new strings that cannot be written plain.

    ruamel.yaml would pick single quotes for them. go-yaml picks double quotes
    (``port: "443"``, ``token: ""``), so values this package writes look like the
    CLI's. Scalars loaded with explicit quotes keep their own style.
    """

    def choose_scalar_style(self) -> Any:
        style = super().choose_scalar_style()
        if style == "'" and not self.event.style:
            return '"'
        return style


class Indentation(NamedTuple):
    """Block indentation of a YAML file, in ruamel.yaml's terms.

    ``mapping`` is the indent of a nested mapping, ``sequence`` the indent of a
    sequence item's content and ``offset`` the indent of its dash, each in
    spaces relative to the parent key.
    """

    mapping: int
    sequence: int
    offset: int


# gopkg.in/yaml.v3, the encoder viper writes the file with, indents nested
# mappings by 4 spaces, a sequence's dashes by 2 and its items by 4. New files
# get the same layout.
_GO_YAML_INDENT = Indentation(mapping=4, sequence=4, offset=2)


def detect_indentation(text: str) -> Indentation:
    """Return the indentation that the block mappings and sequences in ``text`` use.

    Only the first nested mapping and the first block sequence under a key are
    measured. Missing measurements fall back to go-yaml v3's layout.
    """
    mapping: int | None = None
    sequence: int | None = None
    offset: int | None = None
    opener_column: int | None = None

    for line in text.splitlines():
        content = line.strip()
        if not content or content.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))

        if opener_column is not None and indent >= opener_column:
            if content == "-" or content.startswith("- "):
                if offset is None:
                    offset = indent - opener_column
                    after_dash = content[1:]
                    gap = len(after_dash) - len(after_dash.lstrip(" ")) if after_dash else 1
                    sequence = offset + 1 + gap
            elif mapping is None and indent > opener_column:
                mapping = indent - opener_column

        opener = _BLOCK_OPENER.match(line)
        if opener:
            opener_column = len(opener.group("indent")) + len(opener.group("dash") or "")
        else:
            opener_column = None
        if mapping is not None and offset is not None:
            break

    if mapping is None:
        mapping = _GO_YAML_INDENT.mapping
    if offset is None or sequence is None:
        # No sequence to measure: dashes 2 spaces less in than a mapping, as go-yaml does.
        offset = max(mapping - 2, 0)
        sequence = offset + 2
    return Indentation(mapping=mapping, sequence=sequence, offset=offset)


def _new_yaml(indentation: Indentation) -> YAML:
    yaml = YAML(typ="rt")
    yaml.Resolver = _UntypedTimestampResolver
    yaml.Emitter = _GoQuotingEmitter
    yaml.preserve_quotes = True
    # Never re-wrap a long line: tokens are longer than any default width.
    yaml.width = sys.maxsize
    yaml.indent(
        mapping=indentation.mapping, sequence=indentation.sequence, offset=indentation.offset
    )
    return yaml


@dataclass
class ConfigDocument:
    """A loaded ``config.yaml``: its top-level mapping and how to dump it back.

    Change ``root`` in place, then call ``dump``.
    """

    root: CommentedMap
    yaml: YAML
    # The text of a file that contained only comments. ruamel.yaml drops comments
    # when the document is empty, so they are written back in front.
    preamble: str = ""

    def dump(self) -> str:
        """Return the YAML text of ``root``."""
        stream = io.StringIO()
        if self.root or not self.preamble:
            self.yaml.dump(self.root, stream)
        return self.preamble + stream.getvalue()


def load_document(text: str, path: Path) -> ConfigDocument:
    """Parse the text of a config file, keeping what a round trip needs.

    An empty text, or one with only comments, loads as an empty mapping.

    Raises
    ------
    ConfigError
        The text is not valid YAML, or its top level is not a mapping. The
        message names ``path`` and, where known, the line.
    """
    indentation = detect_indentation(text)
    yaml = _new_yaml(indentation)
    if text.lstrip().startswith("---"):
        yaml.explicit_start = True
    try:
        # A redefined anchor is valid YAML 1.2, and ruamel.yaml's warning about
        # it would print several lines into the notebook on every read.
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", ReusedAnchorWarning)
            _check_shape(yaml, text, path)
            data = yaml.load(text)
    except YAMLError as error:
        raise _parse_error(path, error) from None
    except TypeError:
        # ruamel.yaml 0.19 raises TypeError for a mapping used as a key inside
        # a key ("? - :"), before it can wrap the value as hashable.
        raise ConfigError(
            f"Cannot parse {path}: a mapping or list is used as a key, which the Astro CLI "
            "cannot read either. Fix or remove the file. It was not changed.",
            path=str(path),
        ) from None
    except RecursionError:
        # The depth check should make this unreachable. It stays because how
        # deep the parser recurses per level of nesting is not documented.
        raise _limit_error(path, "it nests too deeply to parse") from None

    if data is None:
        preamble = text if _is_only_comments(text) else ""
        if preamble and not preamble.endswith("\n"):
            preamble += "\n"
        return ConfigDocument(root=CommentedMap(), yaml=yaml, preamble=preamble)
    if not isinstance(data, CommentedMap):
        raise ConfigError(
            f"Invalid {path}: the top level is a {yaml_kind(data)}, but the Astro CLI expects a "
            "mapping of settings. Fix or remove the file. It was not changed.",
            path=str(path),
        )
    return ConfigDocument(root=data, yaml=yaml)


def _check_shape(yaml: YAML, text: str, path: Path) -> None:
    """Raise ConfigError when ``text`` nests deeper than, or expands beyond, the limits.

    This walks the parser's events, which needs no recursion and builds no
    objects, so a hostile file is rejected before it is loaded.
    """
    # One entry per open collection: its anchor and its expanded value count.
    open_collections: list[list[Any]] = [[None, 0]]
    anchored_sizes: dict[str, int] = {}
    for event in yaml.parse(text):
        if isinstance(event, CollectionStartEvent):
            if len(open_collections) > MAX_NESTING_DEPTH:
                mark = event.start_mark
                where = f" at line {mark.line + 1}" if mark is not None else ""
                raise _limit_error(
                    path, f"it nests more than {MAX_NESTING_DEPTH} levels deep{where}"
                )
            open_collections.append([event.anchor, 1])
            continue
        if isinstance(event, CollectionEndEvent):
            anchor, size = open_collections.pop()
        elif isinstance(event, AliasEvent):
            anchor, size = None, anchored_sizes.get(event.anchor, 1)
        elif isinstance(event, NodeEvent):
            anchor, size = event.anchor, 1
        else:
            continue
        if anchor is not None:
            anchored_sizes[anchor] = size
        open_collections[-1][1] += size
        if open_collections[-1][1] > MAX_EXPANDED_VALUES:
            raise _limit_error(
                path,
                f"its aliases (*name) expand to more than {MAX_EXPANDED_VALUES} values",
            )


def _limit_error(path: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"Cannot parse {path}: {problem}, far beyond any Astro config. Fix or remove the "
        "file. It was not changed.",
        path=str(path),
    )


def _is_only_comments(text: str) -> bool:
    lines = (line.strip() for line in text.splitlines())
    return all(not line or line.startswith("#") for line in lines)


def _parse_error(path: Path, error: YAMLError) -> ConfigError:
    # The parser's wording can quote values from the file, so only wording that
    # cannot contain a token is passed on.
    if isinstance(error, DuplicateKeyError):
        key = re.search(r'found duplicate key "([^"\n]{1,80})"', str(error.problem))
        problem = f"the key {key.group(1)!r} appears twice" if key else "a key appears twice"
    elif isinstance(error, MarkedYAMLError) and error.problem:
        problem = str(error.problem)
        if problem.startswith("but ") and error.context:
            # "expected a single document in the stream" + "but found another document"
            problem = f"{error.context}, {problem}"
        problem = " ".join(problem.split())[:160]
    else:
        problem = "invalid YAML"

    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    return ConfigError(
        f"Cannot parse {path}{where}: {problem}. Fix or remove the file. It was not changed.",
        path=str(path),
    )


def yaml_kind(value: Any) -> str:
    """Return the YAML name of a loaded value's type, such as ``"list"`` or ``"string"``."""
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def find_key(mapping: CommentedMap, name: str) -> Any | None:
    """Return the key of ``mapping`` that matches ``name`` ignoring case, or None.

    The lower-case spelling wins when several spellings exist.
    """
    if name in mapping:
        return name
    for key in mapping:
        if isinstance(key, str) and key.lower() == name:
            return key
    return None


def get_value(mapping: CommentedMap, name: str) -> Any:
    """Return the value under ``name`` matched ignoring case, or None when missing."""
    key = find_key(mapping, name)
    return None if key is None else mapping[key]


def set_value(mapping: CommentedMap, name: str, value: Any) -> None:
    """Set ``name`` to ``value``, spelling the key in lower case as viper writes it.

    A key spelled in another case is renamed at its position, keeping its
    comment. Further spellings of the same key are removed, because viper
    would merge them into one. A new key goes at the end of the mapping.

    A plain ``str`` is written plain where YAML allows and double-quoted
    otherwise, as go-yaml writes it. A value loaded from the file keeps its
    quoting.
    """
    if isinstance(value, str) and not isinstance(value, ScalarString):
        # Without this, ruamel.yaml copies the quoting of the value it replaces.
        value = PlainScalarString(value)
    spellings = [key for key in mapping if isinstance(key, str) and key.lower() == name]
    if not spellings:
        mapping[name] = value
        return

    first, *others = spellings
    for other in others:
        mapping.ca.items.pop(other, None)
        del mapping[other]
    if first == name:
        mapping[name] = value
        return

    position = list(mapping).index(first)
    comment = mapping.ca.items.pop(first, None)
    del mapping[first]
    mapping.insert(position, name, value)
    if comment is not None:
        mapping.ca.items[name] = comment
