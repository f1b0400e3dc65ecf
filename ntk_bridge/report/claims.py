"""The claims the report checks, each a small function of the results it reads, returning typed verdicts.

Every threshold has a name here (its meaning in the comment beside it); every number in a
verdict's ``measured`` text is read from a result file. The sources are the ``Loaded`` records
of :mod:`ntk_bridge.report.sections` (``.data`` None when that result was not run).

- :func:`width_claim`: finite networks -> closed forms at rate width^(-1/2) (docs/theory.md 6);
- :func:`mtl_a_claim`: MTL with independent heads transfers nothing (docs/theory.md 5);
- :func:`distance_claims`: MTL-B vs ANIL / MAML closer with depth (the paper's claim);
- :func:`collapse_claim`: each predictor's own error beside the distance (docs/theory.md 6);
- :func:`random_slots_claim`: no transfer with class slots at random on real tasks;
- :func:`cost_claim`: MTL's accuracy and cost against the other trained methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from ntk_bridge.report.loading import Loaded

Outcome = Literal["holds", "violated", "mixed", "measured", "unknown"]

WIDTH_SLOPE = -0.5            # the predicted log-log slope of the relative error against width
WIDTH_SLOPE_TOL = 0.15        # a fitted slope within WIDTH_SLOPE +- this counts as consistent
EXACT_TOL = 1e-9              # "equal" for quantities the theory says are identical (float64 round-off)
CLOSER_SLOPE = -0.1           # d_rel counts as shrinking with depth when its log-log slope is below this
TRANSFER_METHODS = ("mtl-b", "anil", "maml")       # the outer-trained predictors
COLLAPSE_METHODS = ("mtl-b", "anil", "maml", "head-only")


@dataclass(frozen=True)
class Verdict:
    """One row of the report's claims table: the claim, what measured it, the evidence, the verdict."""

    claim: str
    source: str
    measured: str
    status: str
    outcome: Outcome

    def row(self) -> list[str]:
        return [self.claim, self.source, self.measured, self.status]


def _outcome(flags: list[bool]) -> Outcome:
    """holds when every flag is true, violated when none is, mixed otherwise; unknown without flags."""
    if not flags:
        return "unknown"
    return "holds" if all(flags) else "violated" if not any(flags) else "mixed"


def width_claim(widths: list[Loaded]) -> Verdict:
    """Claim 1: every fitted width slope within WIDTH_SLOPE +- WIDTH_SLOPE_TOL, per width sweep."""
    claim = ("Finite networks trained by gradient descent approach the closed forms, "
             "relative error ~ width^(-1/2) (docs/theory.md 6)")
    ok = [w for w in widths if w.data]
    if not ok:
        return Verdict("Finite networks approach the closed forms, error ~ width^(-1/2)", "width sweep", "not run",
                       "unknown", "unknown")
    parts, status, flags = [], [], []
    for w in ok:
        s = w.data["summary"]
        s = s[s["quantity"] != "mtl-a influence"]
        depth_l = w.data["config"].get("net", {}).get("depth", "?")
        widest = int(s["widest"].max())
        parts.append(f"depth {depth_l}: slopes " + ", ".join(f"{r.quantity} {r.slope:+.2f}" for r in s.itertuples())
                     + f"; error at width {widest}: "
                     + ", ".join(f"{r.quantity} {r.at_widest:.3f}" for r in s.itertuples()))
        off = [r.quantity for r in s.itertuples() if not abs(r.slope - WIDTH_SLOPE) < WIDTH_SLOPE_TOL]
        flags.append(not off)
        status.append(f"depth {depth_l} (widths <= {widest}): "
                      + (f"consistent, every slope within {WIDTH_SLOPE:g} +- {WIDTH_SLOPE_TOL:g}" if not off
                         else f"slope outside {WIDTH_SLOPE:g} +- {WIDTH_SLOPE_TOL:g} for {', '.join(off)}"))
    return Verdict(claim, "width sweep", "; ".join(parts), "; ".join(status), _outcome(flags))


def _max_gap(a, b) -> float:
    return float(np.max(np.abs(a - b)))


def mtl_a_claim(depth: Loaded, widths: list[Loaded], kernel: Loaded) -> Verdict:
    """Claim 2: MTL-A equals the head-only predictor to EXACT_TOL (synthetic errors, Omniglot accuracies);
    the finite-width influence is reported beside it."""
    ev, flags = [], []
    if depth.data:
        e = depth.data["errors"].pivot(index="depth", columns="method", values="err_mean")
        if {"mtl-a", "head-only"} <= set(e.columns):
            diff = _max_gap(e["mtl-a"], e["head-only"])
            ev.append(f"synthetic: max abs(err(MTL-A) - err(head-only)) over depths = {diff:.1e}")
            flags.append(diff < EXACT_TOL)
    if kernel.data:
        a = kernel.data["accuracy"]
        pa = a[a["method"] == "mtl-a"].set_index(["kernel", "shots", "depth"])["acc_mean"]
        ph = a[a["method"] == "head-only"].set_index(["kernel", "shots", "depth"])["acc_mean"]
        if len(pa) and len(ph):
            diff = _max_gap(pa, ph.reindex(pa.index))
            ev.append(f"Omniglot: max abs(acc(MTL-A) - acc(head-only)) = {diff:.1e} points")
            flags.append(diff < EXACT_TOL)
    for w in (w for w in widths if w.data):
        r = w.data["summary"]
        r = r[r["quantity"] == "mtl-a influence"]
        if len(r):
            r = r.iloc[0]
            ev.append(f"finite width ({Path(w.path).name}): MTL-A's training-task influence "
                      f"{r.at_widest:.3f} +- {r.at_widest_ci95:.3f} at width {int(r.widest)}, slope {r.slope:+.2f}")
    outcome: Outcome = ("holds" if all(flags) else "violated") if ev else "unknown"
    return Verdict("MTL with independent heads (variant A) transfers nothing in the kernel regime: "
                   "F = K T'Y' (docs/theory.md 5)", "depth sweep, kernel few-shot, width sweep",
                   "; ".join(ev) or "not run", {"holds": "holds", "violated": "VIOLATED"}.get(outcome, "unknown"),
                   outcome)


def _depth_slope(g) -> float:
    from ntk_bridge.stats import fit_loglog
    return fit_loglog(g["depth"], g["d_rel"])[0]


def distance_claims(depth: Loaded, kernel: Loaded) -> list[Verdict]:
    """Claims 3-4: d_rel(MTL-B, ANIL / MAML) has a log-log slope in depth below CLOSER_SLOPE."""
    out = []
    for pair in ("mtl-b vs anil", "mtl-b vs maml"):
        ev, status, flags = [], [], []
        if depth.data:
            s = depth.data["summary"]
            r = s[s["pair"] == pair]
            if len(r):
                r = r.iloc[0]
                ev.append(f"synthetic: d_rel {r.d_rel_lo:.3f} (L={int(r.depth_lo)}) -> {r.d_rel_hi:.3g} "
                          f"(L={int(r.depth_hi)}), slope {r.rate_d_rel:+.2f}; d_tr {r.d_tr_lo:.3f} -> {r.d_tr_hi:.3g}")
                flags.append(r.rate_d_rel < CLOSER_SLOPE)
                status.append("synthetic: closer with depth" if flags[-1] else "synthetic: not closer")
        if kernel.data:
            d = kernel.data["distances"]
            d = d[(d["pair"] == pair) & (d["kernel"] == "fc")]
            for shots, g in d.groupby("shots"):
                g = g.sort_values("depth")
                if len(g) >= 2:
                    slope = _depth_slope(g)
                    ev.append(f"Omniglot {shots}-shot: d_rel {g['d_rel'].iloc[0]:.3f} (L={g['depth'].iloc[0]}) -> "
                              f"{g['d_rel'].iloc[-1]:.3f} (L={g['depth'].iloc[-1]}), slope {slope:+.2f}")
                    flags.append(slope < CLOSER_SLOPE)
                    status.append(f"Omniglot {shots}-shot: " + ("closer with depth" if flags[-1] else "not closer"))
        out.append(Verdict(f"MTL-B and {pair.split(' vs ')[1].upper()} predictors get closer as depth grows "
                           "(the paper's claim; its rate is measured here)", "depth sweep, kernel few-shot",
                           "; ".join(ev) or "not run", "; ".join(status) or "unknown", _outcome(flags)))
    return out


def collapse_claim(depth: Loaded, kernel: Loaded) -> Verdict:
    """Claim 5: each predictor's own error (synthetic) / accuracy (Omniglot) at the extreme depths."""
    ev = []
    if depth.data:
        e = depth.data["errors"]
        lo, hi = e["depth"].min(), e["depth"].max()
        el, eh = (e[e["depth"] == d].set_index("method")["err_mean"] for d in (lo, hi))
        ev.append(f"synthetic test error at L={lo} / L={hi}: " + ", ".join(
            f"{m} {el.get(m, float('nan')):.3f} / {eh.get(m, float('nan')):.3f}" for m in COLLAPSE_METHODS))
    if kernel.data:
        a = kernel.data["accuracy"]
        for shots, g in a[a["kernel"] == "fc"].groupby("shots"):
            lo, hi = g["depth"].min(), g["depth"].max()
            t = g.set_index(["method", "depth"])
            ev.append(f"Omniglot {shots}-shot accuracy % at L={lo} / L={hi}: " + ", ".join(
                f"{m} {t.loc[(m, lo), 'acc_mean']:.1f} / {t.loc[(m, hi), 'acc_mean']:.1f}"
                for m in COLLAPSE_METHODS if (m, lo) in t.index and (m, hi) in t.index))
    return Verdict("A shrinking distance can hide that both predictors stopped learning from the training tasks: "
                   "each predictor's own error is reported beside it (docs/theory.md 6)", "depth sweep, kernel few-shot",
                   "; ".join(ev) or "not run", "see section 2" if ev else "unknown", "measured" if ev else "unknown")


def _gains(t, depth) -> dict:
    """Accuracy minus head-only's of each outer-trained predictor at ``depth`` (empty without head-only)."""
    head = t.get(("head-only", depth))
    if head is None:
        return {}
    return {m: t.get((m, depth)) - head for m in TRANSFER_METHODS if (m, depth) in t.index}


def random_slots_claim(kernel: Loaded) -> list[Verdict]:
    """Claim 6: with random class slots no outer-trained predictor beats head-only (gain < 0 everywhere)."""
    if not kernel.data:
        return []
    ev, below = [], True
    for (kname, shots), g in kernel.data["accuracy"].groupby(["kernel", "shots"], sort=True):
        t = g.set_index(["method", "depth"])["acc_mean"]
        for depth in sorted(g["depth"].unique()):
            below &= all(v < 0 for v in _gains(t, depth).values())
        lo = g["depth"].min()
        head = t.get(("head-only", lo))
        ev.append(f"{kname} {shots}-shot, L={lo}: accuracy minus head-only's {head:.1f}%: " + ", ".join(
            f"{m} {v:+.1f}" for m, v in _gains(t, lo).items())
            + f"; plain NTK regression on the training queries {t.get(('ntk', lo), float('nan')):.1f}% (chance "
            f"{100 / int(g['n_way'].iloc[0]):.0f}%)")
    return [Verdict("Real few-shot tasks with class slots assigned at random per episode: the mean target is ~0, "
                    "so a function shared by the training tasks has nothing to carry over (expected: transfer nil)",
                    "kernel few-shot", "; ".join(ev),
                    "transfer is negative: every outer-trained predictor (MTL-B, ANIL, MAML) is below the head-only "
                    "baseline at every depth" if below else "mixed: some outer-trained predictor beats head-only somewhere",
                    "holds" if below else "mixed")]


def _cost_text(name: str, shots, t) -> str:
    """MTL's test accuracy, that of the other method with the best validation accuracy (chosen on
    validation, :func:`ntk_bridge.report.selection.best_on_validation`), and every method's time per step relative to MTL."""
    from ntk_bridge.report.selection import best_on_validation

    others = [a for a in t.index if a != "mtl"]
    txt = f"{name} {shots}-shot: MTL {t.loc['mtl', 'test_own']:.1f} +- {t.loc['mtl', 'test_own_ci']:.1f}%"
    if others:
        row = best_on_validation(t.loc[others], "best_val_own") if "best_val_own" in t.columns else None
        if row is not None:
            txt += (f", best other on validation ({row.name}) {row['test_own']:.1f} +- {row['test_own_ci']:.1f}%")
        ms = t.loc["mtl", "step_ms"]
        ratios = ", ".join(f"{a} {t.loc[a, 'step_ms'] / ms:.1f}x" for a in others if math.isfinite(t.loc[a, "step_ms"]))
        txt += f"; time per step relative to MTL: {ratios}"
    return txt


def cost_claim(compares: list[Loaded]) -> Verdict:
    """Claim 7: the paper's cost claim, as measured by every comparison holding an MTL row."""
    ev = []
    for c in (c for c in compares if c.data):
        for shots, g in c.data["summary"].groupby("shots"):
            t = g.set_index("algorithm")
            if "mtl" in t.index:
                ev.append(_cost_text(Path(c.path).name, shots, t))
    return Verdict("MTL reaches GBML-level accuracy at a fraction of the training cost (the paper's empirical claim)",
                   "compare", "; ".join(ev) or "not run", "measured (see section 5)" if ev else "unknown",
                   "measured" if ev else "unknown")


def claims(depth: Loaded, widths: list[Loaded], kernel: Loaded, compares: list[Loaded]) -> list[Verdict]:
    """Every claim's verdict, in the report's order."""
    return [width_claim(widths), mtl_a_claim(depth, widths, kernel), *distance_claims(depth, kernel),
            collapse_claim(depth, kernel), *random_slots_claim(kernel), cost_claim(compares)]
