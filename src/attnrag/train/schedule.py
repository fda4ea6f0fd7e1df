"""Learning-rate schedules (transformers' own) and ATLAS-style index refresh schedules."""

from __future__ import annotations

import torch

from ..errors import InputError


# attnrag's names -> transformers' schedule names (``constant`` keeps the warm-up, as ours always did)
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float, kind: str):
    """transformers' schedule ``kind`` over ``total_steps`` with ``round(total_steps * warmup_ratio)``
    warm-up steps: linear warm-up from 0, then linear / cosine decay to 0, or constant."""
    from transformers import get_scheduler

    if kind not in SCHEDULES:
        raise InputError(f"expected one of {', '.join(SCHEDULES)}, got {kind!r}", field="scheduler")
    total = max(1, total_steps)
    return get_scheduler(SCHEDULES[kind], optimizer, num_warmup_steps=int(round(total * warmup_ratio)),
                         num_training_steps=total)


def parse_refresh_schedule(spec: str) -> list[tuple[int, int, int]]:
    """Parse ``"0-1000:500,1000-10000:2000"`` into ``[(start, end, every), ...]``.

    Between ``start`` (inclusive) and ``end`` (exclusive) the index is re-encoded every ``every`` steps,
    as in ATLAS's ``--refresh_index``.
    """
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            span, every = part.split(":")
            start, end = (int(x) for x in span.split("-"))
            every_ = int(every)
        except ValueError as exc:
            raise InputError(f"expected 'start-end:every[,...]', got {part!r}", field="refresh_schedule") from exc
        if start < 0 or end <= start or every_ < 1:
            raise InputError(f"need 0 <= start < end and every >= 1 in {part!r}", field="refresh_schedule")
        out.append((start, end, every_))
    return out


def should_refresh(step: int, schedule: list[tuple[int, int, int]]) -> bool:
    """True at a step > 0 where the schedule asks for a re-encoding of the passages."""
    return step > 0 and any(start <= step < end and (step - start) % every == 0 for start, end, every in schedule)
