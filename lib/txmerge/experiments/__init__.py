"""The experiments layer: cached experiments over seed pairs, the paper's numbers, claims and the verdict
rule. Imports every layer below it (``base`` … ``zoo``)."""
