"""txmerge: align and merge BERT models trained from different seeds (Verma & Elbayad, TMLR 2024)."""

__version__ = "0.1.0"
