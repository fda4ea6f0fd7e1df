"""attnrag: train retrievers from a reader's attention, and tell whether it works.

The package reads in the order the data flows:
``data`` -> ``retrieval`` -> ``reader`` -> ``distill`` -> ``train`` -> ``evaluate`` -> ``analysis``.
"""

__version__ = "0.1.0"
