"""The report's claims: named thresholds decide typed verdicts; result schemas are enforced on write."""

import pandas as pd
import pytest

from ntk_bridge.report import claims, schemas
from ntk_bridge.report.loading import Loaded


def _width(depth: int, slopes: dict) -> Loaded:
    summary = pd.DataFrame([{"quantity": q, "slope": v, "widest": 256, "at_widest": 0.1, "at_widest_ci95": 0.01}
                            for q, v in slopes.items()])
    return Loaded(f"width sweep (depth{depth})", f"w/depth{depth}", {"summary": summary, "config": {"net": {"depth": depth}}})


MISSING = Loaded("x", "x", None, "not run")


def test_width_verdict_uses_the_named_slope_band():
    inside = claims.WIDTH_SLOPE + 0.9 * claims.WIDTH_SLOPE_TOL
    outside = claims.WIDTH_SLOPE - 1.1 * claims.WIDTH_SLOPE_TOL
    assert claims.width_claim([_width(1, {"mtl-b": inside, "anil": claims.WIDTH_SLOPE})]).outcome == "holds"
    v = claims.width_claim([_width(1, {"mtl-b": inside}), _width(8, {"mtl-b": outside, "anil": inside})])
    assert v.outcome == "mixed"
    assert "depth 8 (widths <= 256): slope outside -0.5 +- 0.15 for mtl-b" in v.status
    assert claims.width_claim([_width(8, {"mtl-b": outside})]).outcome == "violated"
    assert claims.width_claim([MISSING]).outcome == "unknown"


def _depth(gap: float) -> Loaded:
    errors = pd.DataFrame([{"depth": d, "method": m, "err_mean": e + (gap if m == "mtl-a" else 0.0)}
                           for d in (1, 16) for m, e in (("mtl-a", 0.9), ("head-only", 0.9), ("mtl-b", 0.5))])
    summary = pd.DataFrame([{"pair": p, "d_rel_lo": 0.4, "d_rel_hi": 0.1, "depth_lo": 1, "depth_hi": 16,
                             "rate_d_rel": r, "d_tr_lo": 0.5, "d_tr_hi": 0.4}
                            for p, r in (("mtl-b vs anil", -0.5), ("mtl-b vs maml", 0.0))])
    return Loaded("depth", "d", {"errors": errors, "summary": summary})


def test_mtl_a_verdict_is_exact_agreement():
    assert claims.mtl_a_claim(_depth(0.0), [], MISSING).outcome == "holds"
    v = claims.mtl_a_claim(_depth(1e3 * claims.EXACT_TOL), [], MISSING)
    assert (v.outcome, v.status) == ("violated", "VIOLATED")
    assert claims.mtl_a_claim(MISSING, [], MISSING).outcome == "unknown"


def test_distance_verdicts_use_the_named_slope():
    anil, maml = claims.distance_claims(_depth(0.0), MISSING)
    assert anil.outcome == "holds" and "slope -0.50" in anil.measured      # -0.5 < CLOSER_SLOPE
    assert maml.outcome == "violated" and maml.status == "synthetic: not closer"


def test_random_slots_verdict_needs_negative_gain_everywhere():
    rows = [{"kernel": "fc", "shots": 1, "n_way": 5, "depth": d, "method": m, "acc_mean": a}
            for d in (1, 4) for m, a in (("head-only", 50.0), ("mtl-b", 48.0), ("anil", 49.0), ("maml", 47.0))]
    kernel = Loaded("k", "k", {"accuracy": pd.DataFrame(rows)})
    (v,) = claims.random_slots_claim(kernel)
    assert v.outcome == "holds" and "mtl-b -2.0" in v.measured
    rows[-3]["acc_mean"] = 51.0                                            # mtl-b beats head-only at depth 4
    (v,) = claims.random_slots_claim(Loaded("k", "k", {"accuracy": pd.DataFrame(rows)}))
    assert v.outcome == "mixed"


def test_write_table_refuses_a_frame_without_a_declared_column(tmp_path):
    table = schemas.COMPARE.parts["curves"]
    frame = pd.DataFrame({c: [1.0] for c in table.columns})
    assert schemas.write_table(tmp_path, table, frame).is_file()
    with pytest.raises(ValueError, match="lacks declared column"):
        schemas.write_table(tmp_path / "other", table, frame.drop(columns=["val_own"]))
    assert not (tmp_path / "other").exists()


def test_every_declared_file_name_is_unique_per_schema():
    for schema in (schemas.DEPTH_SWEEP, schemas.WIDTH_SWEEP, schemas.KERNEL_FEWSHOT, schemas.COMPARE,
                   schemas.REGIME_MAP):
        files = schema.files()
        assert len(files) == len(set(files)) and all(isinstance(f, str) and "." in f for f in files)
