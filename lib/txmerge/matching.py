"""Moved to :mod:`txmerge.methods.matchers.correlation` (this old name is an alias, kept for one release)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("txmerge.methods.matchers.correlation")
