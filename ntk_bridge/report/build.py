"""The report assembled: :func:`build` loads every source, runs the claims and the sections and
returns the markdown with its figures; :func:`write` writes them (staged, whole).
"""

from __future__ import annotations

from pathlib import Path

from ntk_bridge.report.claims import claims
from ntk_bridge.report.loading import (
    Sources,
    load_compare,
    load_depth,
    load_kernel,
    load_kernel_validation,
    load_kernel_variants,
    load_regime,
    load_runs,
    load_width,
    split_label_spaces,
)
from ntk_bridge.report.sections import (
    _Inputs,
    _section_cost,
    _section_depth,
    _section_kernel_vs_trained,
    _section_reference,
    _section_regime,
    _section_width,
    _table,
    trained_table,
)


def build(sources: Sources, figures_dir: Path) -> tuple[str, dict]:
    """The markdown text and {figure file name: matplotlib figure}."""
    depth = load_depth(sources.depth_sweep)
    widths = load_width(sources.width_sweep)
    kernel, variants = split_label_spaces(load_kernel(sources.kernel_fewshot))
    kval_path = sources.kernel_validation or Path(str(sources.kernel_fewshot).rstrip("/") + "_val")
    kernel_val = split_label_spaces(load_kernel_validation(kval_path, kernel))[0]
    for v in load_kernel_variants(sources.kernel_fewshot):
        primary, others = split_label_spaces(v)
        variants += [primary, *others]
    compares = load_compare(list(sources.compare))
    runs = load_runs(sources.runs)
    regime = load_regime(sources.regime_map)
    trained = trained_table(compares, runs)
    figs: dict = {}
    L: list[str] = ["# ntk_bridge report: MTL vs GBML, kernels and trained networks", ""]
    everything = [depth, regime, *widths, kernel, kernel_val, *variants, *compares, runs]
    L += ["## Inputs", ""]
    L += _table(["result", "folder", "status"],
                [[s.name, f"`{s.path}`", "read" if s.data else f"**not run** ({s.missing}); produce it with `{s.command}`"]
                 for s in everything])
    L.append("")

    # 1. claims
    L += ["## 1. Theory claims and their measured status", ""]
    L += _table(["claim", "measured by", "measured", "status"],
                [v.row() for v in claims(depth, widths, kernel, compares)])
    L.append("")

    inp = _Inputs(depth, widths, kernel, variants, compares, runs, trained,
                  trained[trained["dataset"].astype(str).str.lower() == "omniglot"], kernel_val)
    L += _section_depth(inp, figures_dir, figs)
    L += _section_regime(regime)
    L += _section_width(inp, figures_dir, figs)
    L += _section_kernel_vs_trained(inp, figures_dir, figs)
    L += _section_cost(inp, figures_dir, figs)
    L += _section_reference(inp, figures_dir, figs)
    return "\n".join(L) + "\n", figs


FIGURES = ("report_distance_depth.png", "report_width.png", "report_accuracy.png")


def write(sources: Sources, out: Path, figures_dir: Path) -> tuple[Path, list[Path]]:
    """Build the report, then put it and its figures in place together; return (report path, figure paths).

    The output paths are checked before any input is read (ntk_bridge.io.staged_files): a report
    path that is a folder or lies under a file, or an unwritable place, is a BridgeError and
    nothing is written. The figures and the report are written to temp files next to their
    places and renamed there only after all of them were written.
    """
    from ntk_bridge.io import save_figure, staged_files, write_text

    finals = [Path(figures_dir) / name for name in FIGURES]
    with staged_files(finals, "--figures") as fig_temps, staged_files([out], "--out") as (out_temp,):
        text, figs = build(sources, figures_dir)
        temps = dict(zip(FIGURES, fig_temps))
        for name, fig in figs.items():
            save_figure(temps[name], fig)
        write_text(out_temp, text)
    return Path(out), [Path(figures_dir) / name for name in figs]
