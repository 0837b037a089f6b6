"""The chapters layer: what the book's notebooks call, the start-up sequence, parameter schemas and
presets, the paper preset's plan and prefetch, provenance and figures. The top of the library; only the
command line sits above it."""
