"""Argument pieces shared by the kernel-side commands (depth-sweep, width-sweep, kernel-fewshot).

Imports nothing heavy (``kernels`` and ``tasks`` for their name tuples: numpy only; neural-tangents
loads later, in ``nt_backend``).
"""

from __future__ import annotations

import argparse

from ntk_bridge.closed_form.tasks import FAMILIES
from ntk_bridge.commands._fields import Flag
from ntk_bridge.engine.spec import ACTIVATIONS

# the network flags of every kernel-side command (fields of a NetSpec named ``net``)
ACTIVATION_FLAG = Flag("net.activation", "hidden activation", name="--activation", choices=ACTIVATIONS)
NET_STD_FLAGS = (
    Flag("net.W_std", "hidden weight std", name="--W-std", shown=lambda v: f"{v:.4g} = sqrt 2, He"),
    Flag("net.b_std", "hidden bias std", name="--b-std"),
)
# the synthetic task family's flags (fields of a FamilyConfig named ``family``)
FAMILY_FLAGS = (
    Flag("family.family", "synthetic task family (see ntk_bridge.closed_form.tasks)", name="--family", choices=FAMILIES),
    Flag("family.d", "input dimension", name="--d"),
    Flag("family.n_train_tasks", "training tasks per draw", name="--train-tasks"),
    Flag("family.n_test_tasks", "unseen test tasks per draw", name="--test-tasks"),
    Flag("family.n_query", "queries per task", name="--n-query"),
    Flag("family.n_support", "support points per task", name="--n-support"),
)


OVERWRITE_HELP = ("replace a finished result set in --out that was made with different settings (its "
                  "config.json differs); without it such a folder is refused, and the same settings reproduce it")


def add_output_flags(g, out_default: str, out_what: str, figure_default: str | None = None,
                     figure_what: str = "figure path") -> None:
    """--out (its default stated in the help), --figure when the command draws one, and --overwrite.

    Every result folder is locked while a command writes it and replaced whole at the end
    (ntk_bridge.io.result_folder); --overwrite is the one way to replace results of other settings.
    """
    g.add_argument("--out", default=out_default, help=f"{out_what} (default {out_default})")
    if figure_default is not None:
        g.add_argument("--figure", default=figure_default, help=f"{figure_what} (default {figure_default})")
    g.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def split_assignment(item: str, form: str) -> tuple[str, object]:
    """``"KEY=VALUE"`` as (KEY stripped, VALUE parsed as JSON; a bare word stays a string).

    ``form`` is what the item must look like, for the one-line error (e.g. ``"FIELD=VALUE (VALUE in
    JSON, e.g. lr=0.001)"``).
    """
    import json

    from ntk_bridge.errors import BridgeError

    if "=" not in item:
        raise BridgeError(f"--set {item!r} must look like {form}")
    key, raw = item.split("=", 1)
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw          # a bare word is a string (e.g. --set schedule=cosine)


def add_predictor_arguments(p: argparse.ArgumentParser, outer_ridge_help: str) -> None:
    """The inner-loop (docs/theory.md 3) and outer-training option groups of the closed forms.

    Defaults are those of :class:`~ntk_bridge.closed_form.inner_loop.InnerLoop` and
    :class:`~ntk_bridge.closed_form.predictors.PredictorConfig` (stated once, there).
    """
    from ntk_bridge.closed_form.inner_loop import FORMS, SCALES, InnerLoop
    from ntk_bridge.closed_form.predictors import OUTER_SCALES, PredictorConfig

    inner, pred = InnerLoop(), PredictorConfig()
    g = p.add_argument_group("inner loop (docs/theory.md section 3)")
    g.add_argument("--inner", choices=FORMS, default=inner.form, help=f"inner-loop form (default {inner.form})")
    g.add_argument("--inner-time", type=float, default=inner.tau, help=f"flow: tau, rate lam = 1 (default {inner.tau:g})")
    g.add_argument("--inner-steps", type=int, default=inner.steps, help=f"steps: k (default {inner.steps})")
    g.add_argument("--inner-step-size", type=float, default=inner.step_size, help=f"steps: a (default {inner.step_size:g})")
    g.add_argument("--inner-ridge", type=float, default=inner.mu, help=f"ridge: mu (default {inner.mu:g})")
    g.add_argument("--inner-eps", type=float, default=inner.eps, help=f"inf: eps (default {inner.eps:g})")
    g.add_argument("--inner-scale", choices=SCALES, default=inner.scale,
                   help="flow/steps: 'fixed' uses lam*tau as given; 'diag' divides it by the support kernel's "
                        "mean diagonal kappa (Theta(x, x) = L + 1 for MAML on a bias-free ReLU net: the "
                        f"depth-normalised inner loop, docs/theory.md 7); default {inner.scale}")
    g = p.add_argument_group("outer training")
    g.add_argument("--outer-time", type=float, default=pred.outer_time,
                   help="eta*t of outer gradient flow (default inf: the ridge-regularised limit)")
    g.add_argument("--outer-ridge", type=float, default=pred.outer_ridge, help=f"{outer_ridge_help} (default {pred.outer_ridge:g})")
    g.add_argument("--outer-scale", choices=OUTER_SCALES, default=pred.outer_scale,
                   help="finite --outer-time: 'fixed' as given; 'diag' divides the rate by the mean NTK diagonal "
                        f"over the training points (a learning rate scaled like 1/depth); default {pred.outer_scale}")


def predictor_config(args):
    """The :class:`ntk_bridge.closed_form.predictors.PredictorConfig` of :func:`add_predictor_arguments`' options."""
    from ntk_bridge.closed_form.inner_loop import InnerLoop
    from ntk_bridge.closed_form.predictors import PredictorConfig

    inner = InnerLoop(form=args.inner, tau=args.inner_time, steps=args.inner_steps,
                      step_size=args.inner_step_size, mu=args.inner_ridge, eps=args.inner_eps,
                      scale=args.inner_scale)
    return PredictorConfig(inner=inner, outer_time=args.outer_time, outer_ridge=args.outer_ridge,
                           outer_scale=args.outer_scale)


def add_grid_flags(g, budget: bool = True) -> None:
    """Where a grid study's units run (ntk_bridge.grid): in this process, on local workers, on a Dask
    cluster, or one shard of a job array; and a time budget. The results do not depend on which."""
    g.add_argument("--workers", type=int, default=0, metavar="N",
                   help="compute units in N local worker processes, one thread each (default 0: in this process)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="compute units on the Dask cluster at ADDRESS (e.g. tcp://host:8786; needs the `dask` extra "
                        "and the cache on a file system the workers share)")
    g.add_argument("--shard", default=None, metavar="K/N",
                   help="compute only the K-th of N shares of the units (K = 0..N-1, e.g. $SLURM_ARRAY_TASK_ID/N) "
                        "and write no results; the same command without --shard then assembles them")
    if budget:
        g.add_argument("--budget-minutes", type=float, default=None,
                       help="stop starting new units after this many minutes; rerun to resume (default: no limit)")


def grid_options(args, progress: bool):
    """The :class:`ntk_bridge.grid.GridOptions` of the flags of :func:`add_grid_flags`."""
    from ntk_bridge.errors import require
    from ntk_bridge.grid import GridOptions, parse_shard

    budget = getattr(args, "budget_minutes", None)
    require(budget is None or budget > 0, f"--budget-minutes must be > 0 (got {budget:g})" if budget is not None else "")
    require(args.workers >= 0, f"--workers must be >= 0 (got {args.workers})")
    return GridOptions(workers=args.workers, scheduler=args.scheduler, progress=progress,
                       shard=None if args.shard is None else parse_shard(args.shard),
                       budget_s=None if budget is None else 60.0 * budget)
