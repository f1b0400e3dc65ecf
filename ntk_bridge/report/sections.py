"""One markdown report from every result the project's commands wrote.

Reads, each from its own folder (any may be missing; a missing one is listed as "not run" with
the command that produces it):

- the synthetic depth sweep (``ntk-bridge depth-sweep``): depth_sweep.csv, summary.csv, errors.csv;
- width sweeps (``ntk-bridge width-sweep``): summary.csv, error_table.csv, pairs.csv, run.json in
  the folder and in its sub-folders (e.g. one per depth);
- the kernel few-shot run (``ntk-bridge kernel-fewshot``): accuracy.csv, distances.csv,
  distance_vs_synthetic.csv; and the same run scored on validation episodes (``--test-split val``,
  folder ``<kernel folder>_val``), on which each kernel predictor's depth is chosen;
- trainer comparisons (``ntk-bridge compare``): summary.csv + config.json of every folder given;
- trainer run folders (``ntk-bridge train``): summary.json + config.json under a runs folder.

Writes the report (theory claims with their measured status; distance vs depth and width;
kernel-regime vs trained accuracy on the same tasks; MTL vs GBML accuracy and cost; the paper's
reference numbers beside ours, with the protocol of each) and figures ``report_*.png``.
Every selection (a kernel predictor's depth, the best run of a setting, the best other method) is
made on validation accuracy (:mod:`ntk_bridge.report.selection`) and said so beside it; test accuracy is
only read at the chosen candidate. Every number in the report is read from those files; nothing is typed in except the paper's
reference table (docs/benchmarks.md), which is labelled as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ntk_bridge.report.figures import figure_accuracy, figure_depth, figure_width
from ntk_bridge.report.loading import COMMANDS, Loaded
from ntk_bridge.report.selection import best_on_validation

# docs/benchmarks.md: 5-way accuracy %, as quoted by the MTL paper (Wang, Zhao & Li, ICML 2021).
PAPER_TABLE = [  # as printed there (strings, so 75.60 stays 75.60)
    ("MTL (the paper)", "ResNet-12", "59.84 77.72 67.11 83.69 69.5 84.1 42.4 57.7".split()),
    ("MetaOptNet-SVM", "ResNet-12", "62.64 78.63 65.99 81.56 72.0 84.2 41.1 55.5".split()),
    ("MetaOptNet-RR", "ResNet-12", "61.41 77.88 65.36 81.34 72.6 84.3 40.5 55.3".split()),
    ("ProtoNet", "ResNet-12", "59.25 75.60 61.74 80.00 72.2 83.5 37.5 52.5".split()),
    ("MAML", "Conv-4", "48.70 63.11 51.67 70.30 58.9 71.5 38.1 50.4".split()),
]
PAPER_SETTINGS = [("miniimagenet", 1), ("miniimagenet", 5), ("tieredimagenet", 1), ("tieredimagenet", 5),
                  ("cifarfs", 1), ("cifarfs", 5), ("fc100", 1), ("fc100", 5)]
PAPER_PROTOCOL = ("MTL paper: best-validation checkpoint, 2,000 test episodes x 50 queries/class, mean +- 95% CI; "
                  "the other rows are the source papers' numbers as quoted there (their protocols use 600 to 10,000 "
                  "episodes; see benchmarks.md)")
PAPER_COST = ("paper: mini-ImageNet 5-way 5-shot on AWS p3 V100s, MetaOptNet 85.6 GPU-hours for 78.63%, "
              "MTL 3.7 GPU-hours for 77.72%; tiered-ImageNet 5-shot MTL matched MetaOptNet (81.55 vs 81.56) at ~11x less time")
GBML_NAMES = ("maml", "anil", "protonet", "metaoptnet-ridge")


# ----------------------------------------------------------------------------- formatting

def _f(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}g}" if isinstance(v, (float, np.floating)) else str(v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _pm(m, h, d: int = 2) -> str:
    """``"m +- h"``; a missing half-width (one sample: metrics.mean_ci gives NaN) reads "(no interval)"."""
    if isinstance(h, (float, np.floating)) and math.isnan(h) and math.isfinite(m):
        return f"{m:.{d}f} (no interval)"
    return f"{m:.{d}f} +- {h:.{d}f}"


# ----------------------------------------------------------------------------- figures


# ----------------------------------------------------------------------------- the report

def trained_table(compares: list[Loaded], runs: Loaded) -> pd.DataFrame:
    """Every trained test accuracy: source, dataset, algorithm, shots, acc, ci95, protocol, cost."""
    rows = []
    for c in compares:
        if not c.data:
            continue
        cfg = c.data["config"].get("args", c.data["config"])
        for r in c.data["summary"].itertuples():
            rows.append({"source": Path(c.path).name, "dataset": cfg.get("dataset", "?"), "algorithm": r.algorithm,
                         "shots": int(r.shots), "acc": float(r.test_own), "ci95": float(r.test_own_ci),
                         "val": 100.0 * float(getattr(r, "best_val_own", float("nan"))),
                         "logreg": float(getattr(r, "test_logreg", float("nan"))),
                         "logreg_ci95": float(getattr(r, "test_logreg_ci", float("nan"))),
                         "episodes": cfg.get("test_episodes"), "query": cfg.get("test_query"),
                         "backbone": f"{cfg.get('backbone', '?')}"
                                     + (f" ({cfg.get('channels')} ch)" if cfg.get("channels") else ""),
                         "train_s": float(r.train_time_s), "step_ms": float(r.step_ms),
                         "time_to_target_s": float(getattr(r, "time_to_target_s", float("nan"))),
                         "head": "own"})
    if runs.data:
        for r in runs.data["runs"].itertuples():
            rows.append({"source": r.run, "dataset": r.dataset, "algorithm": r.algorithm, "shots": int(r.shots),
                         "acc": float(r.acc), "ci95": float(r.ci95), "val": float(r.val), "logreg": float("nan"),
                         "logreg_ci95": float("nan"), "episodes": r.episodes, "query": r.query,
                         "backbone": f"{r.backbone}" + (f" ({r.channels} ch)" if r.channels else ""),
                         "train_s": float(r.train_s) if r.train_s is not None else float("nan"),
                         "step_ms": (1000.0 * r.train_s / r.steps) if r.train_s and r.steps else float("nan"),
                         "time_to_target_s": float("nan"), "head": r.head})
    cols = ["source", "dataset", "algorithm", "shots", "acc", "ci95", "val", "logreg", "logreg_ci95", "episodes", "query",
            "backbone", "train_s", "step_ms", "time_to_target_s", "head"]
    return pd.DataFrame(rows, columns=cols)


def _depth_tables(depth: Loaded) -> list[str]:
    """Markdown lines: the depth sweep's distances and rates per pair, then test errors per method and depth.

    The deep-regime slope column appears only when the sweep fitted it (two depths >= 16 or more);
    an error cell over one draw says so instead of showing an interval of 0.
    """
    from ntk_bridge.stats import CI95_TEXT, format_mean_ci

    s = depth.data["summary"]
    deep = "rate_d_rel_L>=16" in s.columns
    L = _table(["pair", "d_rel at L_lo", "d_rel at L_hi", "d_tr at L_lo", "d_tr at L_hi", "slope log d_rel / log L"]
               + (["slope (L>=16)"] if deep else []),
               [[r["pair"], f"{r['d_rel_lo']:.4g} (L={int(r['depth_lo'])})",
                 f"{r['d_rel_hi']:.4g} (L={int(r['depth_hi'])})", f"{r['d_tr_lo']:.4g}", f"{r['d_tr_hi']:.4g}",
                 f"{r.get('rate_d_rel', float('nan')):+.3f}"] + ([f"{r['rate_d_rel_L>=16']:+.3f}"] if deep else [])
                for r in s.to_dict("records")])
    L.append("")
    if not deep:
        L += ["(No deep-regime slope: fewer than two depths >= 16 in this sweep.)", ""]
    e = depth.data["errors"]
    piv = e.assign(cell=[format_mean_ci(m, h, int(k)) for m, h, k in zip(e["err_mean"], e["err_ci95"], e["draws"])]
                   ).pivot(index="method", columns="depth", values="cell")
    draws = sorted(set(int(k) for k in e["draws"]))
    L.append("Test error ||F - Y||^2 / ||Y||^2 of each predictor (1 = predicting zero), mean +- "
             f"{CI95_TEXT} over n = {', '.join(map(str, draws))} draws:")
    L.append("")
    L += _table(["method"] + [f"L={d}" for d in piv.columns], [[m] + list(piv.loc[m]) for m in piv.index])
    L.append("")
    return L


@dataclass
class _Inputs:
    """Every source the report reads, and the trained-accuracy table (all; Omniglot only)."""

    depth: Loaded
    widths: list
    kernel: Loaded
    variants: list
    compares: list
    runs: Loaded
    trained: pd.DataFrame
    om: pd.DataFrame
    kernel_val: Loaded | None = None


def kernel_depth_choice(kernel: Loaded, kernel_val: Loaded | None) -> pd.DataFrame:
    """Each kernel predictor's test accuracy at the depth chosen on validation episodes
    (:func:`ntk_bridge.report.selection.choose_depths`; the smallest depth where there are none)."""
    from ntk_bridge.report.selection import choose_depths

    val = kernel_val.data["accuracy"] if kernel_val is not None and kernel_val.data else None
    return choose_depths(kernel.data["accuracy"], val)


def _section_depth(inp: _Inputs, figures_dir: Path, figs: dict) -> list[str]:
    """Section 2: MTL-GBML distance vs depth, synthetic and real tasks. Adds its figures to ``figs``."""
    depth, kernel = inp.depth, inp.kernel
    L: list[str] = []
    # 2. distance vs depth
    L += ["## 2. MTL-GBML distance vs depth (infinite width)", ""]
    if depth.data:
        cfg = depth.data.get("config", {})
        fam = cfg.get("family", {})
        L.append(f"Synthetic tasks: family {fam.get('family', '?')}, d={fam.get('d', '?')}, "
                 f"{fam.get('n_train_tasks', '?')} training / {fam.get('n_test_tasks', '?')} test tasks, "
                 f"n_q={fam.get('n_query', '?')}, n_s={fam.get('n_support', '?')}, {cfg.get('draws', '?')} draws; "
                 f"distances are means over draws (`{depth.path}`).")
        L.append("")
        L += _depth_tables(depth)
    else:
        L += [f"Synthetic depth sweep: not run (`{depth.command}`).", ""]
    if kernel.data:
        d = kernel.data["distances"]
        d = d[d["kernel"] == "fc"]
        L.append("Real Omniglot tasks (FC kernel, same predictors; d_rel over all test queries, per-episode mean +- 95% CI "
                 "in brackets; `agree` = fraction of test queries where both predict the same class):")
        L.append("")
        rms = {"rms_a", "rms_b", "rms_b_adapt", "rms_b_transfer"} <= set(d.columns)
        L += _table(["pair", "shots", "depth", "d_rel", "d_rel per episode", "d_tr", "agree"]
                    + (["rms F_a", "rms F_b", "rms F_b(t=0)", "rms F_b - F_b(t=0)"] if rms else []),
                    [[r.pair, r.shots, r.depth, f"{r.d_rel:.4f}", f"({_pm(r.d_rel_ep_mean, r.d_rel_ep_ci95, 4)})",
                      f"{r.d_tr:.4f}", f"{r.agree:.3f}"]
                     + ([f"{r.rms_a:.3g}", f"{r.rms_b:.3g}", f"{r.rms_b_adapt:.3g}", f"{r.rms_b_transfer:.3g}"] if rms else [])
                     for r in d.sort_values(["pair", "shots", "depth"]).itertuples()])
        L.append("")
        if rms:
            n_way = int(kernel.data["accuracy"]["n_way"].iloc[0])
            L.append(f"(rms of the one-hot targets: {math.sqrt((1 - 1 / n_way) ** 2 / n_way + (n_way - 1) / n_way ** 3):.3g}; "
                     "F_b(t=0) is the GBML predictor's adaptation-only part K_in T'Y', F_b - F_b(t=0) the part its "
                     "outer training on the training tasks added.)")
            L.append("")
    if depth.data or kernel.data:
        figs["report_distance_depth.png"] = figure_depth(depth, kernel)
        L += [f"![distance vs depth]({Path(figures_dir) / 'report_distance_depth.png'})", ""]

    return L

def _section_width(inp: _Inputs, figures_dir: Path, figs: dict) -> list[str]:
    """Section 3: finite-width networks against the closed forms. Adds its figures to ``figs``."""
    widths = inp.widths
    L: list[str] = []
    # 3. width
    L += ["## 3. Finite width vs the closed forms", ""]
    w_ok = [w for w in widths if w.data]
    for w in w_ok:
        run = w.data.get("run", {})
        cfg = w.data["config"]
        L.append(f"`{w.path}`: depth {cfg.get('net', {}).get('depth', '?')}, widths {cfg.get('widths', '?')}, "
                 f"{cfg.get('seeds', '?')} seeds; {run.get('measured', '')}")
        L.append("")
        s = w.data["summary"]
        L += _table(["quantity", "slope (seed mean)", "per-seed slope", "widest", "error at widest"],
                    [[r.quantity, f"{r.slope:+.3f}", _pm(r.slope_seed_mean, r.slope_seed_ci95, 3), int(r.widest),
                      _pm(r.at_widest, r.at_widest_ci95, 4)] for r in s.itertuples()])
        L.append("")
        if "pairs" in w.data and len(w.data["pairs"]):
            p = w.data["pairs"]
            p = p[p["width"] == p["width"].max()].groupby("pair")[["d_rel_net", "d_rel_closed", "d_tr_net", "d_tr_closed"]].mean()
            L.append(f"MTL-GBML distance at width {int(w.data['pairs']['width'].max())} (seed mean) beside its "
                     "infinite-width value:")
            L.append("")
            L += _table(["pair", "d_rel net", "d_rel closed", "d_tr net", "d_tr closed"],
                        [[i, f"{r.d_rel_net:.4f}", f"{r.d_rel_closed:.4f}", f"{r.d_tr_net:.4f}", f"{r.d_tr_closed:.4f}"]
                         for i, r in p.iterrows()])
            L.append("")
    if w_ok:
        figs["report_width.png"] = figure_width(widths)
        L += [f"![error vs width]({Path(figures_dir) / 'report_width.png'})", ""]
    else:
        L += [f"Width sweep: not run (`{COMMANDS['width']}`).", ""]

    return L

def _section_kernel_vs_trained(inp: _Inputs, figures_dir: Path, figs: dict) -> list[str]:
    """Section 4: kernel-regime accuracy beside trained networks on the same Omniglot alphabets. Adds its figures to ``figs``."""
    kernel, variants, om = inp.kernel, inp.variants, inp.om
    L: list[str] = []
    # 4. kernel vs trained accuracy on the same tasks
    L += ["## 4. Kernel-regime accuracy vs trained finite networks (Omniglot, same test alphabets)", ""]
    if kernel.data:
        cfg = kernel.data["config"]
        a = kernel.data["accuracy"]
        L.append(f"Kernel predictors (`{kernel.path}`): {cfg.get('dataset')} {cfg.get('n_way')}-way, "
                 f"training episodes from the {cfg.get('train_split')} split, test episodes from the "
                 f"{cfg.get('test_split')} split (held-out alphabets), {cfg.get('n_query')} queries/class, "
                 f"FC on {cfg.get('image_size')}x{cfg.get('image_size')} images, conv on "
                 f"{cfg.get('conv_image_size')}x{cfg.get('conv_image_size')}; inner loop {cfg.get('predictor', {}).get('inner', {}).get('form')}, "
                 f"outer t={cfg.get('predictor', {}).get('outer_time')}; accuracy % mean +- 95% CI over test episodes.")
        L.append("")
        for (kname, shots), g in a.groupby(["kernel", "shots"], sort=True):
            eps, q, tr = int(g["episodes"].iloc[0]), int(g["n_query"].iloc[0]), int(g["train_episodes"].iloc[0])
            piv = g.assign(cell=[_pm(m, h, 1) for m, h in zip(g["acc_mean"], g["acc_ci95"])]).pivot(
                index="method", columns="depth", values="cell")
            L.append(f"**{kname.upper()} kernel, {shots}-shot** ({eps} test episodes x {q} queries/class, "
                     f"{tr} training episodes):")
            L.append("")
            L += _table(["method"] + [f"L={d}" for d in piv.columns], [[m] + list(piv.loc[m]) for m in piv.index])
            L.append("")
    else:
        L += [f"Kernel few-shot: not run (`{COMMANDS['kernel']}`).", ""]
    for v in variants:
        if not v.data:
            continue
        cfg = v.data["config"]
        pc = cfg.get("predictor", {})
        a = v.data["accuracy"]
        a = a[a["kernel"] == "fc"]
        L.append(f"Variant `{v.path}`: inner loop {pc.get('inner', {}).get('form')} (tau {pc.get('inner', {}).get('tau')}), "
                 f"outer time {pc.get('outer_time')}, outer ridge {pc.get('outer_ridge')}; otherwise as above. "
                 "FC accuracy % (mean +- 95% CI) at the smallest and largest depth, and d_rel:")
        L.append("")
        rows = []
        dist = v.data["distances"]
        for shots, g in a.groupby("shots"):
            lo, hi = g["depth"].min(), g["depth"].max()
            t = g.set_index(["method", "depth"])
            eps, q = int(g["episodes"].iloc[0]), int(g["n_query"].iloc[0])
            for m in sorted(g["method"].unique()):
                rows.append([f"{shots}-shot ({eps} ep x {q} q)", m, _pm(t.loc[(m, lo), "acc_mean"], t.loc[(m, lo), "acc_ci95"], 1),
                             _pm(t.loc[(m, hi), "acc_mean"], t.loc[(m, hi), "acc_ci95"], 1)])
            dd = dist[(dist["kernel"] == "fc") & (dist["shots"] == shots)]
            for pair, gp in dd.groupby("pair"):
                gp = gp.set_index("depth")["d_rel"]
                rows.append([f"{shots}-shot", f"d_rel {pair}", f"{gp.get(lo, float('nan')):.4f}", f"{gp.get(hi, float('nan')):.4f}"])
        L += _table(["setting", "method", f"L={lo}", f"L={hi}"], rows)
        L.append("")
    if len(om):
        L.append("Trained networks on the same Omniglot split (test alphabets):")
        L.append("")
        L += _table(["source", "algorithm", "shots", "test acc %", "logreg head %", "protocol", "backbone"],
                    [[r.source, r.algorithm, r.shots, _pm(r.acc, r.ci95), _pm(r.logreg, r.logreg_ci95)
                      if math.isfinite(r.logreg) else "-", f"{r.episodes} episodes x {r.query} queries/class, head {r.head}",
                      r.backbone] for r in om.sort_values(["shots", "source", "algorithm"]).itertuples()])
        L.append("")
    else:
        L += [f"Trained networks on Omniglot: not run (`{COMMANDS['compare']}` or `{COMMANDS['runs']}`).", ""]
    chosen = kernel_depth_choice(kernel, inp.kernel_val) if kernel.data else pd.DataFrame(columns=["shots"])
    if kernel.data:
        L += _depth_choice_lines(chosen, inp.kernel_val)
    if kernel.data or len(om):
        figs["report_accuracy.png"] = figure_accuracy(chosen, om)
        L += [f"![kernel vs trained accuracy]({Path(figures_dir) / 'report_accuracy.png'})", ""]

    return L

def _depth_choice_lines(chosen: pd.DataFrame, kernel_val: Loaded | None) -> list[str]:
    """Markdown: how each kernel predictor's depth in the figure was chosen, and its accuracies there."""
    if kernel_val is not None and kernel_val.data:
        cfg = kernel_val.data["config"]
        how = (f"Depths in the figure below are chosen on **validation episodes** (`{kernel_val.path}`: the same "
               f"training episodes and predictors, scored on {cfg.get('test_episodes')} episodes of the "
               f"{cfg.get('test_split')!r} split, alphabets disjoint from the test ones; conv on its first "
               f"{cfg.get('conv_test_episodes')}): for each kernel, shots and method the depth of highest validation "
               "accuracy (the smallest on ties); its test accuracy is then read. No test number chooses anything.")
    else:
        why = kernel_val.missing if kernel_val is not None else "not given"
        how = (f"No validation episodes for the kernel predictors ({why}; produce them with "
               f"`{COMMANDS['kernel_val']}`): every kernel predictor is shown at the smallest depth, a rule fixed "
               "before any result, never at its best test depth.")
    rows = [[r.kernel, r.shots, r.method, int(r.depth), r.chosen_by,
             _pm(r.val_acc, r.val_ci95, 1) if math.isfinite(r.val_acc) else "-", _pm(r.acc_mean, r.acc_ci95, 1)]
            for r in chosen.sort_values(["kernel", "shots", "method"]).itertuples()]
    return [how, ""] + _table(["kernel", "shots", "method", "depth", "chosen by", "validation acc %", "test acc %"],
                              rows) + [""]


def _section_cost(inp: _Inputs, figures_dir: Path, figs: dict) -> list[str]:
    """Section 5: MTL vs GBML accuracy and training cost. Adds its figures to ``figs``."""
    compares, runs = inp.compares, inp.runs
    L: list[str] = []
    # 5. MTL vs GBML accuracy and cost
    L += ["## 5. MTL vs GBML: accuracy and training cost (trained networks)", ""]
    any_cmp = False
    for c in compares:
        if not c.data:
            continue
        any_cmp = True
        cfg = c.data["config"].get("args", c.data["config"])
        s = c.data["summary"]
        L.append(f"`{c.path}`: {cfg.get('dataset')} {cfg.get('n_way')}-way, {cfg.get('backbone')}"
                 f"{' (' + str(cfg.get('channels')) + ' channels)' if cfg.get('channels') else ''}, time budget "
                 f"{cfg.get('time_budget')} s per run; test {cfg.get('test_episodes')} episodes x {cfg.get('test_query')} "
                 f"queries/class, mean +- 95% CI; {c.data['config'].get('measurement', '')}; device "
                 f"{c.data['config'].get('device', '?')}.")
        L.append("")
        rows = []
        for r in s.sort_values(["shots", "algorithm"]).itertuples():
            mtl = s[(s["shots"] == r.shots) & (s["algorithm"] == "mtl")]
            ratio = r.step_ms / float(mtl["step_ms"].iloc[0]) if len(mtl) else float("nan")
            rows.append([r.algorithm, int(r.shots), int(r.steps), f"{r.train_time_s:.1f}", f"{r.cpu_time_s:.1f}",
                         f"{r.step_ms:.1f}", f"{ratio:.2f}", _pm(r.test_own, r.test_own_ci),
                         _pm(r.test_logreg, r.test_logreg_ci), _f(r.time_to_target_s, 3), _f(r.cpu_to_target_s, 3),
                         f"{100 * r.target_val:.1f}"])
        L += _table(["method", "shots", "steps", "train s", "CPU s", "ms/step", "step time / MTL", "test own %",
                     "test logreg %", "time to target s", "CPU to target s", "target val %"], rows)
        L.append("")
    if runs.data:
        r = runs.data["runs"]
        L.append("Single training runs (`ntk-bridge train`):")
        L.append("")
        L += _table(["run", "dataset", "algorithm", "shots", "test %", "protocol", "steps", "train s", "platform"],
                    [[x.run, x.dataset, x.algorithm, x.shots, _pm(x.acc, x.ci95),
                      f"{x.episodes} episodes x {x.query} queries/class, head {x.head}", x.steps,
                      _f(x.train_s, 4), x.platform] for x in r.itertuples()])
        L.append("")
    if not any_cmp and not runs.data:
        L += [f"Not run (`{COMMANDS['compare']}`).", ""]
    L += [f"Paper's cost reference: {PAPER_COST}.", ""]

    return L

def _section_reference(inp: _Inputs, figures_dir: Path, figs: dict) -> list[str]:
    """Section 6: the paper's reference numbers beside ours. Adds its figures to ``figs``."""
    kernel, trained, om = inp.kernel, inp.trained, inp.om
    L: list[str] = []
    # 6. reference numbers
    L += ["## 6. The paper's reference numbers beside ours", "",
          f"Reference rows: docs/benchmarks.md ({PAPER_PROTOCOL}). 'ours' = the test accuracy of the run with "
          "the best validation accuracy for that data set and shot setting (chosen on validation, never on "
          "test), with its protocol; data sets without local data are marked not run.", ""]
    header = ["method", "backbone"] + [f"{d} {s}-shot" for d, s in PAPER_SETTINGS]
    rows = [[m, b] + list(vals) for m, b, vals in PAPER_TABLE]
    ours = []
    for d, s in PAPER_SETTINGS:
        t = trained[(trained["dataset"].astype(str).str.lower() == d) & (trained["shots"] == s)]
        r = best_on_validation(t, "val") if len(t) else None
        if r is not None:
            ours.append(f"{_pm(r.acc, r.ci95)} ({r.algorithm}, {r.backbone}, {r.episodes} ep x {r.query} q)")
        else:
            ours.append("not run (no data here)" if not len(t) else "no run with a validation accuracy")
    rows.append(["ours (trained)", "-"] + ours)
    L += _table(header, rows)
    L.append("")
    if len(om) or kernel.data:
        L.append("Omniglot (not in the paper's table; ours only, protocol in each cell):")
        L.append("")
        orow = []
        for s in sorted(set(om["shots"]) | (set(kernel.data["accuracy"]["shots"]) if kernel.data else set())):
            cells = []
            t = om[om["shots"] == s]
            r = best_on_validation(t, "val") if len(t) else None
            if r is not None:
                cells.append(f"trained {r.algorithm} (best validation): {_pm(r.acc, r.ci95)} "
                             f"({r.backbone}, {r.episodes} ep x {r.query} q)")
            if kernel.data:
                a = kernel_depth_choice(kernel, inp.kernel_val)
                r = best_on_validation(a[a["shots"] == s], "val_acc")
                cells.append(f"kernel predictor of best validation accuracy, {r.kernel} {r.method} L={int(r.depth)}: "
                             f"{_pm(r.acc_mean, r.acc_ci95, 1)} ({int(r.episodes)} ep x {int(r.n_query)} q)"
                             if r is not None else "kernel predictors: none chosen (no validation episodes)")
            orow.append([f"{s}-shot", "; ".join(cells)])
        L += _table(["setting", "ours"], orow)
        L.append("")
    return L


def _section_regime(regime: Loaded) -> list[str]:
    """Section 2b: the regime map's verdict and, per network and inner loop at t = inf, rates and gains."""
    from ntk_bridge.studies.regime_report import conclusion

    L = ["## 2b. Regime map: where do MTL and GBML meet?", ""]
    if not regime.data:
        return L + [f"Regime map: not run (`{regime.command}`).", ""]
    cells, verdicts, cfg = regime.data["cells"], regime.data["verdicts"], regime.data["config"]
    L += [f"`{regime.path}`: {len(cells['cell'].unique())} cells, depths {min(cfg['depths'])}..{max(cfg['depths'])}, "
          f"{cfg['draws']} draws; deep rates over L >= {cfg['deep_from']} (mean of per-draw log-log slopes, 95% t-interval); "
          "gain = err(head-only) - err(method). Figure: `figures/regime_map.png`; derivation: docs/theory.md 8.", "",
          conclusion(verdicts), ""]
    deep = cells[cells["outer_time"] == cells["outer_time"].max()]
    rows = []
    for (net, inner), g in deep.groupby(["net", "inner"], sort=False):
        anil, maml = (g[g["pair"] == p].iloc[0] for p in ("mtl-b vs anil", "mtl-b vs maml"))
        rows.append([net, inner, f"{anil.rate_d_rel:+.2f}", f"{anil.rate_d_tr:+.2f} [{anil.rate_d_tr_lo:+.2f}, {anil.rate_d_tr_hi:+.2f}]",
                     f"{maml.rate_d_rel:+.2f}", f"{anil.gain_a_L1:.3f} -> {anil.gain_a_Lmax:.3f}",
                     f"{anil.gain_b_L1:.3f} -> {anil.gain_b_Lmax:.3f}", f"{maml.gain_b_L1:.3f} -> {maml.gain_b_Lmax:.3f}"])
    t = deep["outer_time"].iloc[0]
    L += [f"Outer time t = {t:g}; gains at L = 1 -> L = {int(cells['depth_max'].max())}:", ""]
    L += _table(["network", "inner loop", "d_rel rate MTL-B/ANIL", "d_tr rate MTL-B/ANIL [95% t]", "d_rel rate MTL-B/MAML",
                 "gain MTL-B", "gain ANIL", "gain MAML"], rows)
    return L + [""]


