"""ntk_bridge.io result sets: a folder at its path is always a whole run, the previous one is never lost."""

import os
import subprocess
import sys

import pytest

from ntk_bridge import io
from ntk_bridge.errors import BridgeError


def _tree(root):
    """{relative path: bytes or 'dir'} of everything under root (hidden entries included)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(folder, d), root)] = "dir"
        for f in files:
            p = os.path.join(folder, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def _previous_run(out):
    out.mkdir(parents=True)
    (out / "summary.csv").write_text("old summary\n")
    (out / "errors.csv").write_text("old errors\n")          # written by the old run only
    (out / "notes.md").write_text("my notes\n")               # the user's own file
    (out / "depth4").mkdir()                                  # another run kept inside
    (out / "depth4" / "summary.csv").write_text("sub-run\n")


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_commit_replaces_the_run_and_keeps_what_is_not_the_commands(tmp_path):
    out = tmp_path / "out"
    _previous_run(out)
    with io.result_folder(out, "--out", replaces=("summary.csv", "errors.csv")) as tmp:
        assert io.is_staging(tmp) and tmp.parent == tmp_path
        assert (out / "summary.csv").read_text() == "old summary\n"       # untouched until the commit
        (tmp / "summary.csv").write_text("new summary\n")
    assert (out / "summary.csv").read_text() == "new summary\n"
    assert not (out / "errors.csv").exists()                  # a stale result of the same command is dropped
    assert (out / "notes.md").read_text() == "my notes\n"
    assert (out / "depth4" / "summary.csv").read_text() == "sub-run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]          # no staging left behind


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_failure_leaves_the_previous_run_byte_for_byte(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    _previous_run(out)
    before = _tree(tmp_path)
    with pytest.raises(RuntimeError):
        with io.result_folder(out, replaces=("summary.csv",)) as tmp:
            (tmp / "summary.csv").write_text("half\n")
            raise RuntimeError("figure failed")
    assert _tree(tmp_path) == before
    with io.result_folder(out, replaces=("summary.csv",)) as tmp:        # and the fallback commit works
        (tmp / "summary.csv").write_text("new\n")
    assert (out / "summary.csv").read_text() == "new\n" and (out / "notes.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_start_removes_the_folders_it_made(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with io.result_folder(tmp_path / "a" / "b" / "out"):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_bad_destinations_are_one_line_errors_before_anything_is_made(tmp_path):
    (tmp_path / "file").write_text("x")
    for path, words in ((tmp_path / "file", "is a file, not a folder"),
                        (tmp_path / "file" / "sub", "is a file, not a folder"),
                        ("/proc/ntk_bridge_test/out", "cannot")):
        with pytest.raises(BridgeError, match=words):
            with io.result_folder(path, "--out"):
                pytest.fail("entered")
    with pytest.raises(BridgeError, match="working folder"):
        with io.result_folder(".", "--out"):                  # would replace the folder the user stands in
            pytest.fail("entered")
    with pytest.raises(BridgeError, match="is a folder; give a file path"):
        with io.staged_files([tmp_path], "--out"):
            pytest.fail("entered")
    with pytest.raises(BridgeError, match="unsupported figure format 'xyz'.*\\.png"):
        io.check_figure_path("f.xyz", "--figure")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_leftovers_of_a_killed_run_are_cleaned_or_put_back(tmp_path):
    out = tmp_path / "out"
    _previous_run(out)
    dead = _dead_pid()
    stale = tmp_path / f".out.incomplete-{dead}-abcd"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    alive = tmp_path / f".out.incomplete-{os.getpid()}-beef"       # a run still going: left alone
    alive.mkdir()
    assert io.is_staging(stale) and io.is_staging(alive) and not io.is_staging(out)
    with io.result_folder(out) as tmp:
        (tmp / "summary.csv").write_text("new\n")
    assert not stale.exists() and alive.exists()
    # killed between the two renames of the fallback commit: the previous run is put back
    moved = tmp_path / f".gone.replaced-{dead}-0123"
    moved.mkdir()
    (moved / "summary.csv").write_text("previous\n")
    with pytest.raises(RuntimeError):
        with io.result_folder(tmp_path / "gone"):
            raise RuntimeError
    assert (tmp_path / "gone" / "summary.csv").read_text() == "previous\n" and not moved.exists()


def test_staged_files_rename_only_what_was_written(tmp_path):
    a, b = tmp_path / "figs" / "a.png", tmp_path / "figs" / "b.png"
    b.parent.mkdir()
    b.write_bytes(b"old b")
    with io.staged_files([a, b]) as (ta, tb):
        assert ta.suffix == ".png" and io.is_staging(ta) and not b.read_bytes() == b""
        ta.write_bytes(b"new a")
    assert a.read_bytes() == b"new a" and b.read_bytes() == b"old b"
    with pytest.raises(ValueError):
        with io.staged_files([a]) as (ta,):
            ta.write_bytes(b"newer")
            raise ValueError
    assert a.read_bytes() == b"new a"
    assert sorted(p.name for p in a.parent.iterdir()) == ["a.png", "b.png"]


def test_a_symlinked_result_folder_stays_a_link_to_the_new_run(tmp_path):
    real = tmp_path / "real"
    _previous_run(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    with io.result_folder(link, replaces=("summary.csv",)) as tmp:
        (tmp / "summary.csv").write_text("new\n")
    assert link.is_symlink() and (real / "summary.csv").read_text() == "new\n"
