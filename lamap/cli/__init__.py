"""The ``lamap`` command line (a thin layer over :mod:`lamap`)."""
