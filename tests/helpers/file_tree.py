"""A snapshot of a folder, for asserting that a failed or refused command changed nothing."""

import os


def tree(root) -> dict:
    """{relative path: bytes or 'dir'} of everything under ``root``, hidden entries included."""
    out = {}
    for folder, dirs, files in os.walk(root):
        out.update({os.path.relpath(os.path.join(folder, d), root): "dir" for d in dirs})
        for f in files:
            with open(os.path.join(folder, f), "rb") as fh:
                out[os.path.relpath(os.path.join(folder, f), root)] = fh.read()
    return out
