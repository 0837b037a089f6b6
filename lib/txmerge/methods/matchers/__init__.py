"""One module per registered matcher, each holding ``MATCHER`` (see :mod:`txmerge.methods.registry`)."""
