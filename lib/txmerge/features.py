"""Moved to :mod:`txmerge.core.features` (this old name is an alias, kept for one release)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("txmerge.core.features")
