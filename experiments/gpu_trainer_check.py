"""GPU check of the MTL trainer: ResNet-12 throughput and projected accelerator-hours.

Needs no data files: synthetic uint8 images (64 classes x 600 at 32x32x3; 64 x 100 at 84x84x3,
throughput does not depend on the data-set size). Three phases, each reported even if another
fails:

1. throughput: the training loop's own step (host sampling -> device -> augmentation -> MTL
   step with ResNet-12, DropBlock, RAdam), timed for --budget seconds after compilation, at
   32x32 (CIFAR-FS / FC100) and 84x84 (mini / tiered-ImageNet), 5-way, shots + 15 images per
   class per task, 4 tasks per step;
2. end to end: ``ntk_bridge.train.loop.train`` on the synthetic CIFAR-size data for a few steps
   with orbax checkpoints, validation and a test evaluation (logistic regression head);
3. projection: for each paper setting, max_steps x images per step / measured images/s
   (an upper bound: every step of the config's max_steps, validation time excluded).

Run from the repository root:  PYTHONPATH=. python3 experiments/gpu_trainer_check.py
CPU smoke test:                 .venv/bin/python experiments/gpu_trainer_check.py --quick
Writes $OUT/gpu_trainer_check.json when OUT is set.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_split(n_classes, per_class, size, seed, name):
    """Class template + per-image noise, uint8 (N, size, size, 3)."""
    from ntk_bridge.data import FewShotSplit
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (n_classes, size, size, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), per_class)
    noise = rng.integers(-40, 41, (labels.size, size, size, 3), dtype=np.int16)
    images = np.clip(templates[labels].astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return FewShotSplit(images, labels, tuple(f"class{i}" for i in range(n_classes)), name)


def synthetic_data(size, train_per_class, quick):
    from ntk_bridge.train.loop import RunData
    n_train = 8 if quick else 64
    n_eval = 6 if quick else 16
    return RunData(synthetic_split(n_train, train_per_class, size, 0, f"synthetic{size}/train"),
                   synthetic_split(n_eval, 60, size, 1, f"synthetic{size}/val"),
                   synthetic_split(n_eval, 60, size, 2, f"synthetic{size}/test"),
                   (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))


def check_config(setting, quick, **changes):
    from ntk_bridge.train.config import load_config
    cfg = load_config(setting)
    if quick:
        changes = {"channels": [8, 8, 16, 16], "meta_batch": 1, **changes}
    return cfg.replace(progress=False, **changes)


def measure(config, data, budget_s):
    """Images/s of the loop's step (sampling, transfer, augmentation, update) after compiling."""
    import jax

    from ntk_bridge.train.algorithms import set_learning_rate
    from ntk_bridge.train.loop import batch_indices, build_batch, images_per_step, init_state
    algorithm, _, state, prepare = init_state(config, data)
    step_fn = jax.jit(algorithm.train_step, donate_argnums=(0,))
    k = jax.random.PRNGKey(config.seed)

    def one(state, step):
        state = set_learning_rate(state, config.lr)
        kb, ks = jax.random.split(jax.random.fold_in(k, step))
        idx = batch_indices(config, data.train.labels, step, algorithm.episodic)
        batch = build_batch(config, data.train, idx, kb, prepare, algorithm.episodic)
        state, metrics = step_fn(state, batch, ks)
        return state, float(metrics["loss"])

    t = time.perf_counter()
    state, loss0 = one(state, 0)
    compile_s = time.perf_counter() - t
    for s in range(1, 3):  # warm-up
        state, _ = one(state, s)
    steps, t = 0, time.perf_counter()
    while time.perf_counter() - t < budget_s:
        state, loss = one(state, 3 + steps)
        steps += 1
    dt = time.perf_counter() - t
    per = images_per_step(config, algorithm.episodic)
    return {"images_per_s": steps * per / dt, "steps_per_s": steps / dt, "steps_timed": steps,
            "timed_s": dt, "images_per_step": per, "first_step_s_incl_compile": compile_s,
            "loss_first": loss0, "loss_last": loss, "image_size": int(data.train.images.shape[1]),
            "backbone_channels": config.channels or [64, 160, 320, 640], "meta_batch": config.meta_batch}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    p.add_argument("--budget", type=float, default=None, help="seconds timed per resolution")
    p.add_argument("--e2e-steps", type=int, default=None, help="steps of the end-to-end run")
    args = p.parse_args(argv)
    budget = args.budget if args.budget is not None else (3.0 if args.quick else 20.0)
    e2e_steps = args.e2e_steps if args.e2e_steps is not None else (4 if args.quick else 10)

    import jax
    dev = jax.devices()[0]
    report = {"device": dev.device_kind, "platform": dev.platform, "n_devices": jax.device_count(),
              "jax": jax.__version__, "quick": args.quick, "budget_s": budget, "phases": {}}
    try:
        import flax
        import optax
        import orbax.checkpoint
        report.update(flax=flax.__version__, optax=optax.__version__,
                      orbax=getattr(orbax.checkpoint, "__version__", "?"))
    except Exception as err:  # noqa: BLE001 - report, do not stop
        report["versions_error"] = repr(err)
    print(f"device: {report['device']} ({report['platform']} x{report['n_devices']}), jax {report['jax']}, "
          f"flax {report.get('flax')}, optax {report.get('optax')}, orbax {report.get('orbax')}", flush=True)
    t_all = time.perf_counter()

    # 1. throughput at both resolutions
    rates = {}
    for size, setting, per_class in ((32, "cifarfs_5shot", 600), (84, "miniimagenet_5shot", 100)):
        name = f"throughput_{size}px"
        try:
            t = time.perf_counter()
            data = synthetic_data(size, 20 if args.quick else per_class, args.quick)
            cfg = check_config(setting, args.quick)
            res = measure(cfg, data, budget)
            res["phase_s"] = time.perf_counter() - t
            rates[size] = res["images_per_s"]
            report["phases"][name] = res
            print(f"[{name}] ResNet-12 MTL, {size}x{size}, {res['images_per_step']} images/step: "
                  f"{res['images_per_s']:.0f} images/s ({res['steps_per_s']:.2f} steps/s over "
                  f"{res['timed_s']:.0f} s; first step incl. compile {res['first_step_s_incl_compile']:.1f} s; "
                  f"loss {res['loss_first']:.3f} -> {res['loss_last']:.3f})", flush=True)
        except Exception as err:  # noqa: BLE001
            report["phases"][name] = {"error": repr(err), "traceback": traceback.format_exc()[-3000:]}
            print(f"[{name}] FAILED: {err!r}", flush=True)

    # 2. end-to-end loop with checkpoints and evaluation
    try:
        from ntk_bridge.train.loop import train
        t = time.perf_counter()
        data = synthetic_data(32, 20 if args.quick else 600, args.quick)
        cfg = check_config("cifarfs_5shot", args.quick, max_steps=e2e_steps,
                           eval_every=max(1, e2e_steps // 2), checkpoint_every=max(1, e2e_steps // 2),
                           val_episodes=50 if args.quick else 200, test_episodes=100 if args.quick else 500)
        with tempfile.TemporaryDirectory() as tmp:
            summary = train(cfg, Path(tmp) / "run", data=data)
            ckpts = sorted(os.listdir(Path(tmp) / "run" / "checkpoints"))
        summary = {k: v for k, v in summary.items() if k != "run_dir"}
        summary["checkpoints"] = ckpts
        summary["phase_s"] = time.perf_counter() - t
        report["phases"]["end_to_end"] = summary
        print(f"[end_to_end] {e2e_steps} steps, checkpoints {ckpts}, best val {summary['best_val_acc']:.1f}% "
              f"at step {summary['best_step']}, test {summary['test_text']}; "
              f"{summary['images_per_s']:.0f} images/s, wall {summary['wall_s']:.1f} s", flush=True)
    except Exception as err:  # noqa: BLE001
        report["phases"]["end_to_end"] = {"error": repr(err), "traceback": traceback.format_exc()[-3000:]}
        print(f"[end_to_end] FAILED: {err!r}", flush=True)

    # 3. projection per paper setting
    from ntk_bridge.train.config import load_config
    from ntk_bridge.train.loop import images_per_step
    proj = {}
    for ds in ("cifarfs", "fc100", "miniimagenet", "tieredimagenet"):
        size = 32 if ds in ("cifarfs", "fc100") else 84
        for shots in (1, 5):
            cfg = load_config(f"{ds}_{shots}shot")
            per = images_per_step(cfg, False)
            if size in rates:
                hours = cfg.max_steps * per / rates[size] / 3600.0
                proj[f"{ds}_{shots}shot"] = {"max_steps": cfg.max_steps, "images_per_step": per,
                                            "images_per_s": rates[size], "accelerator_hours": hours}
    report["projection"] = proj
    report["projection_note"] = ("max_steps x images/step / measured images/s at the set's resolution "
                                 "(5-shot batch rate used for 1-shot too); validation excluded; "
                                 "early stopping can only shorten it")
    if proj:
        print(f"projected accelerator-hours on {report['device']} (full max_steps, validation excluded):")
        for name, v in proj.items():
            print(f"  {name:<22} {v['max_steps']:>7} steps x {v['images_per_step']:>3} images "
                  f"@ {v['images_per_s']:.0f}/s = {v['accelerator_hours']:.2f} h")
    report["total_s"] = time.perf_counter() - t_all
    print(f"total {report['total_s']:.0f} s", flush=True)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / "gpu_trainer_check.json"
        from ntk_bridge.io import json_text  # strict JSON (NaN as null)
        path.write_text(json_text(report))
        print(f"wrote {path}")
    failed = [k for k, v in report["phases"].items() if "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
