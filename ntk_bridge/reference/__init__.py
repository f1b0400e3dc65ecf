"""neural-tangents, the float64 reference and the bridge for users' own ``stax`` networks: the only
package that imports it (:mod:`.compat` makes 0.6.5 import on current JAX; :mod:`.stax` turns any
``kernel_fn`` into :class:`~ntk_bridge.engine.spec.Kernels`; :mod:`.conv` is the conv engine's
reference). No command's runtime path imports this package.
"""
