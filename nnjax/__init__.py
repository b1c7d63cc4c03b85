"""nnjax: classic and modern neural networks as functional JAX/Flax.

Submodules are imported on use (``import nnjax.train``) so that ``import nnjax`` stays fast.
"""

__version__ = "0.1.0"
