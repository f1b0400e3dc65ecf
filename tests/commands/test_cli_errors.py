"""Issue 13, kernel-side commands and report: every bad input is exit code 2, one `error:` line,
no traceback, and nothing written (the folder under test is byte-for-byte as before)."""

import os
import shutil

import pytest
from helpers.file_tree import tree as _tree

from ntk_bridge.commands.cli import main


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny depth sweep (the previous results every case must leave alone)."""
    root = tmp_path_factory.mktemp("finished")
    assert main(["depth-sweep", "--depths", "1,4", "--draws", "2", "--train-tasks", "2", "--test-tasks", "2",
                 "--out", str(root / "depth"), "--figure", str(root / "depth.png"), "--quiet"]) == 0
    return root


def _run(argv) -> int:
    """``ntk_bridge.commands.cli.main`` in-process; an argparse error is SystemExit(2) there, as in the shell."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _depth(tmp, *extra):
    return ["depth-sweep", "--depths", "1,4", "--draws", "1", "--train-tasks", "2", "--test-tasks", "2", "--quiet",
            "--out", str(tmp / "out"), "--figure", str(tmp / "fig.png"), *extra]


def _report(tmp, *extra):
    return ["report", "--depth-sweep", str(tmp / "out"), "--width-sweep", str(tmp / "none"),
            "--kernel-fewshot", str(tmp / "none"), "--compare", str(tmp / "none"), "--runs", str(tmp / "none"),
            "--out", str(tmp / "report.md"), "--figures", str(tmp / "figs"), *extra]


def _truncate_summary(tmp):
    f = tmp / "out" / "summary.csv"
    f.write_bytes(f.read_bytes()[:-25])                    # cut inside the last row, as a kill mid-write does


def _staging_copy(tmp):
    shutil.copytree(tmp / "out", tmp / ".out.incomplete-999999-abcd")


def _broken_run(tmp):
    (tmp / "runs" / "r1").mkdir(parents=True)
    (tmp / "runs" / "r1" / "summary.json").write_text('{"test": {"mean": 50.0, "ci')


# (id, argv from the case's folder, words the error line must hold, set-up, argparse-level error)
CASES = [
    ("depth-sweep --out under a file", lambda t: _depth(t, "--out", str(t / "file" / "sub")),
     ["--out", "is a file, not a folder"], None, False),
    ("depth-sweep --out /proc/x", lambda t: _depth(t, "--out", "/proc/ntk_bridge_x"), ["--out", "cannot"], None, False),
    ("depth-sweep --figure under a file", lambda t: _depth(t, "--figure", str(t / "file" / "f.png")),
     ["--figure", "is a file, not a folder"], None, False),
    ("depth-sweep --figure f.xyz", lambda t: _depth(t, "--figure", str(t / "f.xyz")),
     ["--figure", "unsupported figure format 'xyz'", ".png"], None, False),
    ("depth-sweep --d 2 (subspace rank)", lambda t: _depth(t, "--family", "subspace", "--d", "2"),
     ["--d 2", "subspace family's rank 3", "--d 3 or more"], None, False),
    ("depth-sweep --depths 1,,4", lambda t: _depth(t, "--depths", "1,,4"), ["--depths", "empty item"], None, True),
    ("report --out under a file", lambda t: _report(t, "--out", str(t / "file" / "r.md")),
     ["--out", "is a file, not a folder"], None, False),
    ("report --out /proc/x", lambda t: _report(t, "--out", "/proc/ntk_bridge_x/r.md"), ["--out", "cannot"], None, False),
    ("report --out a folder", lambda t: _report(t, "--out", str(t / "out")), ["--out", "is a folder"], None, False),
    ("report --figures under a file", lambda t: _report(t, "--figures", str(t / "file" / "figs")),
     ["--figures", "is a file, not a folder"], None, False),
    ("report --depth-sweep truncated summary.csv", lambda t: _report(t),
     ["summary.csv is truncated", "ntk-bridge depth-sweep"], _truncate_summary, False),
    ("report --runs with a cut-short summary.json", lambda t: _report(t, "--runs", str(t / "runs")),
     ["summary.json is unreadable", "r1"], _broken_run, False),
    ("report --depth-sweep unfinished folder", lambda t: _report(t, "--depth-sweep", str(t / ".out.incomplete-999999-abcd")),
     ["unfinished result folder", str(os.sep + "out")], _staging_copy, False),
]


@pytest.mark.parametrize("make_argv, words, setup, argparse_level", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(finished, tmp_path, capsys, make_argv, words, setup,
                                                         argparse_level):
    shutil.copytree(finished / "depth", tmp_path / "out")  # a previous complete run at the output path
    shutil.copy(finished / "depth.png", tmp_path / "fig.png")
    (tmp_path / "file").write_text("a file where a folder is needed\n")
    if setup:
        setup(tmp_path)
    before = _tree(tmp_path)
    capsys.readouterr()
    assert _run(make_argv(tmp_path)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err + captured.out
    error_lines = [line for line in lines if "error:" in line]
    assert len(error_lines) == 1, captured.err
    assert lines == error_lines and lines[0].startswith("error: ")   # argparse errors too (cli.OneLineParser)
    for w in words:
        assert w in error_lines[0], (w, error_lines[0])
    assert _tree(tmp_path) == before                       # nothing written, nothing removed
    assert not os.path.exists("/proc/ntk_bridge_x")


def test_library_field_names_become_the_commands_flags():
    """The library names a setting by its config field in backticks; the CLI shows the flag that
    sets it where the command has one, and leaves other backticked words alone."""
    from ntk_bridge.commands.cli import build_parser, in_flags

    parser = build_parser()
    msg = "singular with outer ridge (`outer_ridge`) 0; raise `outer_ridge`; see `ntk-bridge data info --help`; `nope`"
    assert in_flags(msg, parser, "depth-sweep") == (
        "singular with outer ridge (--outer-ridge) 0; raise --outer-ridge; see `ntk-bridge data info --help`; `nope`")
    assert in_flags("give `run_dir`", parser, "train") == "give --run-dir"
    assert in_flags("give `run_dir`", parser, "depth-sweep") == "give `run_dir`"   # no such flag there
