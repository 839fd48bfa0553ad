"""Local disk tier: one file per block under a directory, a byte budget, atomic writes.

Writes go to a temporary file and are renamed into place, so a reader never sees half a block.
The index is rebuilt from the directory when the tier opens: every file's header and length are
checked, and truncated, mangled or misnamed files (and leftover temporaries) are removed. Reads
take the size from the index and cost open, read and close; a file's mtime (the recency a
restart rebuilds LRU order from) is refreshed at most once a minute per block, so reading does
not turn into a metadata write per block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from tokenwatt.errors import ConfigError, WarehouseError

from .codec import BlockError, read_header
from .policies import EvictionPolicy, LRUPolicy
from .tier import TierBase, TierUsage

__all__ = ["DiskTier"]

log = logging.getLogger(__name__)

_SUFFIX = ".twkv"
_FIXED_HEADER = 10  # magic + version + header length (see codec)
_MTIME_REFRESH_S = 60.0
"""A read refreshes a file's mtime only if this process last did so longer ago than this."""


class DiskTier(TierBase):
    """Blocks as files under ``root``, at most ``capacity_bytes`` of them.

    The directory is opened (scanned and checked) lazily on first use, or by :meth:`open`.
    One process writes a directory at a time: the index lives in this process, so blocks that
    another process adds appear only after a reopen (removals are noticed on read).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        capacity_bytes: int,
        *,
        policy: EvictionPolicy | None = None,
        fsync: bool = False,
        repair: bool = True,
        name: str = "disk",
    ) -> None:
        if capacity_bytes < 0:
            raise ConfigError(f"DiskTier capacity_bytes must be >= 0, got {capacity_bytes}")
        self.name = name
        self.root = Path(root)
        self.capacity_bytes = capacity_bytes
        self.fsync = fsync
        self.repair = repair
        self._policy = policy if policy is not None else LRUPolicy()
        self._index: dict[str, int] = {}
        self._blocks_dir = os.fspath(self.root / "blocks")
        self._touched_s: dict[str, float] = {}
        """Monotonic time this process last refreshed each block's mtime."""
        self._used = 0
        self._lock = threading.RLock()
        self._opened = False
        self.rejected_at_open = 0
        """Bad files found when the index was rebuilt (truncated, corrupt, misnamed, temporary)."""
        self.bad_files: list[tuple[Path, str]] = []
        """(path, reason) of each bad file found at open (removed unless ``repair`` is False)."""
        self.evictions = 0
        """Blocks evicted to stay within the budget."""

    # -- opening and the index ------------------------------------------------------------

    def open(self) -> DiskTier:
        """Create the directory if needed and rebuild the index from it (idempotent).

        With ``repair=False`` (inspection) nothing is created or removed.
        """
        with self._lock:
            if self._opened:
                return self
            if self.repair:
                self._create_dirs()
            tmp = self.root / "tmp"
            for leftover in tmp.iterdir() if tmp.is_dir() else ():
                self._reject(leftover, "temporary file left by an interrupted write")
            found: list[tuple[float, str, int]] = []
            for path in (self.root / "blocks").glob(f"*/*{_SUFFIX}"):
                entry = self._check_file(path)
                if isinstance(entry, str):
                    self._reject(path, entry)
                else:
                    found.append(entry)
            for _, key, size in sorted(found):  # oldest first, so LRU order survives a restart
                self._index[key] = size
                self._used += size
                self._policy.on_insert(key, size, 0.0)
            self._opened = True
            self._make_room(0)
            if self.rejected_at_open:
                log.warning(
                    "disk tier %s: %d bad files (%s)",
                    self.root,
                    self.rejected_at_open,
                    "removed" if self.repair else "kept: repair is off",
                )
            return self

    def _create_dirs(self) -> None:
        try:
            (self.root / "blocks").mkdir(parents=True, exist_ok=True)
            (self.root / "tmp").mkdir(exist_ok=True)
        except OSError as exc:
            raise WarehouseError(
                f"cannot use {self.root} as a disk tier ({exc.strerror}); pick a writable directory"
            ) from None

    def _reject(self, path: Path, reason: str) -> None:
        self.bad_files.append((path, reason))
        self.rejected_at_open += 1
        if self.repair:
            path.unlink(missing_ok=True)

    def _check_file(self, path: Path) -> tuple[float, str, int] | str:
        """(mtime, key, size) of a good block file, else why it is bad."""
        key = path.name[: -len(_SUFFIX)]
        try:
            st = path.stat()
            with path.open("rb") as f:
                fixed = f.read(_FIXED_HEADER)
                header_len = int.from_bytes(fixed[6:10], "little") if len(fixed) == 10 else 0
                header = read_header(fixed + f.read(max(header_len - _FIXED_HEADER, 0)))
        except (OSError, BlockError) as exc:
            return str(exc)
        if header.key != key:
            return f"file holds block {header.key}"
        if header.total_bytes != st.st_size:
            return f"file is {st.st_size} bytes, its header says {header.total_bytes}"
        return (st.st_mtime, key, st.st_size)

    def _path(self, key: str) -> Path:
        if len(key) < 2 or not all(c in "0123456789abcdef" for c in key):
            raise WarehouseError(f"block keys are lowercase hex, got {key!r}")
        return self.root / "blocks" / key[:2] / f"{key}{_SUFFIX}"

    # -- the Tier protocol ----------------------------------------------------------------

    def contains(self, key: str) -> bool:
        self.open()
        with self._lock:
            return key in self._index

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        self.open()
        with self._lock:
            return [k in self._index for k in keys]

    def get(self, key: str) -> bytes | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.open()
        with self._lock:
            sizes = [self._index.get(k) for k in keys]
            for key, size in zip(keys, sizes, strict=True):
                if size is not None:
                    self._policy.on_access(key)
        return [
            None if size is None else self._read(key, size)
            for key, size in zip(keys, sizes, strict=True)
        ]

    def _read(self, key: str, size: int) -> bytes | None:
        """The file of indexed ``key`` (``size`` bytes by the index; a shorter or damaged file
        fails verification in the store). Keys in the index are valid hex: no path check."""
        path = f"{self._blocks_dir}/{key[:2]}/{key}{_SUFFIX}"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # evicted or cleared by another process meanwhile
            with self._lock:
                self._forget(key)
            return None
        try:
            data = os.read(fd, size)
            if self.repair and self._due_for_touch(key):
                # The file's mtime is the recency the index is rebuilt from after a restart.
                with contextlib.suppress(OSError):
                    os.utime(fd)
        finally:
            os.close(fd)
        return data

    def _due_for_touch(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._touched_s.get(key)
            if last is not None and now - last < _MTIME_REFRESH_S:
                return False
            if key in self._index:
                self._touched_s[key] = now
        return True

    def put(self, key: str, value: bytes, *, cost: float = 0.0) -> None:
        self.open()
        path = self._path(key)
        size = len(value)
        with self._lock:
            if key in self._index:
                self._policy.on_access(key)
                return
            if size > self.capacity_bytes:
                return
        tmp = self.root / "tmp" / f"{key}.{uuid.uuid4().hex}.tmp"
        if not tmp.parent.is_dir():
            self._create_dirs()  # opened for inspection (repair=False), now written to
        with tmp.open("wb") as f:
            f.write(value)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        with self._lock:
            if key in self._index or not self._make_room(size):
                tmp.unlink(missing_ok=True)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
            self._index[key] = size
            self._used += size
            self._policy.on_insert(key, size, cost)

    def delete(self, key: str) -> None:
        self.open()
        with self._lock:
            if key in self._index:
                self._path(key).unlink(missing_ok=True)
                self._forget(key)

    def iter_keys(self) -> Iterator[str]:
        self.open()
        with self._lock:
            keys = list(self._index)
        return iter(keys)

    def usage(self) -> TierUsage:
        self.open()
        with self._lock:
            return TierUsage(len(self._index), self._used, self.capacity_bytes)

    def path_of(self, key: str) -> Path:
        """The file a block is (or would be) stored in."""
        return self._path(key)

    def clear(self) -> int:
        """Remove every block; returns how many were removed."""
        self.open()
        with self._lock:
            keys = list(self._index)
            for key in keys:
                self._path(key).unlink(missing_ok=True)
                self._forget(key)
            return len(keys)

    def close(self) -> None:
        with self._lock:
            for key in self._index:
                self._policy.on_remove(key)
            self._index.clear()
            self._touched_s.clear()
            self._used = 0
            self._opened = False

    def _make_room(self, size: int) -> bool:
        while self._used + size > self.capacity_bytes:
            victim = self._policy.victim(())
            if victim is None:
                return False
            self._path(victim).unlink(missing_ok=True)
            self._forget(victim)
            self.evictions += 1
        return True

    def _forget(self, key: str) -> None:
        self._touched_s.pop(key, None)
        size = self._index.pop(key, None)
        if size is not None:
            self._used -= size
        self._policy.on_remove(key)
