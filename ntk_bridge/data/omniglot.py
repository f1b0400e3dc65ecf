"""Omniglot read straight from the official zip files, split by alphabet.

Accepted zips in ``root`` (any subset): ``images_background.zip``, ``images_evaluation.zip``,
``images_background_small1.zip``, ``images_background_small2.zip``; each holds
``<zip stem>/<Alphabet>/characterNN/<drawer>_<NN>.png`` (105x105, 1-bit, 20 drawers).

Characters found in several zips (Greek and Latin are in both small sets; the small sets are
subsets of the full background set) are kept once, keyed by ``Alphabet/characterNN``, after
checking that every drawer file is byte-identical (else a one-line error).

Splits (always by alphabet, never by drawer):

* with ``images_evaluation.zip``: evaluation alphabets -> test; background alphabets -> train,
  except every 6th background alphabet in sorted order (positions 5, 11, 17, ...) -> val
  (5 of the 30 official background alphabets).
* with only the small background zips (8 alphabets, 242 characters, 4,840 images):
  train = Balinese, Greek, Japanese_(katakana), Latin, Sanskrit (163 characters),
  val = Tagalog (17 characters), test = Early_Aramaic, Korean (62 characters).
* with only ``images_background.zip`` (30 alphabets): the same every-6th val rule, and the
  test alphabets are every 6th alphabet starting at position 2 (2, 8, 14, ...).

Images are resized to ``image_size`` (28 by default; PIL LANCZOS, antialiased) and inverted
by default so strokes are bright (255) on a black (0) background, which makes zero padding in
random crops look like background. ``rotations=True`` adds 90/180/270 degree rotated copies
as new classes: class ``c`` rotated by ``r*90`` degrees gets id ``r*C + c`` and name
``"<name>/rot<deg>"`` (the usual protocol).
"""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import numpy as np

from ntk_bridge.data.base import FewShotSplit, check_root, check_split, default_omniglot_root
from ntk_bridge.errors import BridgeError

__all__ = ["OMNIGLOT_ZIPS", "SMALL_SPLIT", "OMNIGLOT_URLS", "find_omniglot_zips",
           "omniglot_index", "omniglot_alphabet_split", "load_omniglot", "default_omniglot_root"]

OMNIGLOT_ZIPS = ("images_background.zip", "images_evaluation.zip",
                 "images_background_small1.zip", "images_background_small2.zip")
OMNIGLOT_URLS = {z: f"https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{z}"
                 for z in OMNIGLOT_ZIPS}

# Default alphabet split when only the two small background zips are present.
SMALL_SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("Balinese", "Greek", "Japanese_(katakana)", "Latin", "Sanskrit"),
    "val": ("Tagalog",),
    "test": ("Early_Aramaic", "Korean"),
}

_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, tuple[str, ...]]] = {}
_CACHE_LOCK = threading.Lock()


def find_omniglot_zips(root) -> dict[str, Path]:
    """Map zip name -> path for the official Omniglot zips present in ``root``."""
    root = check_root(root, "omniglot")
    found = {z: root / z for z in OMNIGLOT_ZIPS if (root / z).is_file()}
    if not found:
        raise BridgeError(f"no Omniglot zip in {str(root)!r}: put one or more of "
                          f"{', '.join(OMNIGLOT_ZIPS)} there (from "
                          "https://github.com/brendenlake/omniglot/tree/master/python)")
    return found


def _members(zpath: Path) -> dict[tuple[str, str], list[zipfile.ZipInfo]]:
    """``(alphabet, character) -> [png ZipInfo sorted by name]`` of one zip."""
    out: dict[tuple[str, str], list[zipfile.ZipInfo]] = {}
    try:
        zf = zipfile.ZipFile(zpath)
    except zipfile.BadZipFile:
        raise BridgeError(f"{str(zpath)!r} is not a zip file (truncated or an HTML page?); "
                          "download it again") from None
    with zf:
        for info in zf.infolist():
            parts = info.filename.strip("/").split("/")
            if info.is_dir() or not parts[-1].lower().endswith(".png"):
                continue
            if len(parts) < 3:
                continue
            out.setdefault((parts[-3], parts[-2]), []).append(info)
    for infos in out.values():
        infos.sort(key=lambda i: i.filename.rsplit("/", 1)[-1])
    if not out:
        raise BridgeError(f"{str(zpath)!r} holds no <Alphabet>/<character>/<file>.png images; "
                          "is it an Omniglot zip?")
    return out


def omniglot_index(zips: dict[str, Path]) -> dict[tuple[str, str], tuple[Path, list[str], str]]:
    """Deduplicated characters: ``(alphabet, character) -> (zip path, member names, origin)``.

    origin is "evaluation" for images_evaluation.zip and "background" otherwise. A character
    present in several zips must have the same drawer files with byte-identical content.
    """
    index: dict[tuple[str, str], tuple[Path, list[str], str]] = {}
    handles: dict[Path, zipfile.ZipFile] = {}
    try:
        for zname in OMNIGLOT_ZIPS:  # fixed order: full background, evaluation, then small sets
            if zname not in zips:
                continue
            origin = "evaluation" if zname == "images_evaluation.zip" else "background"
            members = _members(zips[zname])
            for key, infos in members.items():
                names = [i.filename for i in infos]
                if key not in index:
                    index[key] = (zips[zname], names, origin)
                    continue
                other_zip, other_names, other_origin = index[key]
                for z in (other_zip, zips[zname]):
                    if z not in handles:
                        handles[z] = zipfile.ZipFile(z)
                _check_duplicate(key, handles[other_zip], other_names, handles[zips[zname]], names)
                if other_origin != origin:
                    raise BridgeError(f"character {'/'.join(key)} is in both the background and "
                                      "the evaluation zips; these are not the official Omniglot zips")
    finally:
        for zf in handles.values():
            zf.close()
    return index


def _check_duplicate(key, za: zipfile.ZipFile, names_a: list[str], zb: zipfile.ZipFile,
                     names_b: list[str]) -> None:
    """Raise unless both copies of a character hold the same files, byte for byte."""
    base_a = [n.rsplit("/", 1)[-1] for n in names_a]
    base_b = [n.rsplit("/", 1)[-1] for n in names_b]
    where = (f"character {'/'.join(key)} in {Path(za.filename).name} and "
             f"{Path(zb.filename).name}")
    if base_a != base_b:
        raise BridgeError(f"{where} have different drawer files ({len(base_a)} vs {len(base_b)}); "
                          "one zip is damaged, download it again")
    for na, nb in zip(names_a, names_b):
        if read_member(za, na, Path(za.filename)) != read_member(zb, nb, Path(zb.filename)):
            raise BridgeError(f"{where} differ in {na.rsplit('/', 1)[-1]}; one zip is damaged, "
                              "download it again")


def omniglot_alphabet_split(index) -> dict[str, tuple[str, ...]]:
    """Alphabets of each split for the characters in ``index`` (rules in the module docstring)."""
    background = sorted({a for (a, _), (_, _, o) in index.items() if o == "background"})
    evaluation = sorted({a for (a, _), (_, _, o) in index.items() if o == "evaluation"})
    small = set(a for names in SMALL_SPLIT.values() for a in names)
    if evaluation:
        val = tuple(a for i, a in enumerate(background) if i % 6 == 5)
        return {"train": tuple(a for a in background if a not in val), "val": val,
                "test": tuple(evaluation)}
    if set(background) <= small:
        return {s: tuple(a for a in names if a in background) for s, names in SMALL_SPLIT.items()}
    val = tuple(a for i, a in enumerate(background) if i % 6 == 5)
    test = tuple(a for i, a in enumerate(background) if i % 6 == 2)
    return {"train": tuple(a for a in background if a not in val and a not in test),
            "val": val, "test": test}


def read_member(zf: zipfile.ZipFile, name: str, zpath: Path) -> bytes:
    """The bytes of member ``name``; a damaged zip (a member failing its CRC-32, a broken deflate
    stream, a truncated file) is one BridgeError line naming the zip and the member."""
    import zlib
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        what = "fails its CRC-32 check" if "CRC" in str(err) else f"cannot be read ({err})"
        raise BridgeError(f"{zpath} is damaged: its member {name} {what}; download the zip again "
                          "(`ntk-bridge data info --dataset omniglot` says from where)") from None


def _decode(data: bytes, image_size: int, invert: bool, what: str = "in the zip") -> np.ndarray:
    from PIL import Image

    from ntk_bridge.data.formats import open_image
    im = open_image(data, what, "L")
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.Resampling.LANCZOS)
    arr = np.asarray(im, dtype=np.uint8)
    return 255 - arr if invert else arr


def _decode_split(index, alphabets, image_size: int, invert: bool):
    keys = sorted(k for k in index if k[0] in set(alphabets))
    images, labels, names = [], [], []
    open_zips: dict[Path, zipfile.ZipFile] = {}
    try:
        for label, key in enumerate(keys):
            zpath, members, _ = index[key]
            zf = open_zips.get(zpath) or open_zips.setdefault(zpath, zipfile.ZipFile(zpath))
            for m in members:
                images.append(_decode(read_member(zf, m, zpath), image_size, invert, f"{m} in {zpath}"))
                labels.append(label)
            names.append(f"{key[0]}/{key[1]}")
    finally:
        for zf in open_zips.values():
            zf.close()
    x = np.stack(images)[..., None] if images else np.zeros((0, image_size, image_size, 1), np.uint8)
    return x, np.asarray(labels, dtype=np.int64), tuple(names)


def load_omniglot(root=None, split: str = "train", *, image_size: int = 28,
                  rotations: bool = False, invert: bool = True) -> FewShotSplit:
    """Split ``split`` of Omniglot from the zips in ``root`` (default: :func:`default_omniglot_root`).

    Returns uint8 images (N, image_size, image_size, 1); with ``rotations`` 4x the classes.
    Decoded arrays are kept in memory (keyed by zip paths, sizes and mtimes), so loading the
    same split twice in one process decodes once.
    """
    split = check_split(split)
    if not isinstance(image_size, (int, np.integer)) or not 4 <= int(image_size) <= 512:
        raise BridgeError(f"omniglot image_size must be an integer in 4..512, got {image_size!r}")
    zips = find_omniglot_zips(default_omniglot_root() if root is None else root)
    stamp = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in sorted(zips.values()))
    key = (stamp, split, int(image_size), bool(invert))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        index = omniglot_index(zips)
        alphabets = omniglot_alphabet_split(index)[split]
        if not alphabets:
            raise BridgeError(f"the Omniglot zips in {str(next(iter(zips.values())).parent)!r} "
                              f"leave no alphabet for the {split} split; add "
                              "images_evaluation.zip or both small background zips")
        hit = _decode_split(index, alphabets, int(image_size), bool(invert))
        with _CACHE_LOCK:
            _CACHE[key] = hit
    x, y, names = hit
    x, y = x.copy(), y.copy()
    if rotations:
        n_cls = len(names)
        x = np.concatenate([np.rot90(x, r, axes=(1, 2)) for r in range(4)])
        y = np.concatenate([y + r * n_cls for r in range(4)])
        names = tuple(f"{n}/rot{r * 90:03d}" for r in range(4) for n in names)
        x = np.ascontiguousarray(x)
    return FewShotSplit(images=x, labels=y, class_names=names, name=f"omniglot/{split}")
