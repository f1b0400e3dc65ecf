"""Mutation check of the depth law (docs/theory.md 8): every named mutation must make a law test fail.

Run (the full set; about 10-20 min on 2 idle cores, longer under load):

    python experiments/mutation_check.py [--out FILE] [--only NAME,NAME] [--all-tests]

Each mutation is one exact source edit (the old text must occur exactly once) of the derived laws and closed
forms (ntk_bridge/studies/depth_law.py, ntk_bridge/closed_form/predictors.py). It is applied to a *copy* of
the package and its tests in a temporary folder, and pytest runs there (PYTHONPATH = that folder): the
worktree's files are never edited, so an interrupted run leaves nothing mutated. Per mutation the relevant law
tests run with -x (stop at the first failure); --all-tests runs the whole of tests/studies/test_depth_law.py
instead. "caught" = pytest exit status 1 (a test failed); 0 = not caught; anything else = error (the copy did
not run: also not caught). An unmutated baseline of the same tests must pass first, or nothing is reported.
Writes the table (markdown, with the command, machine load and per-mutation seconds) to --out (default
experiments/results/mutations/report.md). Exit status 0 iff every mutation was caught.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAW = "ntk_bridge/studies/depth_law.py"
PRED = "ntk_bridge/closed_form/predictors.py"
T = "tests/studies/test_depth_law.py::"
EXACT = T + "test_constants_are_exact_on_the_two_level_form_for_every_network"
RHO = T + "test_deep_rho_is_the_kernels_limit_for_every_network"
PROFILE = T + "test_the_kernels_informative_part_follows_the_derived_depth_profile"
LIMIT = T + "test_the_informative_exponent_tends_to_its_limit_and_the_onset_is_where_the_bias_variance_reaches_one"
INFORM = T + "test_informative_part_falls_with_the_derived_profile_on_every_draw"
QUAD = T + "test_d_rel_is_the_quadrature_of_its_parts_on_every_draw"
MAML_W = T + "test_maml_training_weight_depends_on_n_and_is_not_the_n_to_infinity_form"
CONST = T + "test_constant_parts_of_mtl_b_and_anil_are_the_derived_ones_on_every_draw"
DENSE = T + "test_the_predictors_the_law_is_checked_against_equal_the_dense_meta_ntk_formula"


@dataclass(frozen=True)
class Mutation:
    """One exact source edit: ``old`` (occurring exactly once in ``path``) replaced by ``new``."""

    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation("exponent-relu", "informative exponent, ReLU without biases: -1 -> -0.92", LAW,
             'INFORMATIVE_EXPONENT = {"relu": -1.0,', 'INFORMATIVE_EXPONENT = {"relu": -0.92,', (PROFILE, INFORM)),
    Mutation("exponent-erf", "informative exponent, critical Erf: -1 -> -0.92", LAW,
             '"relu-bias": -0.5, "erf": -1.0}', '"relu-bias": -0.5, "erf": -0.92}', (PROFILE, INFORM)),
    Mutation("exponent-bias", "informative exponent, ReLU with biases (L >> L_b): -1/2 -> -0.45", LAW,
             '"relu-bias": -0.5, "erf"', '"relu-bias": -0.45, "erf"', (LIMIT, PROFILE)),
    Mutation("rho-relu", "deep rho, ReLU: 1/4 -> 0.26", LAW, 'DEEP_RHO = {"relu": 1 / 4,', 'DEEP_RHO = {"relu": 0.26,',
             (RHO,)),
    Mutation("rho-bias", "deep rho, ReLU with biases: 4/7 -> 0.55", LAW, '"relu-bias": 4 / 7,', '"relu-bias": 0.55,',
             (RHO,)),
    Mutation("rho-erf", "deep rho, critical Erf: 1/3 -> 0.32", LAW, '"erf": 1 / 3}', '"erf": 0.32}', (RHO,)),
    Mutation("onset-doubled", "bias onset L_b = 2/b^2 -> 4/b^2", LAW, "else 2.0 / b_std ** 2", "else 4.0 / b_std ** 2",
             (PROFILE, LIMIT)),
    Mutation("linear-sum", "d_rel = sqrt(P^2 + I^2) -> the linear sum P + I", LAW,
             "predicted=math.hypot(floor, pred), measured=d))", "predicted=floor + pred, measured=d))", (QUAD,)),
    Mutation("c_B", "MTL-B's constant: N n_z -> N n_q", LAW, "return s.r_1 * (s.rho * s.D - s.q) * n * nz * m_u",
             "return s.r_1 * (s.rho * s.D - s.q) * n * nq * m_u", (EXACT,)),
    Mutation("c_A", "ANIL's constant: m_r = m_q - (1 - r_1) m_s -> m_q - m_s", LAW,
             "m_r = m_q - (1 - rt) * m_s", "m_r = m_q - m_s", (EXACT,)),
    Mutation("phi_1", "ANIL's phi_1: (1 - r_1)^2 n_q / n_s -> (1 - r_1) n_q / n_s", LAW,
             "phi_1 = (1 - s.rho) * (1 + (1 - rt) ** 2 * nq / ns)", "phi_1 = (1 - s.rho) * (1 + (1 - rt) * nq / ns)",
             (EXACT,)),
    Mutation("c_M", "MAML's constant: m_q - alpha_M m_s -> m_q - m_s", LAW,
             "c_m = r_m ** 2 * s.rho * s.D * n * nq * (m_q - alpha * m_s)",
             "c_m = r_m ** 2 * s.rho * s.D * n * nq * (m_q - m_s)", (EXACT,)),
    Mutation("alpha_M", "MAML's support weight alpha_M x 0.96 (5/8 -> 0.6)", LAW,
             "for l, k in zip(lam, kap)]))", "for l, k in zip(lam, kap)])) * 0.96", (EXACT, MAML_W)),
    Mutation("w", "MAML's training weight w: alpha_M^2 -> alpha_M in phi_M", LAW,
             "/ ((1 - rho) * (1 + alpha ** 2 * nq / ns)", "/ ((1 - rho) * (1 + alpha * nq / ns)", (EXACT, MAML_W)),
    Mutation("r_1-flow", "inner-loop residual r_1 = e^{-c lambda_1} -> e^{-c lambda_1 / 2}", LAW,
             '"flow": lambda: math.exp(-c * lambda_1),', '"flow": lambda: math.exp(-c * lambda_1 / 2),', (EXACT,)),
    Mutation("r_1-ridge", "inner-loop residual r_1 = mu / (lambda_1 + mu) -> mu / lambda_1", LAW,
             '"ridge": lambda: inner.mu / (lambda_1 + inner.mu),', '"ridge": lambda: inner.mu / lambda_1,', (EXACT,)),
    Mutation("predictor-sign", "predictors: A_i M = M[q] - P_i M[s] -> M[q] + P_i M[s]", PRED,
             "return m[q] - p @ m[s]", "return m[q] + p @ m[s]", (EXACT, DENSE)),
    Mutation("predictor-transpose", "predictors: A^T w uses P_i^T -> P_i (n_q = n_s, so it runs)", PRED,
             "-(np.swapaxes(p, -1, -2) @ w)", "-(p @ w)", (DENSE, EXACT)),
)


def _copy_tree(dst: Path) -> None:
    """The package, its tests and the pytest configuration (pyproject.toml) into ``dst``."""
    for name in ("ntk_bridge", "tests"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")


def _apply(dst: Path, m: Mutation) -> None:
    path = dst / m.path
    text = path.read_text()
    count = text.count(m.old)
    if count != 1:
        raise SystemExit(f"error: mutation {m.name}: the text {m.old!r} occurs {count} times in {m.path} (needs 1); "
                         "update the mutation to the current source")
    path.write_text(text.replace(m.old, m.new))


def _pytest(dst: Path, tests: tuple[str, ...], stop_first: bool) -> tuple[int, str, float]:
    """(exit status, first failing test or '', seconds) of pytest on ``tests`` inside ``dst``."""
    env = dict(os.environ, PYTHONPATH=str(dst))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    if stop_first:
        cmd.insert(4, "-x")
    start = time.time()
    done = subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", done.stdout, flags=re.M)
    return done.returncode, (failed[0].split("::", 1)[-1] if failed else ""), time.time() - start


def run_one(m: Mutation | None, tests: tuple[str, ...], stop_first: bool = True) -> tuple[int, str, float]:
    """Copy the tree to a temporary folder, apply ``m`` (None: the baseline), run ``tests`` there."""
    with tempfile.TemporaryDirectory(prefix="ntk_bridge_mutant_") as tmp:
        dst = Path(tmp)
        _copy_tree(dst)
        if m is not None:
            _apply(dst, m)
        return _pytest(dst, tests, stop_first)


def _verdict(rc: int) -> str:
    return {1: "caught", 0: "NOT CAUGHT"}.get(rc, f"error (pytest exit {rc})")


def report(rows: list[tuple[Mutation, int, str, float]], command: str, baseline_s: float) -> str:
    caught = sum(rc == 1 for _, rc, _, _ in rows)
    lines = [f"# Mutation check of the depth law: {caught} of {len(rows)} caught", "",
             f"Command: `{command}` (from the repository root)", "",
             f"Load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs; "
             f"unmutated baseline of the same tests passed in {baseline_s:.0f} s.", "",
             "| mutation | edit | file | tests run (-x) | result | first failing test | s |", "|---|---|---|---|---|---|---|"]
    for m, rc, first, sec in rows:
        tests = ", ".join(t.split("::")[-1] for t in m.tests)
        lines.append(f"| {m.name} | {m.what} | {m.path} | {tests} | {_verdict(rc)} | {first or '-'} | {sec:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/results/mutations/report.md", help="markdown report file")
    p.add_argument("--only", default=None, help="comma-separated mutation names (default: all)")
    p.add_argument("--all-tests", action="store_true", help="run the whole law test file for every mutation")
    args = p.parse_args(argv)
    chosen = MUTATIONS
    if args.only:
        names = args.only.split(",")
        known = {m.name: m for m in MUTATIONS}
        unknown = [n for n in names if n not in known]
        if unknown:
            print(f"error: unknown mutation {unknown[0]!r}; choose from {', '.join(known)}", file=sys.stderr)
            return 2
        chosen = tuple(known[n] for n in names)
    every = ("tests/studies/test_depth_law.py",)
    selection = lambda m: every if args.all_tests else m.tests          # noqa: E731
    union = tuple(dict.fromkeys(t for m in chosen for t in selection(m)))
    rc, first, base_s = run_one(None, union, stop_first=True)
    if rc != 0:
        print(f"error: the unmutated tests do not pass (pytest exit {rc}, first failure {first or '-'}); "
              "fix them before checking mutations", file=sys.stderr)
        return 2
    print(f"baseline: {len(union)} test selections pass ({base_s:.0f} s)", flush=True)
    rows = []
    for m in chosen:
        rc, first, sec = run_one(m, selection(m))
        rows.append((m, rc, first, sec))
        print(f"{m.name:20s} {_verdict(rc):12s} {first or '-'} ({sec:.0f} s)", flush=True)
    command = " ".join(["python experiments/mutation_check.py", *(sys.argv[1:] if argv is None else argv)])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(rows, command, base_s))
    print(f"report -> {out}")
    return 0 if all(rc == 1 for _, rc, _, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
