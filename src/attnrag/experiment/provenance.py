"""Kept for imports written before provenance moved to the bottom layer (:mod:`attnrag.provenance`)."""

from ..provenance import Provenance, machine, source_commit, with_provenance, write_result

__all__ = ["Provenance", "machine", "source_commit", "with_provenance", "write_result"]
