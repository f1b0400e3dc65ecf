"""MAML's deep prediction: the derived form (docs/theory.md 8.5) against the earlier "(5/8) support + (3/8) training mean".

Re-create (about 1 min CPU; writes experiments/results/depth_law/maml_forms.csv):

    nice -n 10 .venv/bin/python experiments/maml_shrinkage_check.py

For the regime-map cells relu-b0|fixed|t=inf and relu-b0|depth-norm|t=inf (the map's family and its 10
draws) at L = 1024: per draw, ||m_MAML - form|| / ||m_MAML|| over the test tasks' mean MAML predictions
m_MAML, for form = alpha_M m' + c_M (depth_law.maml_constants) and form = (5/8) m' + (3/8) m_U.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ntk_bridge.closed_form.predictors import predict
from ntk_bridge.closed_form.tasks import make_tasks
from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.precision import float64
from ntk_bridge.io import write_csv
from ntk_bridge.studies import depth_law
from ntk_bridge.studies.regime_map import RegimeMapConfig

CELLS = ("relu-b0|fixed|t=inf", "relu-b0|depth-norm|t=inf")
DEPTH = 1024


def main() -> int:
    config = RegimeMapConfig()
    cells = {c.key: c for c in config.cells()}
    rows = []
    for draw in range(config.draws):
        tasks = make_tasks(config.family, config.seed + draw)
        with float64():
            gram = depth_sweep(replace(config.study(cells[CELLS[0]]).net, depth=DEPTH), tasks.points, depths=[DEPTH])[DEPTH]
        m_test = tasks.test_y_support().mean(axis=(1, 2))
        m_u = np.concatenate([np.concatenate([t.y_query, t.y_support]) for t in tasks.train]).mean()
        for key in CELLS:
            predictor = config.study(cells[key]).predictor
            with float64():
                law = depth_law.predict_draw(tasks, gram, predictor, DEPTH)
                m_maml = predict("maml", tasks, gram, predictor).mean(axis=(1, 2))
            rel = lambda form: float(np.linalg.norm(m_maml - form) / np.linalg.norm(m_maml))   # noqa: E731
            rows.append(dict(cell=key, depth=DEPTH, draw=draw, alpha_m=law.alpha_m,
                             weight=depth_law.maml_training_weight(tasks, law.alpha_m, law.shape.rho),
                             rel_gap_derived=rel(law.alpha_m * m_test + law.c_m),
                             rel_gap_five_eighths=rel(5 / 8 * m_test + 3 / 8 * m_u)))
    frame = pd.DataFrame(rows)
    Path("experiments/results/depth_law").mkdir(parents=True, exist_ok=True)
    write_csv(Path("experiments/results/depth_law/maml_forms.csv"), frame)
    print(frame.groupby("cell")[["alpha_m", "weight", "rel_gap_derived", "rel_gap_five_eighths"]].agg(["min", "median", "max"]).T)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
