"""Training registered models (:mod:`lamap.model.registry`) on the cubes mapping uses.

* :mod:`lamap.train.sample`: which dates make training samples (S2 at t plus two earlier
  S2 days and S1), the patch lattice of the training grid and the splits;
* :mod:`lamap.train.cache`: building the Zarr training cache of patches (``build_cache``),
  with its settings in :mod:`lamap.train.cache_options`;
* :mod:`lamap.train.patches`: the cache's format, its rows and reading it (``open_cache``,
  ``Cache``);
* :mod:`lamap.train.truth`: a demo world's truth, cut into the cache patch by patch;
* :mod:`lamap.train.data`: the PyTorch dataset that streams patches from the cache;
* :mod:`lamap.train.config`: the hyper-parameters of a run (``TrainConfig``);
* :mod:`lamap.train.state`: what changes while training, and the resumable state file;
* :mod:`lamap.train.metrics`: the one RMSE and R² accumulator (``ErrorSums``), for
  validation and evaluation alike;
* :mod:`lamap.train.stages`: what each architecture's stages train, and their losses;
* :mod:`lamap.train.loop`: the stages run in order, resumable (``train``, ``validate``);
* :mod:`lamap.train.uncertainty`: the observed LAI's error scale and the calibration of
  spreads;
* :mod:`lamap.train.baselines`: persistence, interpolation and pixel-wise regressions;
* :mod:`lamap.train.evaluate`: models side by side and the baselines scored split by split
  (``evaluate``; the models in :mod:`lamap.train.eval_models`), with results in
  :mod:`lamap.train.report`;
* :mod:`lamap.train.run`: ``lamap train`` and ``lamap evaluate`` as short orchestrators.

Nothing heavy is imported here: import the submodules you need.
"""

from __future__ import annotations

__all__: list[str] = []
