"""A cache of the parsed config file, valid only while the file is unchanged.

``get_token()`` may run in a loop in a notebook, so parsing the YAML on every
call would dominate its cost. The cache keeps one parsed document and the
records read from it, keyed by the file's signature (device, inode, size,
modification and change times). Any write, in place like the Astro CLI's or by
rename like ours, changes that signature, and the next read parses again.

File times advance in coarse steps: one timer tick (a few milliseconds) on
Linux file systems, and whole seconds (two on FAT) on some network and older
file systems. Two in-place writes of the same size within one step can leave
the same signature, so a file modified within the last
:data:`SETTLE_WINDOW_NS` is never cached. Code about to spend a refresh token
drops the cache first in any case.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

__all__ = ["FileSignature", "ParsedFileCache", "SETTLE_WINDOW_NS", "file_signature"]

# Longer than the coarsest common file-time step (FAT's two seconds). The cost
# is a parse per read for that long after each write.
SETTLE_WINDOW_NS = 2_500_000_000

_Value = TypeVar("_Value")


class FileSignature(NamedTuple):
    """Identity and version of a file as ``stat`` reports them.

    ``exists`` is False for a missing file, whose other fields are 0.
    """

    exists: bool
    device: int = 0
    inode: int = 0
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0


_MISSING = FileSignature(exists=False)


def file_signature(path: Path) -> FileSignature | None:
    """Return the signature of ``path`` (following a symbolic link), or None when stat fails."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return _MISSING
    except OSError:
        return None
    return FileSignature(
        True, status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns
    )


def _settled(signature: FileSignature) -> bool:
    if not signature.exists:
        return True
    newest = max(signature.mtime_ns, signature.ctime_ns)
    return time.time_ns() - newest > SETTLE_WINDOW_NS


@dataclass
class _Entry:
    signature: FileSignature
    document: Any
    derived: dict[Any, Any] = field(default_factory=dict)


class ParsedFileCache:
    """One parsed document and values derived from it, for one file; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: _Entry | None = None

    def document(self, signature: FileSignature | None) -> Any | None:
        """Return the cached document when it was parsed from a file with this signature."""
        with self._lock:
            entry = self._entry
        if entry is None or signature is None or entry.signature != signature:
            return None
        return entry.document

    def store(self, signature: FileSignature | None, document: Any) -> None:
        """Remember ``document`` as the parse of the file with ``signature``, if it has settled."""
        entry = _Entry(signature, document) if signature and _settled(signature) else None
        with self._lock:
            self._entry = entry

    def derived(
        self, signature: FileSignature | None, key: Any, compute: Callable[[], _Value]
    ) -> _Value:
        """Return ``compute()``, memoised per ``key`` while the file keeps ``signature``."""
        with self._lock:
            entry = self._entry
        if entry is None or signature is None or entry.signature != signature:
            return compute()
        if key not in entry.derived:
            entry.derived[key] = compute()
        return cast(_Value, entry.derived[key])

    def clear(self) -> None:
        """Forget everything, for example after this process wrote the file."""
        with self._lock:
            self._entry = None
