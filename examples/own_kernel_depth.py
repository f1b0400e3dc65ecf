"""The depth study on your own kernel: a neural-tangents stax network of your choosing.

Run:  python examples/own_kernel_depth.py      (about half a minute on a CPU; needs neural-tangents)

``nb.run_depth_study`` takes a function ``(depth, points) -> Kernels``; here it builds an Erf network with
biases in stax and reads its NTK and NNGP through ``nb.kernels_from_kernel_fn``. The same study
runs on the engine's own ReLU kernels (``nb.NetSpec``), whose NTK diagonal on the sphere is L + 1.
"""

import numpy as np

import ntk_bridge as nb

DEPTHS = [1, 2, 4, 8, 16]


def my_kernel(depth: int, points: np.ndarray) -> nb.Kernels:
    """[Dense(512, W_std=1.5, b_std=0.1), Erf] x depth, then a Dense(1) readout."""
    stax = nb.neural_tangents().stax      # neural-tangents 0.6.5 imports on current JAX through this shim

    layers = [stax.Dense(512, W_std=1.5, b_std=0.1), stax.Erf()] * depth
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1, W_std=1.0))
    return nb.kernels_from_kernel_fn(kernel_fn, points)


def main() -> None:
    family = nb.FamilyConfig(family="teacher", d=16, n_train_tasks=8, n_test_tasks=6, n_query=5, n_support=5)
    draws = [nb.make_tasks(family, seed) for seed in range(3)]

    relu = nb.depth_sweep(nb.NetSpec(depth=max(DEPTHS)), draws[0].points, depths=DEPTHS)
    print("engine ReLU kernel (no biases), NTK diagonal on the sphere vs L + 1:")
    for depth, g in relu.items():
        print(f"  L = {depth:2d}: {np.diag(g.ntk).mean():8.4f}  (L + 1 = {depth + 1})")

    for name, kernels in (("engine ReLU NetSpec", nb.NetSpec(depth=max(DEPTHS))), ("your stax Erf network", my_kernel)):
        frame = nb.run_depth_study(draws, kernels, depths=DEPTHS)
        table = frame.groupby(["pair", "depth"])[["d_rel", "d_tr", "err_a", "err_b", "err_head_only"]].mean()
        print(f"\n{name}: mean over {frame['draw'].nunique()} task draws ({family.describe()})")
        print(table.round(4).to_string())
        rates = nb.depth_summary(frame)[["pair", "rate_d_rel", "rate_d_tr"]]
        print("log-log rates over depth:\n" + rates.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
