"""ntk_bridge: how close are multi-task learning and gradient-based meta-learning?

Kernel side (``kernels``, ``tasks``, ``inner_loop``, ``predictors``, ``metrics``) follows
``docs/theory.md``; the finite-width side lives in ``finite``; the few-shot data layer in
``data``; the trainers in ``train``. Importing the package is cheap: heavy libraries (JAX,
neural-tangents, TensorFlow) load only in the modules that need them.
"""

from ntk_bridge.errors import BridgeError

__all__ = ["BridgeError"]
__version__ = "0.1.0"
