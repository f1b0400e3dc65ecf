"""Benchmark of the data layer on CPU.

Prints (and saves as JSON, default results/bench_data.json):
* episodes / s of ``sample_episodes`` (mini-ImageNet-sized label vector: 64 classes x 600, and
  the real Omniglot train split) and tasks / s of ``sample_task_batch``;
* images / s of ``augment_batch`` (jitted, after one warm-up call) at 84x84x3 and 32x32x3;
  samplers and augmentation report the median [min, max] of ``--repeats`` runs, each run with
  its own seed / PRNG key (fold_in of the repeat index), and the load average;
* seconds to open a 38,400-image 84x84 split written as a synthetic mini-ImageNet cache pickle
  (the real train-file size, 813 MB), and the same array as an uncompressed tiered-style .npz
  (memory-mapped in place);
* seconds to decode the real Omniglot zips (all three splits, 4,840 images).

    .venv/bin/python experiments/bench_data.py [--episodes 10000] [--workdir /tmp] [--out F]
    .venv/bin/python experiments/bench_data.py --omniglot-stats   # mean/std of base.py
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntk_bridge.data import default_omniglot_root, load_split  # noqa: E402
from ntk_bridge.data.sampler import sample_episodes, sample_task_batch  # noqa: E402
from ntk_bridge.io import write_json  # noqa: E402


def _median(fn, repeats: int) -> dict:
    """Wall-clock seconds of ``fn(r)`` for r = 1..repeats, each call with its own random seed or
    key ``r`` (so no repeat reuses another's draw): ``{"seconds": median, "min_s", "max_s",
    "repeats"}``."""
    times = []
    for r in range(1, repeats + 1):
        t = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t)
    return {"seconds": float(np.median(times)), "min_s": float(np.min(times)),
            "max_s": float(np.max(times)), "repeats": repeats}


def bench_sampler(n_episodes: int, repeats: int) -> list[dict]:
    rows = []
    mini = np.random.default_rng(0).permutation(np.repeat(np.arange(64), 600))
    cases = [("mini-like 64x600", mini, 5, 1, 15), ("mini-like 64x600", mini, 5, 5, 15)]
    try:
        omni = load_split("omniglot", default_omniglot_root(), "train").labels
        cases.append(("omniglot train 163x20", omni, 20, 1, 5))
        cases.append(("omniglot train 163x20", omni, 5, 5, 15))
    except Exception as err:  # noqa: BLE001 - report and continue
        print(f"(omniglot skipped: {err})")
    for name, labels, n, k, q in cases:
        t = _median(lambda seed: sample_episodes(labels, n, k, q, n_episodes, seed), repeats)
        rows.append({"what": "sample_episodes", "labels": name, "n_way": n, "k_shot": k,
                     "q_query": q, "episodes": n_episodes, **t,
                     "per_second": n_episodes / t["seconds"]})
    t = _median(lambda seed: sample_task_batch(mini, 5, 20, n_episodes, seed), repeats)
    rows.append({"what": "sample_task_batch", "labels": "mini-like 64x600", "n_way": 5,
                 "n_per_class": 20, "episodes": n_episodes, **t,
                 "per_second": n_episodes / t["seconds"]})
    return rows


def bench_augment(batch: int, repeats: int) -> list[dict]:
    import jax

    from ntk_bridge.data import dataset_stats
    from ntk_bridge.data.augment import augment_batch
    rows = []
    for size, pad, ds in ((84, 8, "miniimagenet"), (32, 4, "cifarfs")):
        x = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        mean, std = dataset_stats(ds)
        key = jax.random.key(0)
        augment_batch(key, x, pad=pad, mean=mean, std=std).block_until_ready()  # compile
        t = _median(lambda r: augment_batch(jax.random.fold_in(key, r), x, pad=pad, mean=mean,
                                            std=std).block_until_ready(), repeats)
        rows.append({"what": "augment_batch", "image": f"{size}x{size}x3", "pad": pad,
                     "batch": batch, **t, "per_second": batch / t["seconds"],
                     "backend": jax.default_backend()})
    return rows


def bench_open(workdir: Path, n: int = 38400) -> list[dict]:
    rows = []
    tmp = Path(tempfile.mkdtemp(dir=workdir, prefix="bench_data_"))
    try:
        x = np.random.default_rng(0).integers(0, 256, (n, 84, 84, 3), dtype=np.uint8)
        class_dict = {f"n{c:08d}": list(range(c * 600, (c + 1) * 600)) for c in range(n // 600)}
        t = time.perf_counter()
        with open(tmp / "mini-imagenet-cache-train.pkl", "wb") as fh:
            pickle.dump({"image_data": x, "class_dict": class_dict}, fh, protocol=4)
        write_s = time.perf_counter() - t
        np.savez(tmp / "train_images.npz", images=x)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test-only file writers
        from helpers.data_files import dump_py2_pickle
        dump_py2_pickle({"labels": np.repeat(np.arange(n // 600), 600)}, tmp / "train_labels.pkl")
        del x
        size_mb = (tmp / "mini-imagenet-cache-train.pkl").stat().st_size / 1e6
        t = time.perf_counter()
        sp = load_split("miniimagenet", tmp, "train")
        sec = time.perf_counter() - t
        assert len(sp) == n and sp.num_classes == n // 600
        rows.append({"what": "open cache pickle", "images": n, "file_mb": round(size_mb, 1),
                     "seconds": sec, "write_seconds": write_s})
        del sp
        t = time.perf_counter()
        sp = load_split("tieredimagenet", tmp, "train", cache_dir=tmp / "cache")
        sec = time.perf_counter() - t
        assert isinstance(sp.images, np.memmap) and len(sp) == n
        rows.append({"what": "open stored .npz (memmap)", "images": n, "seconds": sec})
        del sp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def bench_omniglot() -> list[dict]:
    from ntk_bridge.data import omniglot
    omniglot._CACHE.clear()
    t = time.perf_counter()
    n = sum(len(load_split("omniglot", default_omniglot_root(), s)) for s in ("train", "val", "test"))
    sec = time.perf_counter() - t
    return [{"what": "decode omniglot zips (3 splits)", "images": n, "seconds": sec,
             "per_second": n / sec}]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f}"


def omniglot_stats() -> None:
    sp = load_split("omniglot", default_omniglot_root(), "train")
    x = sp.images.astype(np.float64) / 255.0
    print(f"omniglot train ({sp.num_classes} classes, {len(sp)} images, 28x28, strokes bright): "
          f"mean {x.mean():.5f} std {x.std():.5f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workdir", default=tempfile.gettempdir(),
                    help="where the 813 MB synthetic file is written (and removed)")
    ap.add_argument("--skip-open", action="store_true", help="skip the 38,400-image file")
    ap.add_argument("--out", default="results/bench_data.json")
    ap.add_argument("--omniglot-stats", action="store_true")
    args = ap.parse_args(argv)
    if args.omniglot_stats:
        omniglot_stats()
        return 0
    if args.repeats < 1 or args.episodes < 1 or args.batch < 1:
        print("error: --repeats, --episodes and --batch must be >= 1", file=sys.stderr)
        return 2
    print(f"start: {_load()}")
    rows = bench_sampler(args.episodes, args.repeats)
    rows += bench_augment(args.batch, args.repeats)
    rows += bench_omniglot()
    if not args.skip_open:
        rows += bench_open(Path(args.workdir))
    print(f"\ndata-layer benchmark ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; samplers/augmentation: median [min, max] of {args.repeats} runs, "
          f"each with a fresh seed/key; {_load()})")
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in ("what", "seconds", "per_second", "min_s",
                                                           "max_s", "repeats")}
        if "min_s" in r:
            extra["range_s"] = f"[{r['min_s']:.3f}, {r['max_s']:.3f}]"
        rate = f"{r['per_second']:>12,.0f}/s" if "per_second" in r else " " * 14
        print(f"{r['what']:<34} {r['seconds']:>8.3f} s {rate}  {extra}")
    write_json(args.out, {"argv": sys.argv[1:], "config": vars(args), "rows": rows,
                          "cpus": os.cpu_count()})
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
