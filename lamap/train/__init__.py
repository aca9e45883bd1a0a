"""Training the fused model on the same cubes that mapping uses.

* :mod:`lamap.train.sample`: which dates make training samples (S2 at t plus two earlier
  S2 days and S1), and the patch lattice of the training grid;
* :mod:`lamap.train.cache`: the Zarr training cache of patches (``build_cache``,
  ``open_cache``) with its splits;
* :mod:`lamap.train.data`: the PyTorch dataset that streams patches from the cache.

Nothing heavy is imported here: import the submodules you need.
"""

from __future__ import annotations

__all__: list[str] = []
