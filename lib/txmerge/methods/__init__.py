"""The methods layer: the named merge methods, the matchers that turn two models into an alignment,
and ``align_pair``, the one entry point of the command line and the chapters. Imports ``base``, ``families``,
``core`` and ``data``."""
