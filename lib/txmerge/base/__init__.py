"""The base layer: errors, preset names, locations and the result cache, the Hugging Face Hub, precision.

Imports nothing else of txmerge; every other layer may import it."""
