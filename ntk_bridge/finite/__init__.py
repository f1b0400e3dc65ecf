"""Finite-width networks trained by gradient descent, next to the closed forms.

- :mod:`ntk_bridge.finite.training`: the finite networks (built once by
  :func:`ntk_bridge.engine.empirical.network`) trained with MTL (variants A and B), ANIL, MAML and plain
  NTK regression, and their test predictions after test-time adaptation;
- :mod:`ntk_bridge.finite.closed`: the matching closed forms of :mod:`ntk_bridge.closed_form.predictors`,
  with the f_0 terms and with the outer loop as discrete gradient steps;
- :mod:`ntk_bridge.finite.sweep`: the width sweep (relative error vs width, fitted slopes,
  MTL-vs-GBML distances, MTL-A influence) behind ``ntk-bridge width-sweep``;
- :mod:`ntk_bridge.finite.at_depth`: the per-depth sweeps combined (``width-sweep --combine``).

Importing this package imports nothing heavy; JAX and neural-tangents load in the submodules.
"""
