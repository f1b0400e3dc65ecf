"""Time one training step of MTL, MAML, ANIL, ProtoNet and MetaOptNet-ridge on ResNet-12.

Run from the repository root (no data files needed; synthetic uint8 images, normalised):

    PYTHONPATH=. python3 experiments/gpu_gbml_check.py            # the device check (~3 min)
    PYTHONPATH=. python3 experiments/gpu_gbml_check.py --quick    # tiny CPU smoke run

Batch sizes per optimiser step (the papers' mini-ImageNet settings, 84x84x3, 5-way):

- MTL (Wang et al. 2021): 4 tasks x 5 classes x (5 shots + 15 queries) = 400 images;
- MetaOptNet-ridge (Lee et al. 2019): 8 episodes x 5 x (15 shots + 6 queries) = 840 images;
- ProtoNet: the MetaOptNet setting (8 episodes x 5 x (15 + 6)) = 840 images;
- MAML / ANIL (Finn et al. 2017; mini-ImageNet): 4 episodes x 5 x (5 + 15) = 400 images,
  5 inner steps (inner lr 0.01) second order; MAML also with remat (inner-step checkpointing)
  and first order. DropBlock off for MAML/ANIL (as MAML implementations), on for the others.

Then the same on 32x32 (CIFAR-FS/FC100 size) while the time budget (--budget, 150 s) lasts. Prints ms per step, images per
second, compile time, peak device memory (where the backend reports it) and each method's
per-step and per-image time relative to MTL. Out-of-memory in one configuration is reported
and the script goes on. Writes $OUT/gpu_gbml_check.json when OUT is set.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import numpy as np


def _configs(quick: bool):
    """(label, algorithm, gbml overrides, episodes/tasks, shots, queries, dropblock)."""
    if quick:
        return [("mtl", "mtl", {}, 2, 1, 2, True),
                ("protonet", "protonet", {}, 2, 1, 2, True),
                ("metaoptnet-ridge", "metaoptnet-ridge", {}, 2, 1, 2, True),
                ("anil", "anil", {"inner_steps": 2, "inner_lr": 0.01}, 2, 1, 2, False),
                ("maml", "maml", {"inner_steps": 2, "inner_lr": 0.01}, 2, 1, 2, False),
                ("maml-remat", "maml", {"inner_steps": 2, "inner_lr": 0.01, "remat": True}, 2, 1, 2, False)]
    maml = {"inner_steps": 5, "inner_lr": 0.01}
    # most important first: the budget skips the tail
    return [("mtl", "mtl", {}, 4, 5, 15, True),
            ("maml", "maml", maml, 4, 5, 15, False),
            ("protonet", "protonet", {}, 8, 15, 6, True),
            ("metaoptnet-ridge", "metaoptnet-ridge", {}, 8, 15, 6, True),
            ("anil", "anil", maml, 4, 5, 15, False),
            ("maml-remat", "maml", {**maml, "remat": True}, 4, 5, 15, False),
            ("maml-first-order", "maml", {**maml, "first_order": True}, 4, 5, 15, False)]


def _peak_bytes(device) -> int | None:
    try:
        stats = device.memory_stats()
    except Exception:  # backend without memory stats (CPU)
        return None
    return None if not stats else int(stats.get("peak_bytes_in_use", 0)) or None


def _batch(rng, episodic, t, n_way, shots, queries, hw, mean, std):
    def imgs(n):
        x = rng.integers(0, 256, size=(t, n, hw, hw, 3), dtype=np.uint8)
        return ((x.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
    classes = np.stack([rng.choice(64, n_way, replace=False) for _ in range(t)]).astype(np.int32)
    if episodic:
        return {"support_x": imgs(n_way * shots),
                "support_y": np.tile(np.repeat(np.arange(n_way), shots), (t, 1)).astype(np.int32),
                "query_x": imgs(n_way * queries),
                "query_y": np.tile(np.repeat(np.arange(n_way), queries), (t, 1)).astype(np.int32),
                "classes": classes}
    m = shots + queries
    return {"x": imgs(n_way * m), "y": np.tile(np.repeat(np.arange(n_way), m), (t, 1)).astype(np.int32),
            "classes": classes}


def time_one(label, algo_name, overrides, t, shots, queries, dropblock, *, hw, channels,
             steps, n_way=5):
    import jax

    from ntk_bridge.train.algorithms import get_algorithm
    from ntk_bridge.train.config import TrainConfig
    from ntk_bridge.train.gbml import GBMLConfig, make_gbml
    from ntk_bridge.train.models import ResNet12

    mean = np.array([0.472, 0.453, 0.410], np.float32)
    std = np.array([0.277, 0.268, 0.285], np.float32)
    rng = np.random.default_rng(0)
    model = ResNet12(channels=channels, drop_rate=0.1 if dropblock else 0.0,
                     block_size=5 if hw >= 64 else 2)
    run_cfg = TrainConfig(n_way=n_way, shots=shots, train_query=queries, meta_batch=t,
                          backbone="resnet12", lr=1e-3, progress=False)
    if algo_name == "mtl":
        algo = get_algorithm("mtl")
    else:
        algo = make_gbml(algo_name, GBMLConfig.from_mapping({"n_way": n_way, "meta_batch": t, **overrides}))
    batch = _batch(rng, algo.episodic, t, n_way, shots, queries, hw, mean, std)
    images = int(sum(v.shape[0] * v.shape[1] for k, v in batch.items() if k in ("x", "support_x", "query_x")))
    state = algo.init(jax.random.PRNGKey(0), model, batch, run_cfg, 64)
    t0 = time.perf_counter()
    step = jax.jit(algo.train_step).lower(state, batch, jax.random.PRNGKey(1)).compile()
    compile_s = time.perf_counter() - t0
    batch = jax.device_put(batch)
    state, m = step(state, batch, jax.random.PRNGKey(2))      # warm-up
    jax.block_until_ready(m)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        state, m = step(state, batch, jax.random.PRNGKey(3 + i))
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    loss = float(m["loss"])
    ms = 1000.0 * float(np.median(times))
    return {"label": label, "algorithm": algo_name, "image_size": hw, "tasks_per_step": t,
            "shots": shots, "queries": queries, "images_per_step": images, "gbml": overrides,
            "dropblock": dropblock, "compile_s": compile_s, "ms_per_step": ms,
            "ms_per_step_all": [1000.0 * x for x in times], "images_per_s": images / (ms / 1000.0),
            "loss_after": loss, "finite": bool(np.isfinite(loss)),
            "peak_bytes": _peak_bytes(jax.devices()[0])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    parser.add_argument("--budget", type=float, default=150.0,
                        help="seconds; later configurations are skipped past this "
                             "(default 150; no limit with --quick)")
    parser.add_argument("--sizes", default=None, help="comma-separated image sizes (default 84,32)")
    parser.add_argument("--only", default=None,
                        help="comma-separated configuration labels to run, in this order (e.g. mtl,anil,maml-remat)")
    args = parser.parse_args(argv)
    import jax
    dev = jax.devices()[0]
    print(f"jax {jax.__version__}, device {dev.platform}: {dev.device_kind}", flush=True)
    if args.quick:
        sizes, channels, steps = [32], (8, 8, 8, 8), 2
        args.budget = float("inf")
    else:
        sizes, channels, steps = [84, 32], (64, 160, 320, 640), 5
    if args.sizes:
        sizes = [int(v) for v in args.sizes.split(",")]
    configs = _configs(args.quick)
    if args.only:
        by_label = {c[0]: c for c in configs}
        unknown = [v for v in args.only.split(",") if v not in by_label]
        if unknown:
            parser.error(f"unknown configuration {unknown}; choose from {', '.join(by_label)}")
        configs = [by_label[v] for v in args.only.split(",")]
    start = time.perf_counter()
    results, skipped = [], []
    for hw in sizes:
        for cfg in configs:
            label = f"{cfg[0]}@{hw}"
            if time.perf_counter() - start > args.budget:
                skipped.append(label)
                continue
            try:
                r = time_one(*cfg, hw=hw, channels=channels, steps=steps)
            except Exception as err:  # OOM (RESOURCE_EXHAUSTED) or other failure: report, go on
                msg = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
                oom = "RESOURCE_EXHAUSTED" in str(err) or "out of memory" in str(err).lower()
                print(f"{label:>24}: FAILED ({'out of memory' if oom else type(err).__name__}): {msg}",
                      flush=True)
                if not oom:
                    traceback.print_exc(limit=3)
                results.append({"label": cfg[0], "algorithm": cfg[1], "image_size": hw,
                                "error": msg, "oom": oom})
                continue
            results.append(r)
            peak = "" if r["peak_bytes"] is None else f", peak mem {r['peak_bytes'] / 2**30:.1f} GiB (process so far)"
            print(f"{label:>24}: {r['ms_per_step']:8.1f} ms/step, {r['images_per_s']:8.0f} img/s, "
                  f"{r['images_per_step']} img/step, compile {r['compile_s']:.1f} s, "
                  f"loss {r['loss_after']:.3f}{peak}", flush=True)
    # ratios to MTL at the same image size
    print("\nper-step and per-image time relative to MTL (same image size):")
    for hw in sizes:
        base = next((r for r in results if r["image_size"] == hw and r["label"] == "mtl"
                     and "error" not in r), None)
        if base is None:
            continue
        for r in results:
            if r["image_size"] != hw or "error" in r:
                continue
            r["step_ratio_vs_mtl"] = r["ms_per_step"] / base["ms_per_step"]
            r["per_image_ratio_vs_mtl"] = (r["ms_per_step"] / r["images_per_step"]) / (
                base["ms_per_step"] / base["images_per_step"])
            print(f"  {hw}x{hw} {r['label']:>18}: step x{r['step_ratio_vs_mtl']:.2f}, "
                  f"per image x{r['per_image_ratio_vs_mtl']:.2f}")
    if skipped:
        print(f"skipped (time budget {args.budget:.0f} s): {', '.join(skipped)}")
    report = {"jax": jax.__version__, "device": f"{dev.platform}: {dev.device_kind}",
              "quick": args.quick, "channels": list(channels), "timed_steps": steps,
              "results": results, "skipped": skipped,
              "total_s": time.perf_counter() - start}
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        from ntk_bridge.io import json_text  # strict JSON (NaN as null)
        with open(os.path.join(out, "gpu_gbml_check.json"), "w") as fh:
            fh.write(json_text(report))
        print(f"wrote {os.path.join(out, 'gpu_gbml_check.json')}")
    print(f"total {report['total_s']:.0f} s")
    return 0 if any("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
