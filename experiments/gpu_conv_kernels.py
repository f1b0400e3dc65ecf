"""Prepared GPU run: the conv kernels of a kernel-fewshot run (Omniglot 28x28), written to its cache.

Takes exactly the flags of ``ntk-bridge kernel-fewshot`` (same parser) and makes exactly the conv
kernel calls that command will make (the same episodes, images, training block, test-row tiles and
per-task blocks, :func:`ntk_bridge.studies.kernel_fewshot.tile_grams`), through the same engine
(:mod:`ntk_bridge.engine.conv_engine`; JAX places it on the GPU, pairs sharded over all local devices, no code
change), so each result lands in ``--conv-cache`` under the content hash the command looks up. Then
``ntk-bridge kernel-fewshot`` with the same flags (on any machine, with the cache folder copied over)
reads every conv kernel from the cache (``cache_hits`` in its timing.csv; 0 entries computed).
No labels, encoder or predictor are needed here (the kernel depends on the images only).

Records the device, JAX version, wall seconds, entries computed and entries per second (all depths)
as JSON in --report (default: $OUT/gpu_conv_kernels.json when $OUT is set, else next to the cache).

Example (one GPU): the flags of experiments/results/kernel_fewshot_conv28/run.sh, here with more
episodes. --conv-tile (image pairs per engine step) defaults to the engine's GPU rule, a state array of
<= 2^26 entries: 64 pairs at 28x28, ~2.2 GB per step in float64 (XLA plans ~7 state arrays per step);
give a number to override it.

    python experiments/gpu_conv_kernels.py --shots 1 --train-episodes 5 --test-episodes 60 --image-size 28 \\
        --conv-image-size 28 --conv-depths 1,2,3,4 --conv-train-episodes 5 --conv-test-episodes 60 \\
        --conv-cache runs/conv28/cache --labels random-slots
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parser() -> argparse.ArgumentParser:
    from ntk_bridge.commands import kernel_fewshot as cmd

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_arguments(p)
    p.add_argument("--report", default=None, help="JSON file of the device, time and entries/s")
    return p


def warm_cache(config, progress: bool = True) -> dict:
    """Compute (or read) every conv kernel block that ``kernel-fewshot`` with ``config`` will ask for."""
    from tqdm import tqdm

    from ntk_bridge.errors import require
    from ntk_bridge.studies import kernel_fewshot as kf

    require(bool(config.conv_depths), "give --conv-depths (the conv kernel is what this script computes)")
    require(config.conv_cache is not None, "give --conv-cache FOLDER: the cache is this script's output")
    splits = kf.load_splits(config)
    conv = kf.conv_kernel_eval(config.conv_depths, config.conv_image_size, config.conv_tile,
                               cache_dir=config.conv_cache)
    for shots in config.shots:
        et = kf.episode_tasks(config, splits, kf.sample(config, splits, shots), config.conv_image_size)
        et = kf.subset(et, min(config.conv_train_episodes, config.train_episodes),
                       min(config.conv_test_episodes, config.test_episodes))
        steps = len(kf.group_plan(et.tasks, config.group_rows)) * len(config.conv_depths)
        for _ in tqdm(kf.tile_grams(et.tasks, conv, config.group_rows, config.tile_rows), total=steps,
                      desc=f"conv {config.conv_image_size}x{config.conv_image_size} {shots}-shot (group, depth)",
                      disable=not progress):
            pass
    s = conv.stats
    return {"entries_computed": s.computed_entries, "kernel_seconds": s.seconds, "cache_hits": s.hits,
            "cache_misses": s.misses, "entries_per_s_all_depths": s.entries_per_s()}


def main(argv=None) -> int:
    import jax

    from ntk_bridge.commands.kernel_fewshot import config_from_args

    args = parser().parse_args(argv)
    config = config_from_args(args)
    start = time.time()
    stats = warm_cache(config, progress=not args.quiet)
    dev = jax.devices()[0]
    report = {"device": f"{dev.platform} {dev.device_kind}", "devices": len(jax.local_devices()),
              "jax": jax.__version__, "wall_seconds": round(time.time() - start, 2), **stats,
              "conv_image_size": config.conv_image_size, "conv_depths": list(config.conv_depths),
              "conv_tile": config.conv_tile, "shots": list(config.shots), "conv_cache": config.conv_cache,
              "argv": sys.argv[1:] if argv is None else list(argv)}
    path = Path(args.report) if args.report else (Path(os.environ["OUT"]) / "gpu_conv_kernels.json"
                                                  if os.environ.get("OUT") else Path(config.conv_cache) / "gpu_run.json")
    from ntk_bridge.io import json_text, write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)
    print(json_text(report))
    return 0


if __name__ == "__main__":
    from ntk_bridge.commands.cli import script_exit

    raise SystemExit(script_exit(main))
