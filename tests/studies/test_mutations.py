"""The mutation machinery of experiments/mutation_check.py on a small subset (the full run is the script)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "mutation_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("mutation_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_three_mutations_are_caught_in_a_copy_and_the_worktree_is_untouched(tmp_path):
    """rho 1/4 -> 0.26, the ReLU informative exponent -1 -> -0.92 and MTL-B's N n_z -> N n_q, each applied to a
    temporary copy: the baseline passes, all three are caught, the report says so, the source is unchanged."""
    mc = _script()
    before = {m.path: (SCRIPT.parents[1] / m.path).read_text() for m in mc.MUTATIONS}
    out = tmp_path / "report.md"
    assert mc.main(["--only", "rho-relu,exponent-relu,c_B", "--out", str(out)]) == 0
    text = out.read_text()
    assert "3 of 3 caught" in text and text.count("| caught |") == 3 and "NOT CAUGHT" not in text
    assert "--only rho-relu,exponent-relu,c_B" in text
    assert {m.path: (SCRIPT.parents[1] / m.path).read_text() for m in mc.MUTATIONS} == before


def test_every_mutation_names_text_that_occurs_exactly_once_and_an_unknown_name_is_refused(capsys):
    """Each mutation's old text is in its file exactly once (else the run would refuse it), the edit changes it,
    there are at least 12, and --only with an unknown name is refused in one line."""
    mc = _script()
    assert len(mc.MUTATIONS) >= 12 and len({m.name for m in mc.MUTATIONS}) == len(mc.MUTATIONS)
    for m in mc.MUTATIONS:
        assert (SCRIPT.parents[1] / m.path).read_text().count(m.old) == 1, m.name
        assert m.old != m.new and m.tests, m.name
    assert mc.main(["--only", "nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown mutation 'nonsense'")
