"""The parsed-tick cache (issue 24): a file is parsed once; a hit is exactly what parsing
returns; an edited file, a bad entry or a cache that cannot be written never gives a wrong
result or an error; a bad file still raises, and leaves nothing behind."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import EURUSD_2019, USDJPY_2019, write_synthetic_ticks
from traild.adapters import tickcache, tickfiles
from traild.adapters.tickcache import TickCache, cache_dir
from traild.adapters.tickfiles import TickColumns, load_ticks
from traild.core.errors import DataError


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("TRAILD_CACHE_DIR", str(folder))
    monkeypatch.delenv("TRAILD_NO_CACHE", raising=False)
    monkeypatch.setattr(tickcache, "MIN_TEXT_BYTES", 0)  # the small test files are stored too
    return folder


@pytest.fixture
def ticks(tmp_path: Path) -> Path:
    return write_synthetic_ticks(tmp_path / "EURUSD_test.csv.gz", EURUSD_2019)


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


def _same(a: TickColumns, b: TickColumns) -> None:
    for name in ("ts", "bid", "ask"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name  # bit for bit: NaN and -0.0 included


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(raw: bytes, p: Path) -> TickColumns:
        raise AssertionError("parsed although the cache holds the file")

    monkeypatch.setattr(tickfiles, "_parse", fail)


def test_a_hit_returns_exactly_what_parsing_returns(
    cache: Path, ticks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = load_ticks(ticks, cache=False)
    assert _entries(cache) == []  # cache=False neither reads nor writes
    first = load_ticks(ticks)
    assert len(_entries(cache)) == 1
    _no_parsing(monkeypatch)
    hit = load_ticks(ticks)
    _same(hit, parsed)
    _same(first, parsed)
    assert hit.ts.dtype == np.dtype("datetime64[ms]") and hit.ts.flags.writeable


def test_odd_values_survive_the_cache(cache: Path, tmp_path: Path) -> None:
    text = "ts_utc,bid,ask\n" + "".join(
        f"2024-01-02T10:00:0{i}.5Z,{b},{a}\n"
        for i, (b, a) in enumerate([("nan", "1.1"), ("-0.0", "inf"), ("1e-300", "0"), ("2", "1")])
    )
    path = tmp_path / "odd.csv"
    path.write_text(text)
    parsed = load_ticks(path, cache=False)
    load_ticks(path)
    _same(load_ticks(path), parsed)


def test_an_edited_file_of_the_same_name_and_mtime_is_parsed_again(
    cache: Path, ticks: Path
) -> None:
    before = load_ticks(ticks)
    stat = ticks.stat()
    write_synthetic_ticks(ticks, USDJPY_2019)  # other bytes, same path ...
    os.utime(ticks, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... same mtime
    after = load_ticks(ticks)
    _same(after, load_ticks(ticks, cache=False))
    assert not np.array_equal(after.bid, before.bid)
    assert len(_entries(cache)) == 2


def test_the_same_bytes_under_another_name_share_an_entry(
    cache: Path, ticks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_ticks(ticks)
    copy = tmp_path / "elsewhere.csv.gz"
    copy.write_bytes(ticks.read_bytes())
    _no_parsing(monkeypatch)
    _same(load_ticks(copy), load_ticks(ticks))


@pytest.mark.parametrize(
    "damage", ["truncated", "bit flip", "garbage", "empty", "wrong arrays", "an npy"]
)
def test_a_bad_entry_is_a_miss_and_is_replaced(cache: Path, ticks: Path, damage: str) -> None:
    parsed = load_ticks(ticks, cache=False)
    load_ticks(ticks)
    (entry,) = _entries(cache)
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "bit flip":  # inside the bid array: only the zip's CRC-32 can tell
        middle = len(data) // 2
        entry.write_bytes(data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :])
    elif damage == "garbage":
        entry.write_bytes(b"not a zip file at all" * 10)
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "an npy":  # a valid numpy file, but not an archive
        with entry.open("wb") as f:
            np.save(f, parsed.bid)
    else:  # a well-formed file with the wrong content: float ts, a short ask
        with entry.open("wb") as f:
            np.savez(f, ts=parsed.bid, bid=parsed.bid, ask=parsed.ask[:-1])
    _same(load_ticks(ticks), parsed)
    (again,) = _entries(cache)  # written anew ...
    _same(TickColumns(*TickCache(cache).get(again.stem)), parsed)  # type: ignore[misc]


def test_an_unreadable_entry_is_a_miss(cache: Path, ticks: Path) -> None:
    parsed = load_ticks(ticks)
    (entry,) = _entries(cache)
    entry.unlink()
    entry.mkdir()  # reading it fails with IsADirectoryError (a permission error as root would not)
    _same(load_ticks(ticks), parsed)


def test_a_cache_that_cannot_be_written_is_no_error(
    tmp_path: Path, ticks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tickcache, "MIN_TEXT_BYTES", 0)
    parsed = load_ticks(ticks, cache=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TRAILD_CACHE_DIR", str(blocker / "ticks"))  # below a file: no mkdir
    _same(load_ticks(ticks), parsed)
    _same(load_ticks(ticks), parsed)
    # a full disk: the write fails half-way, and no temporary file is left behind
    folder = tmp_path / "full"
    monkeypatch.setenv("TRAILD_CACHE_DIR", str(folder))

    def no_space(file: object, **arrays: object) -> None:
        file.write(b"PK partial")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tickcache.np, "savez", no_space)
    _same(load_ticks(ticks), parsed)
    assert list(folder.iterdir()) == []


def test_a_read_only_cache_directory_is_no_error(
    cache: Path, ticks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = load_ticks(ticks)

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tickcache.os, "utime", read_only)  # a hit refreshes the mtime
    monkeypatch.setattr(tickcache.os, "replace", read_only)
    _same(load_ticks(ticks), parsed)  # a hit
    (cache / next(iter(_entries(cache))).name).unlink()
    _same(load_ticks(ticks), parsed)  # a miss that cannot be stored
    assert _entries(cache) == [] and list(cache.iterdir()) == []


def test_a_bad_file_still_raises_and_nothing_is_stored(cache: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ts_utc,bid,ask\n2024-01-02T10:00:00Z,1.1,1.2\n2024-01-02T10:00:01Z,x,1.2\n")
    for _ in range(2):
        with pytest.raises(DataError, match=r"bad\.csv:3: cannot parse the bid"):
            load_ticks(bad)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(b"ts_utc,bid,ask\n" * 1000)[:-20])
    with pytest.raises(DataError, match="corrupt gzip data"):
        load_ticks(cut)
    with pytest.raises(DataError, match="cannot read tick file"):
        load_ticks(tmp_path / "missing.csv")
    assert _entries(cache) == []


def test_turned_off_by_the_environment(
    cache: Path, ticks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAILD_NO_CACHE", "1")
    load_ticks(ticks)
    assert not cache.exists()


def test_small_files_are_not_stored(
    cache: Path, ticks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tickcache, "MIN_TEXT_BYTES", 10**9)
    load_ticks(ticks)
    assert _entries(cache) == []


def test_the_least_recently_used_entries_go_beyond_the_bounds(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tickcache, "MAX_ENTRIES", 2)
    files = []
    for name, spec in (
        ("f0.csv", EURUSD_2019),
        ("f1.csv", USDJPY_2019),
        ("f2.csv.gz", EURUSD_2019),
    ):
        files.append(write_synthetic_ticks(tmp_path / name, spec))  # f2: f0's text, gzip'd
    keys = [TickCache.key(p.read_bytes()) for p in files]
    for n, p in enumerate(files[:2]):
        load_ticks(p)
        os.utime(cache / f"{keys[n]}.npz", (1_000_000 + n, 1_000_000 + n))
    load_ticks(files[0])  # a hit: f0 is now the most recently used
    load_ticks(files[2])
    assert {p.stem for p in _entries(cache)} == {keys[0], keys[2]}
    # by size: an entry above MAX_BYTES in all goes, the newest stays
    monkeypatch.setattr(tickcache, "MAX_BYTES", (cache / f"{keys[2]}.npz").stat().st_size + 1)
    load_ticks(files[1])
    assert {p.stem for p in _entries(cache)} == {keys[1]}
    # a temporary file left by a writer that died goes once it is stale
    stale = cache / f".{keys[0]}.123.tmp"
    stale.write_bytes(b"PK")
    os.utime(stale, (1_000_000, 1_000_000))
    TickCache(cache).prune()
    assert not stale.exists()


def test_where_the_cache_is() -> None:
    home = Path.home()
    assert cache_dir({}) == home / ".cache" / "traild" / "ticks"
    assert cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/traild/ticks")
    assert cache_dir({"XDG_CACHE_HOME": "/x", "TRAILD_CACHE_DIR": "/y"}) == Path("/y")
    assert cache_dir({"TRAILD_CACHE_DIR": "/y", "TRAILD_NO_CACHE": "1"}) is None
    assert cache_dir({"TRAILD_CACHE_DIR": "/y", "TRAILD_NO_CACHE": "0"}) == Path("/y")
