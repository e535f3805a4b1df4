"""A cache of parsed tick files, so a file is parsed once, not on every run (issue 24).

``load_ticks`` looks a file up here before parsing it, and stores what it parsed.

* **Key**: sha256 of the file's bytes as stored (gzip'd or not) and ``FORMAT_VERSION``. An
  edited file is parsed again whatever its name or mtime; a change of the loader that could
  change its output for the same bytes must bump ``FORMAT_VERSION``.
* **Where**: ``$TRAILD_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/traild/ticks``, else
  ``~/.cache/traild/ticks``. ``TRAILD_NO_CACHE=1`` (or ``traild backtest --no-cache``) neither
  reads nor writes it. Deleting the directory at any time is safe.
* **Entry**: one uncompressed ``.npz`` per file: ``ts`` datetime64[ms], ``bid`` and ``ask``
  float64, exactly the arrays the parser returned (the zip's CRC-32 checks them on reading).
  Only files of at least ``MIN_TEXT_BYTES`` of text are stored: smaller ones parse in
  milliseconds.
* **Bounded**: after each write the least recently used entries (a hit refreshes an entry's
  mtime) are removed beyond ``MAX_ENTRIES`` entries or ``MAX_BYTES`` in all.
* **Never an error, never a wrong result**: writes go to a temporary file renamed into place
  (``os.replace``), so a reader sees a whole entry or none; a missing, truncated, corrupt or
  unreadable entry is a miss (and is removed), and a read-only or full directory only means
  nothing is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

FORMAT_VERSION = 1  # bump when load_ticks may return something else for the same bytes
MIN_TEXT_BYTES = 256 * 1024  # smaller files parse in a few milliseconds: not worth an entry
MAX_ENTRIES = 64
MAX_BYTES = 2 * 1024**3
STALE_TEMP_S = 3600.0  # a temporary file this old was left by a writer that died

DIR_ENV = "TRAILD_CACHE_DIR"
OFF_ENV = "TRAILD_NO_CACHE"
_SUFFIX = ".npz"
_DTYPES = {
    "ts": np.dtype("datetime64[ms]"),
    "bid": np.dtype(np.float64),
    "ask": np.dtype(np.float64),
}

Arrays = tuple[NDArray[np.datetime64], NDArray[np.float64], NDArray[np.float64]]


def cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The tick cache's directory, or None when ``TRAILD_NO_CACHE`` turns the cache off."""
    env = os.environ if environ is None else environ
    if env.get(OFF_ENV, "") not in ("", "0"):
        return None
    if env.get(DIR_ENV):
        return Path(env[DIR_ENV])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "traild" / "ticks"


class TickCache:
    """Parsed tick files in ``directory``, keyed by the bytes of the file they came from."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @staticmethod
    def key(data: bytes) -> str:
        return hashlib.sha256(b"traild-ticks-%d\n" % FORMAT_VERSION + data).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{_SUFFIX}"

    def get(self, key: str) -> Arrays | None:
        """The arrays stored for ``key``, or None (missing, unreadable or not well formed)."""
        path = self._path(key)
        try:
            # our own file object: np.load leaks the one it opens when the zip is not valid
            with path.open("rb") as f, np.load(f, allow_pickle=False) as entry:
                arrays = tuple(entry[name] for name in _DTYPES)
        except FileNotFoundError:
            return None
        except Exception:  # whatever the bytes are: a miss, never an error
            _remove(path)
            return None
        ts, bid, ask = arrays
        well_formed = all(a.ndim == 1 and a.size == ts.size for a in arrays) and all(
            a.dtype == dtype for a, dtype in zip(arrays, _DTYPES.values(), strict=True)
        )
        if not well_formed:
            _remove(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least recently used goes first when pruning
        return ts, bid, ask

    def put(
        self,
        key: str,
        ts: NDArray[np.datetime64],
        bid: NDArray[np.float64],
        ask: NDArray[np.float64],
    ) -> None:
        """Store the arrays for ``key`` if they fit; any failure leaves the cache as it was."""
        if ts.nbytes + bid.nbytes + ask.nbytes > MAX_BYTES:
            return
        path = self._path(key)
        temp = self.directory / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with temp.open("wb") as f:
                np.savez(f, ts=ts, bid=bid, ask=ask)
            os.replace(temp, path)
        except Exception:  # disk full, read-only, ...: nothing stored
            _remove(temp)
            return
        self.prune(keep=path)

    def prune(self, keep: Path | None = None) -> None:
        """Drop the least recently used entries beyond MAX_ENTRIES or MAX_BYTES, and stale
        temporary files; ``keep`` (the entry just written) stays."""
        now = time.time()
        entries: list[tuple[float, int, Path]] = []
        try:
            listing = list(self.directory.iterdir())
        except OSError:
            return
        for p in listing:
            try:
                st = p.stat()
            except OSError:
                continue
            if p.name.endswith(".tmp") and p.name.startswith("."):
                if now - st.st_mtime > STALE_TEMP_S:
                    _remove(p)
            elif p.suffix == _SUFFIX:
                entries.append((st.st_mtime, st.st_size, p))
        entries.sort(key=lambda e: (e[2] != keep, -e[0]))  # ``keep`` first, then newest first
        total = 0
        for n, (_, size, p) in enumerate(entries):
            total += size
            if p != keep and (n >= MAX_ENTRIES or total > MAX_BYTES):
                _remove(p)


def open_cache(enabled: bool = True) -> TickCache | None:
    """The cache the environment asks for, or None (``enabled`` False, or turned off)."""
    directory = cache_dir() if enabled else None
    return None if directory is None else TickCache(directory)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
