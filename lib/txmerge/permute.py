"""Moved to :mod:`txmerge.core.permute` (this old name is an alias, kept for one release)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("txmerge.core.permute")
