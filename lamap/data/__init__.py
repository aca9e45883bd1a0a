"""Data files shipped with lamap (SNAP coefficients, demo weights)."""
