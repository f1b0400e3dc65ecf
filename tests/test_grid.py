"""The unit-grid runner (ntk_bridge.grid): content keys, shards, claims, damaged files, dead workers, budgets.

The synthetic study of ``helpers/grid_study.py`` logs one ``start`` line per computation, so the
tests count computations (= cache writes) instead of trusting the runner's own counters. The
equality of whole result folders across executors is tested on the regime map
(tests/studies/test_regime_map.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import grid_study

from ntk_bridge.errors import BridgeError
from ntk_bridge.grid import (
    GridOptions,
    Unit,
    canonical_json,
    decode,
    encode,
    parse_shard,
    read_grid,
    run_grid,
    shard_of,
)

TESTS = Path(__file__).resolve().parent
QUIET = GridOptions(progress=False)


def _serial(tmp_path: Path, n: int = 6) -> bytes:
    grid = grid_study.units(n)
    return grid_study.assemble(run_grid(grid, grid_study.compute, tmp_path / "serial", QUIET), grid)


# ----------------------------------------------------------------------------- keys, files, shards

def test_the_key_is_the_sha256_of_the_canonical_spec():
    a = Unit("s", "a", {"x": 1, "y": [1.5, float("inf")]}, None)
    b = Unit("s", "b", {"y": [1.5, float("inf")], "x": 1}, None)
    want = hashlib.sha256(b'{"spec":{"x":1,"y":[1.5,"inf"]},"study":"s"}').hexdigest()
    assert a.key == b.key == want
    assert Unit("s", "a", {"x": 2, "y": [1.5, float("inf")]}, None).key != want
    assert Unit("other", "a", {"x": 1, "y": [1.5, float("inf")]}, None).key != want
    assert canonical_json({"b": 1, "a": (2, 3)}) == '{"a":[2,3],"b":1}'


def test_a_unit_file_round_trips_and_refuses_every_damage():
    unit = Unit("s", "u", {"i": 0}, None)
    parts = {"a.csv": b"x,y\n1,2\n", "b.bin": bytes(range(256))}
    data = encode(unit, parts)
    assert decode(data, unit.key) == parts
    head, body = data.split(b"\n", 1)
    flipped = head + b"\n" + body[:5] + bytes([body[5] ^ 1]) + body[6:]
    for bad, why in [(data[:-1], "bytes of data"), (flipped, "fails its sha256"), (b"{garbage\n" + body, "header"),
                     (data, "another unit"), (body, "header")]:
        with pytest.raises(ValueError, match=why):
            decode(bad, unit.key if bad is not data else "0" * 64)


def test_shards_cover_every_unit_once_balanced_and_independent_of_order():
    grid = grid_study.units(10)
    for n in (1, 2, 3, 4, 10, 12):
        shares = [shard_of(grid, (k, n)) for k in range(n)]
        keys = [u.key for s in shares for u in s]
        assert sorted(keys) == sorted(u.key for u in grid)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        assert [u.key for u in shard_of(grid[::-1], (n - 1, n))] == [u.key for u in shares[-1]][::-1]


@pytest.mark.parametrize("text, words", [("3", "must look like K/N"), ("4/4", "0 <= K < N"), ("-1/2", "0 <= K < N"),
                                         ("a/b", "must look like K/N")])
def test_a_bad_shard_is_refused_in_one_line(text, words):
    with pytest.raises(BridgeError, match=words):
        parse_shard(text)


# ----------------------------------------------------------------------------- runs

def test_a_rerun_computes_nothing_and_a_budget_stops_and_resumes(tmp_path):
    log = tmp_path / "log"
    grid = grid_study.units(5, str(log), sleep=0.15)
    first = run_grid(grid, grid_study.compute, tmp_path / "c", GridOptions(progress=False, budget_s=0.2))
    assert 1 <= first.computed < 5 and len(first.missing) == 5 - first.computed
    second = run_grid(grid, grid_study.compute, tmp_path / "c", QUIET)
    assert second.complete and second.computed == len(first.missing)
    assert run_grid(grid, grid_study.compute, tmp_path / "c", QUIET).computed == 0
    assert sorted(grid_study.starts(log)) == list(range(5))          # every unit computed exactly once
    assert grid_study.assemble(second, grid) == _serial(tmp_path, 5)


def test_a_damaged_cache_file_is_named_and_recomputed(tmp_path, caplog):
    log = tmp_path / "log"
    grid = grid_study.units(6, str(log))
    cache = tmp_path / "c"
    want = grid_study.assemble(run_grid(grid, grid_study.compute, cache, QUIET), grid)
    files = [u.file(cache) for u in grid]
    files[1].write_bytes(files[1].read_bytes()[:-3])                            # truncated
    data = bytearray(files[3].read_bytes())
    data[-2] ^= 0x20                                                            # one bit flipped
    files[3].write_bytes(bytes(data))
    files[4].write_bytes(b"not a unit file")                                    # garbage
    with caplog.at_level(logging.WARNING, logger="ntk_bridge.grid"):
        again = run_grid(grid, grid_study.compute, cache, QUIET)
    damaged = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damaged) == 3 and all(str(files[i]) in m for i, m in zip((1, 3, 4), damaged))
    assert again.computed == 3 and Counter(grid_study.starts(log)) == Counter({0: 1, 1: 2, 2: 1, 3: 2, 4: 2, 5: 1})
    assert grid_study.assemble(again, grid) == want


def test_two_local_workers_give_the_serial_bytes(tmp_path):
    grid = grid_study.units(6)
    got = run_grid(grid, grid_study.compute, tmp_path / "w", GridOptions(workers=2, progress=False))
    assert got.computed == 6 and grid_study.assemble(got, grid) == _serial(tmp_path)


def test_a_worker_killed_mid_unit_loses_only_that_unit(tmp_path):
    log, marker = tmp_path / "log", tmp_path / "kill-2"
    marker.touch()
    grid = grid_study.units(6, str(log), sleep=0.05, kill={2: str(marker)})
    cache = tmp_path / "c"
    got = run_grid(grid, grid_study.compute, cache, GridOptions(workers=2, progress=False, retries=0))
    assert [u.name for u in got.missing] == ["u2"] and got.computed == 5     # the others are all cached
    assert Counter(grid_study.starts(log)) == Counter(range(6))               # and none was lost with it
    again = run_grid(grid, grid_study.compute, cache, GridOptions(workers=2, progress=False))
    assert again.computed == 1 and Counter(grid_study.starts(log))[2] == 2 and not again.missing
    assert grid_study.assemble(again, grid) == _serial(tmp_path)


def test_a_killed_worker_is_replaced_and_its_unit_retried(tmp_path):
    log, marker = tmp_path / "log", tmp_path / "kill-4"
    marker.touch()
    grid = grid_study.units(6, str(log), kill={4: str(marker)})
    got = run_grid(grid, grid_study.compute, tmp_path / "c", GridOptions(workers=2, progress=False))
    assert got.complete and got.computed == 6 and not marker.exists()
    assert Counter(grid_study.starts(log)) == Counter({0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 5: 1})
    assert grid_study.assemble(got, grid) == _serial(tmp_path)


def _runner(cache: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "helpers.grid_study", str(cache), str(out), *extra], cwd=TESTS,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    logs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return logs


def test_two_runners_on_one_cache_never_write_the_same_unit_twice(tmp_path):
    log, cache = tmp_path / "log", tmp_path / "c"
    procs = [_runner(cache, tmp_path / f"out{i}", "--log", str(log), "--sleep", "0.3", "--units", "8")
             for i in range(2)]
    outs = _finish(procs)
    assert sorted(grid_study.starts(log)) == list(range(8)), outs             # each unit computed once in all
    assert sum(int(o.split()[-1]) for o in outs) == 8
    want = _serial(tmp_path, 8)
    assert (tmp_path / "out0").read_bytes() == (tmp_path / "out1").read_bytes() == want   # both assembled it all


def test_three_shards_in_separate_processes_then_a_plain_run_assemble_the_serial_bytes(tmp_path):
    log, cache = tmp_path / "log", tmp_path / "c"
    outs = _finish([_runner(cache, tmp_path / f"shard{k}", "--shard", f"{k}/3", "--log", str(log)) for k in range(3)])
    assert [int(o.split()[-1]) for o in outs] == [2, 2, 2] and sorted(grid_study.starts(log)) == list(range(6))
    grid = grid_study.units(6)
    mtimes = {u.file(cache).stat().st_mtime_ns for u in grid}
    combined = run_grid(grid, grid_study.compute, cache, QUIET)
    assert combined.computed == 0 and {u.file(cache).stat().st_mtime_ns for u in grid} == mtimes
    assert grid_study.assemble(combined, grid) == _serial(tmp_path)
    assert read_grid(grid[:1], tmp_path / "nothing-here").missing == grid[:1]


def test_the_dask_executor_gives_the_serial_bytes(tmp_path):
    distributed = pytest.importorskip("distributed", reason="Dask's distributed is not installed (extra `dask`)")
    grid = grid_study.units(6, str(tmp_path / "log"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        got = run_grid(grid, grid_study.compute, tmp_path / "d",
                       GridOptions(scheduler=cluster.scheduler_address, progress=False))
    assert got.computed == 6 and grid_study.assemble(got, grid) == _serial(tmp_path)
    assert len({line.split()[2] for line in (tmp_path / "log").read_text().splitlines()}) == 2   # on both workers


def test_the_unit_file_header_names_the_unit(tmp_path):
    grid = grid_study.units(1)
    run_grid(grid, grid_study.compute, tmp_path, QUIET)
    header = json.loads(grid[0].file(tmp_path).read_bytes().split(b"\n", 1)[0])
    assert header["key"] == grid[0].key and header["spec"] == {"i": 0} and [p[0] for p in header["parts"]] == [
        "rows.csv", "meta.json"]
