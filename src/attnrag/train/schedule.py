"""Learning-rate schedules and ATLAS-style index refresh schedules."""

from __future__ import annotations

import math

import torch

from ..errors import InputError


def lr_lambda(total_steps: int, warmup_steps: int, kind: str = "linear"):
    """Multiplier for ``LambdaLR``: linear warm-up, then linear / cosine decay to 0, or constant."""
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float, kind: str):
    warmup = int(round(total_steps * warmup_ratio))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, warmup, kind))


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
