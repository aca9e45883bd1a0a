"""Reference implementations that tests compare lamap against; not part of the package.

- :mod:`tests.oracles.stac`: STAC item-search semantics applied directly to item dicts.
- :mod:`tests.oracles.validate`: offline STAC validation with pystac's validator and the
  schemas stored in ``tests/data/schemas``.
"""
