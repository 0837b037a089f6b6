"""One declarative table per model family (``FAMILY``), read by :mod:`txmerge.core.spec`.

A new family is a new module here holding a ``FAMILY = Family(...)``; nothing else changes.
"""
