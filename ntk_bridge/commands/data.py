"""Inspect the few-shot data sets on disk.

    ntk-bridge data info --dataset NAME --root DIR [--out PNG]

Looks for NAME (omniglot, cifarfs, fc100, miniimagenet, tieredimagenet, or imagefolder: your own
DIR/<class>/*.png, classes split by DIR/splits.json or by seed) in DIR in every format
the loaders accept (see docs/benchmarks.md), prints what was found: the file format,
classes and images per split, image shape and images per class, and saves a PNG grid of
sample images (one row per split: --per-row classes drawn at random, one random image of each)
so you can see the data is right, plus a JSON summary beside the PNG. A split that cannot be
read gets a one-line reason.

Without --out the grid goes to the system's temporary folder (TMP/ntk_bridge/data_NAME.png, the
path printed), never into the current folder: run inside a checkout, `data info` leaves its
`git status` clean. Pass --out to keep the grid somewhere of your choosing.
With --download, files with a public source (Omniglot zips, the CIFAR-100 archive) are
fetched first (resumable, checksum-verified); without a network the error says which file to
put where.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SPLITS = ("train", "val", "test")


def default_out(dataset: str) -> Path:
    """Where the grid goes without --out: the system's temporary folder, never the current one
    (a command writes into the folder it is run from, often a checkout, only when asked)."""
    import tempfile

    return Path(tempfile.gettempdir()) / "ntk_bridge" / f"data_{dataset}.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="what is in the data folder, per split, with a PNG grid",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("--dataset", required=True,
                      help="omniglot, cifarfs, fc100, miniimagenet, tieredimagenet, or imagefolder (ROOT/<class>/*.png)")
    info.add_argument("--root", default=None,
                      help="folder with the data files (default for omniglot: "
                           "$NTK_BRIDGE_DATA/omniglot or ../shared/data/omniglot)")
    info.add_argument("--out", default=None,
                      help=f"PNG grid of sample images (default {default_out('<dataset>')}, outside "
                           "any checkout); a .json summary is written beside it")
    info.add_argument("--splits", default="train,val,test", help="comma-separated splits")
    info.add_argument("--per-row", type=int, default=10, help="images per split in the grid")
    info.add_argument("--seed", type=int, default=0, help="seed for picking the sample images")
    info.add_argument("--image-size", type=int, default=None,
                      help="omniglot: resize to this size (default 28)")
    info.add_argument("--rotations", action="store_true",
                      help="omniglot: add 90/180/270-degree rotations as new classes")
    info.add_argument("--cache-dir", default=None,
                      help="where decoded arrays are cached (tiered / JPEG mini-ImageNet; "
                           "default: a .ntk_bridge_cache folder under the data folder)")
    info.add_argument("--download", action="store_true",
                      help="fetch missing files from their public source first")


def _options(args, dataset: str) -> dict:
    if dataset == "omniglot":
        opts = {"rotations": bool(args.rotations)}
        if args.image_size:
            opts["image_size"] = int(args.image_size)
        return opts
    if dataset == "imagefolder":
        return {"image_size": int(args.image_size)} if args.image_size else {}
    opts = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    if args.image_size and dataset == "miniimagenet":
        opts["image_size"] = int(args.image_size)
    return opts


def _source(dataset: str, root: Path, split: str) -> str:
    """Short description of the file(s) a split was read from."""
    try:
        if dataset == "omniglot":
            from ntk_bridge.data.omniglot import find_omniglot_zips
            return "+".join(sorted(find_omniglot_zips(root)))
        if dataset in ("cifarfs", "fc100"):
            from ntk_bridge.data.cifar import CIFAR_ARCHIVE, _find_pickle
            p = _find_pickle(dataset, root, split)
            return p.name if p else CIFAR_ARCHIVE
        if dataset == "miniimagenet":
            from ntk_bridge.data.miniimagenet import find_mini_source
            fmt, p = find_mini_source(root, split)
            return f"{p.name} ({fmt})"
        if dataset == "imagefolder":
            from ntk_bridge.data.image_folder import SPLIT_FILE
            return f"class folders ({SPLIT_FILE})" if (root / SPLIT_FILE).is_file() else "class folders (seed split)"
        from ntk_bridge.data.tieredimagenet import _find
        p = _find(root, f"{split}_images_png.pkl") or _find(root, f"{split}_images.npz")
        return p.name if p else "?"
    except Exception:  # noqa: BLE001 - description only
        return "?"


def _grid(splits: dict, per_row: int, seed: int, title: str):
    import numpy as np
    from matplotlib.figure import Figure

    rows = [s for s in splits if splits[s] is not None]
    fig = Figure(figsize=(1.3 * per_row, 1.5 * len(rows)))
    axes = fig.subplots(len(rows), per_row, squeeze=False)
    rng = np.random.default_rng(seed)
    for r, name in enumerate(rows):
        sp = splits[name]
        classes = rng.choice(sp.num_classes, size=min(per_row, sp.num_classes), replace=False)
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= classes.size:
                ax.axis("off")
                continue
            idx = rng.choice(np.flatnonzero(sp.labels == classes[c]))
            img = np.asarray(sp.images[idx])
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
            label = sp.class_names[classes[c]].replace("character", "ch")
            ax.set_title(label if len(label) <= 18 else label[:8] + "…" + label[-9:], fontsize=6)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def run(args) -> int:
    import numpy as np

    from ntk_bridge.data import load_split
    from ntk_bridge.data.base import check_dataset, check_root, check_split, default_omniglot_root
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.io import check_figure_path, save_figure, write_json

    dataset = check_dataset(args.dataset)
    out = check_figure_path(args.out, "--out") if args.out else default_out(dataset)
    if args.root is None and dataset != "omniglot":
        raise BridgeError(f"pass --root DIR, the folder holding the {dataset} files")
    root = Path(args.root) if args.root else default_omniglot_root()
    wanted = [check_split(s.strip()) for s in str(args.splits).split(",") if s.strip()]
    if args.per_row < 1:
        raise BridgeError(f"--per-row must be >= 1, got {args.per_row}")
    if args.download:
        from ntk_bridge.data.download import fetch_dataset
        root.mkdir(parents=True, exist_ok=True)
        try:
            load_split(dataset, root, wanted[0], **_options(args, dataset))
        except BridgeError:
            fetched = fetch_dataset(dataset, root)
            print(f"downloaded: {', '.join(p.name for p in fetched) or 'nothing'}")
    root = check_root(root, dataset)

    splits, errors, summary = {}, {}, {"dataset": dataset, "root": str(root),
                                       "options": _options(args, dataset), "splits": {}}
    for s in wanted:
        try:
            splits[s] = load_split(dataset, root, s, **_options(args, dataset))
        except BridgeError as err:
            splits[s], errors[s] = None, str(err)
    if all(v is None for v in splits.values()):
        raise BridgeError(next(iter(errors.values())))
    damaged = [e for e in errors.values() if " is damaged" in e or e.startswith("image ")]
    if damaged:                                 # a damaged file is a fault to fix, not a missing split
        raise BridgeError(damaged[0])

    header = f"{'split':<6} {'classes':>7} {'images':>8} {'shape':>12} {'img/class':>11}  source"
    print(f"{dataset} in {root}")
    print(header)
    print("-" * len(header))
    for s in wanted:
        sp = splits[s]
        if sp is None:
            print(f"{s:<6} {'-':>7} {'-':>8} {'-':>12} {'-':>11}  missing: {errors[s]}")
            summary["splits"][s] = {"error": errors[s]}
            continue
        counts = sp.class_counts()
        per = f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}-{counts.max()}"
        shape = "x".join(map(str, sp.image_shape))
        src = _source(dataset, root, s)
        print(f"{s:<6} {sp.num_classes:>7} {len(sp):>8} {shape:>12} {per:>11}  {src}")
        summary["splits"][s] = {
            "classes": sp.num_classes, "images": len(sp), "image_shape": list(sp.image_shape),
            "images_per_class_min": int(counts.min()), "images_per_class_max": int(counts.max()),
            "pixel_mean": float(np.asarray(sp.images[: min(len(sp), 2000)]).mean() / 255),
            "source": src, "first_classes": list(sp.class_names[:5])}
    fig = _grid(splits, int(args.per_row), int(args.seed),
                f"{dataset}: per split (row), {int(args.per_row)} classes drawn at random (all if fewer; "
                f"of {', '.join(f'{s} {sp.num_classes}' for s, sp in splits.items() if sp is not None)}), "
                f"one random image of each; seed {args.seed}")
    save_figure(out, fig)
    write_json(out.with_suffix(".json"), summary)
    print(f"sample grid: {out}   summary: {out.with_suffix('.json')}")
    return 0
