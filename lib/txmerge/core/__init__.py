"""The core layer: the permutation spec of a model, feature statistics, applying and verifying maps,
interpolation and the losses. Imports only ``txmerge.base`` and ``txmerge.families``."""
