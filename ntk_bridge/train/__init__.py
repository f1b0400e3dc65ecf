"""Few-shot training on real images: backbones, algorithms, the training loop and evaluation.

Modules (one idea each):

- ``models``: the Conv-4 and ResNet-12 (DropBlock) backbones in flax linen.
- ``config``: the typed run configuration, read from JSON (one file per paper setting).
- ``algorithms``: the algorithm registry and the ``Algorithm`` interface; MTL lives here,
  the GBML baselines in ``gbml``.
- ``heads``: test-time heads on frozen features (batched logistic regression, prototypes, ridge).
- ``evaluation``: episode evaluation with a 95% confidence interval.
- ``loop``: the training loop with checkpoints, schedules, early stopping and run folders.

Nothing heavy is imported here, so ``import ntk_bridge.train`` is instant.
"""
