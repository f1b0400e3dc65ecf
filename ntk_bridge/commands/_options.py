"""Argument pieces shared by the kernel-side commands (depth-sweep, width-sweep, kernel-fewshot).

Imports nothing heavy: the kernel modules load inside :func:`predictor_config`.
"""

from __future__ import annotations

import argparse
import math


def int_list(text: str, allow_none: bool = False) -> tuple[int, ...]:
    """Parse ``"1,2,4"`` into ``(1, 2, 4)``; with ``allow_none``, ``"none"`` or ``""`` gives ``()``."""
    if allow_none and text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values and not allow_none:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def int_list_or_none(text: str) -> tuple[int, ...]:
    return int_list(text, allow_none=True)


def add_predictor_arguments(p: argparse.ArgumentParser, outer_ridge_help: str) -> None:
    """The inner-loop (theory.md 3) and outer-training option groups of the closed forms."""
    g = p.add_argument_group("inner loop (theory.md section 3)")
    g.add_argument("--inner", choices=("flow", "steps", "ridge", "inf", "none"), default="flow")
    g.add_argument("--inner-time", type=float, default=1.0, help="flow: tau (rate lam = 1)")
    g.add_argument("--inner-steps", type=int, default=10, help="steps: k")
    g.add_argument("--inner-step-size", type=float, default=0.1, help="steps: a")
    g.add_argument("--inner-ridge", type=float, default=0.1, help="ridge: mu")
    g.add_argument("--inner-eps", type=float, default=1e-6, help="inf: eps")
    g = p.add_argument_group("outer training")
    g.add_argument("--outer-time", type=float, default=math.inf, help="eta*t of outer gradient flow (default inf)")
    g.add_argument("--outer-ridge", type=float, default=1e-6, help=outer_ridge_help)


def predictor_config(args):
    """The :class:`ntk_bridge.predictors.PredictorConfig` of :func:`add_predictor_arguments`' options."""
    from ntk_bridge.inner_loop import InnerLoop
    from ntk_bridge.predictors import PredictorConfig

    inner = InnerLoop(form=args.inner, tau=args.inner_time, steps=args.inner_steps,
                      step_size=args.inner_step_size, mu=args.inner_ridge, eps=args.inner_eps)
    return PredictorConfig(inner=inner, outer_time=args.outer_time, outer_ridge=args.outer_ridge)
