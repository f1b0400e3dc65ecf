"""The muP limit of one-hidden-layer linear networks: d_tr between the limits beside the seed-to-seed
noise floor per width, and the rate at which finite muP networks converge to the limit (docs/theory.md 11).

Re-create (writes experiments/results/mup_limit/{config.json,limits.csv,pairs.csv,floors.csv,
convergence.csv,rates.csv,direct.csv,table.md}):

    nice -n 10 .venv/bin/python experiments/mup_limit_table.py

Protocol: the feature map's (inner 5 x 0.2, outer eta*t = 20 at S = ceil(20 lam_max / 0.5) steps,
first-order MAML, base width 64, sigma = sqrt 2, sigma_r = 1) on the ``subspace`` family with the
feature map's sizes (d = 16, rank 3, 20 training / 10 test tasks, 5 + 5 points, spread 0.5; a linear
network cannot represent the quadratic family's features), three task draws.

Finite networks: ``SEEDS`` muP networks per width (:func:`ntk_bridge.finite.mup_limit.linear_net`),
their predictions from the recursion started at each network's own empirical moment C^_0 -- the
shortcut that is exactly the trained network (tests/finite/test_mup_limit.py: the project's trainer
equals it to 1e-10; seen <= 4e-15). ``direct.csv`` checks it here again on the full protocol: the
trainer itself at width ``DIRECT_WIDTH`` for every method on draw 0, seed 0. The trainer is not
used at large width because first-order MAML at width 16384 takes about 500 s per network.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ntk_bridge.closed_form.distances import relative_error
from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
from ntk_bridge.finite import mup_limit as ml
from ntk_bridge.io import write_csv, write_json, write_text
from ntk_bridge.stats import fit_loglog

OUT = Path("experiments/results/mup_limit")
FAMILY = FamilyConfig(family="subspace", d=16, n_train_tasks=20, n_test_tasks=10, n_query=5, n_support=5,
                      spread=0.5, rank=3)
CONFIG = ml.LimitConfig()
DRAWS = (0, 1, 2)
WIDTHS = (256, 1024, 4096, 16384)
SEEDS = 6                         # the noise floor pairs seeds (0, 1), (2, 3), (4, 5)
DIRECT_WIDTH = 1024
PAIRS = (("mtl-b", "anil"), ("mtl-b", "maml"), ("mtl-a", "anil"), ("mtl-a", "maml"), ("anil", "maml"))


def finite_predictions(method: str, tasks, data, lr: float, steps: int) -> dict[tuple[int, int], np.ndarray]:
    """(width, seed) -> test predictions (M, q) of the finite muP network (recursion from its C^_0)."""
    out = {}
    for w in WIDTHS:
        for s in range(SEEDS):
            c0 = ml.empirical_moment(method, ml.linear_net(w, s, FAMILY.d, len(tasks.train), CONFIG),
                                     len(tasks.train), CONFIG)
            out[(w, s)] = ml.predict(method, c0, data, lr, steps, CONFIG)[0]
    return out


def direct_row(method: str, tasks, data, lr: float, steps: int) -> dict:
    """The project's trainer vs the shortcut on one network (width DIRECT_WIDTH, seed 0)."""
    from ntk_bridge.finite.training import GDConfig, train_and_predict

    net = ml.linear_net(DIRECT_WIDTH, 0, FAMILY.d, len(tasks.train), CONFIG)
    gd = GDConfig(inner_step=CONFIG.inner_step, inner_steps=CONFIG.inner_steps, outer_lr=lr, outer_steps=steps,
                  first_order=CONFIG.first_order(method))
    t0 = time.time()
    trained = train_and_predict(method, net, tasks, gd).predictions[..., 0]
    seconds = time.time() - t0
    short = ml.predict(method, ml.empirical_moment(method, net, len(tasks.train), CONFIG), data, lr, steps, CONFIG)[0]
    return dict(method=method, width=DIRECT_WIDTH, seed=0, steps=steps, trainer_s=round(seconds, 1),
                rel_diff=float(np.linalg.norm(trained - short) / np.linalg.norm(trained)))


def one_draw(draw: int) -> tuple[list[dict], ...]:
    tasks = make_tasks(FAMILY, draw)
    data = ml.limit_data(tasks)
    target = tasks.test_y_query()[..., 0]
    lim, lim0, fin, limits, conv, direct = {}, {}, {}, [], [], []
    for m in ml.LIMIT_METHODS:
        t0 = time.time()
        lr, steps = ml.schedule(m, tasks, CONFIG)
        lim[m], lim0[m] = ml.predict(m, ml.initial_moment(m, FAMILY.d, len(tasks.train), CONFIG), data, lr, steps,
                                     CONFIG)
        fin[m] = finite_predictions(m, tasks, data, lr, steps)
        limits.append(dict(draw=draw, method=m, steps=steps, lr=lr, test_error=relative_error(lim[m], target),
                           norm=float(np.linalg.norm(lim[m]))))
        for (w, s), f in fin[m].items():
            conv.append(dict(draw=draw, method=m, width=w, seed=s,
                             rel_err=float(np.linalg.norm(f - lim[m]) / np.linalg.norm(lim[m]))))
        if draw == DRAWS[0]:
            direct.append(direct_row(m, tasks, data, lr, steps))
        print(f"draw {draw} {m}: {steps} steps, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    pairs = []
    for a, b in PAIRS:
        den = float(np.linalg.norm(lim[b] - lim0[b]))
        diff = float(np.linalg.norm(lim[a] - lim[b]))
        pairs.append(dict(draw=draw, pair=f"{a} vs {b}", width="limit", d_tr=diff / den, d_tr_sd=0.0,
                          d_rel=diff / float(np.linalg.norm(lim[b]))))
        for w in WIDTHS:
            v = [np.linalg.norm(fin[a][(w, s)] - fin[b][(w, s)]) / den for s in range(SEEDS)]
            pairs.append(dict(draw=draw, pair=f"{a} vs {b}", width=w, d_tr=float(np.mean(v)),
                              d_tr_sd=float(np.std(v, ddof=1)), d_rel=float("nan")))
    floors = []
    for m in ml.LIMIT_METHODS:      # two initialisations, same method, same tasks; d_tr-normalised by b's denominator
        b = "maml" if m == "maml" else "anil"
        den = float(np.linalg.norm(lim[b] - lim0[b]))
        for w in WIDTHS:
            v = [np.linalg.norm(fin[m][(w, s)] - fin[m][(w, s + 1)]) / den for s in range(0, SEEDS - 1, 2)]
            floors.append(dict(draw=draw, method=m, width=w, normalised_by=b, floor_tr=float(np.mean(v)),
                               floor_tr_max=float(np.max(v))))
    return limits, conv, pairs, floors, direct


def rates(conv: pd.DataFrame) -> pd.DataFrame:
    """Per method: the log-log slope of rel_err vs width, one fit per (draw, seed) (mean, sd), and
    the slope of the RMS over draws and seeds."""
    rows = []
    for m, g in conv.groupby("method", sort=False):
        per = [fit_loglog(h["width"].to_numpy(), h["rel_err"].to_numpy())[0] for _, h in g.groupby(["draw", "seed"])]
        rms = g.groupby("width")["rel_err"].apply(lambda v: math.sqrt(float(np.mean(v ** 2))))
        rows.append(dict(method=m, slope_mean=float(np.mean(per)), slope_sd=float(np.std(per, ddof=1)),
                         fits=len(per), slope_of_rms=fit_loglog(rms.index.to_numpy(), rms.to_numpy())[0],
                         **{f"rms_rel_err_{w}": float(v) for w, v in rms.items()}))
    return pd.DataFrame(rows)


def markdown(limits: pd.DataFrame, pairs: pd.DataFrame, floors: pd.DataFrame, rate: pd.DataFrame,
             direct: pd.DataFrame) -> str:
    ws, slash = " | ".join(str(w) for w in WIDTHS), " / ".join(str(w) for w in WIDTHS)
    out = ["## d_tr between the limits beside finite width and the noise floor", "",
           "d_tr = ||F_a - F_b|| / ||F_b - F_b(t=0)||; finite: mean over seeds (a and b on the same network seed); "
           "floor: ||F_m(s) - F_m(s')|| / the same denominator, mean of 3 seed pairs, for m = a and m = b.", "",
           f"| pair | draw | limit | finite d_tr at {slash} | floor of a at {slash} | floor of b at {slash} |",
           "|---|---|---|---|---|---|"]
    fl = floors.set_index(["draw", "method", "width"])["floor_tr"]
    for (pair, draw), g in pairs.groupby(["pair", "draw"], sort=False):
        a, b = pair.split(" vs ")
        lim = float(g[g["width"] == "limit"]["d_tr"].iloc[0])
        fin = " / ".join(f"{float(g[g['width'] == w]['d_tr'].iloc[0]):.3f}" for w in WIDTHS)

        def floor(m):
            return " / ".join(f"{fl[(draw, m, w)]:.3f}" if b != "maml" or m == "maml" else "-" for w in WIDTHS)

        out.append(f"| {pair} | {draw} | **{lim:.3f}** | {fin} | {floor(a)} | {floor(b)} |")
    out += ["", "(floors are normalised by ANIL's denominator, MAML's by its own; '-': not on that scale)", "",
            "## Convergence of finite muP networks to the limit", "",
            f"RMS of ||F_n - F_inf|| / ||F_inf|| over {len(DRAWS)} draws x {SEEDS} seeds; slope of log rel_err vs "
            "log width, one fit per (draw, seed) (mean +- sd), and of the RMS.", "",
            f"| method | {ws} | slope per fit | slope of RMS |", "|---|" + "---|" * (len(WIDTHS) + 2)]
    for r in rate.itertuples():
        cells = " | ".join(f"{getattr(r, f'rms_rel_err_{w}'):.4f}" for w in WIDTHS)
        out.append(f"| {r.method} | {cells} | {r.slope_mean:+.3f} +- {r.slope_sd:.3f} | {r.slope_of_rms:+.3f} |")
    out += ["", "## The limits' test errors ||F - Y||^2 / ||Y||^2", "", "| method | " +
            " | ".join(f"draw {d}" for d in DRAWS) + " |", "|---|" + "---|" * len(DRAWS)]
    for m, g in limits.groupby("method", sort=False):
        out.append(f"| {m} | " + " | ".join(f"{v:.3f}" for v in g["test_error"]) + " |")
    out += ["", f"## The project's trainer vs the shortcut (draw {DRAWS[0]}, width {DIRECT_WIDTH}, seed 0)", "",
            "| method | outer steps | trainer s | rel. diff |", "|---|---|---|---|"]
    for r in direct.itertuples():
        out.append(f"| {r.method} | {r.steps} | {r.trainer_s} | {r.rel_diff:.1e} |")
    return "\n".join(out) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    t0, load0 = time.time(), os.getloadavg()
    write_json(OUT / "config.json", {"command": "nice -n 10 python experiments/mup_limit_table.py",
                                     "limit": asdict(CONFIG), "family": asdict(FAMILY), "draws": list(DRAWS),
                                     "widths": list(WIDTHS), "seeds": SEEDS, "direct_width": DIRECT_WIDTH,
                                     "finite_networks": "recursion from each network's own empirical moment "
                                                        "(exact; checked against the trainer in direct.csv)"})
    parts: list[list[list[dict]]] = [[], [], [], [], []]
    for draw in DRAWS:
        for acc, rows in zip(parts, one_draw(draw)):
            acc.append(rows)
    limits, conv, pairs, floors, direct = (pd.DataFrame([r for rows in p for r in rows]) for p in parts)
    rate = rates(conv)
    for name, frame in (("limits", limits), ("convergence", conv), ("pairs", pairs), ("floors", floors),
                        ("rates", rate), ("direct", direct)):
        write_csv(OUT / f"{name}.csv", frame)
    text = markdown(limits, pairs, floors, rate, direct)
    load1 = os.getloadavg()
    text += (f"\nWall time {time.time() - t0:.0f} s; load average (1, 5, 15 min) at start "
             f"{', '.join(f'{v:.1f}' for v in load0)}, at end {', '.join(f'{v:.1f}' for v in load1)} (2 cores).\n")
    write_text(OUT / "table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
