"""The hybrid's tuning constants, declared once and light (no numpy, FAISS or torch), so the command
line, the API, the trainer, the paper grid and the scripts all read the same values."""

#: the lexical weights a dev split chooses among (BM25's share of the convex fusion)
WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))
#: passages taken from each side before fusing
DEFAULT_DEPTH = 100

__all__ = ["DEFAULT_DEPTH", "WEIGHT_GRID"]
