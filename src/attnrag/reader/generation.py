"""The batching loop both readers share for greedy short-answer generation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def generate_answers(n_questions: int, passages: Sequence[Sequence], batch_size: int, tokenizer,
                     generate_chunk: Callable[[list[int]], torch.Tensor], progress: bool = False) -> list[str]:
    """Run ``generate_chunk`` over batches of question indices and decode the first line of each answer.

    Questions are grouped by passage count so a batch pads little; ``generate_chunk(indices)`` returns
    the generated token rows (new tokens only) in the order of ``indices``.
    """
    from tqdm.auto import tqdm

    outputs: list[str] = [""] * n_questions
    order = sorted(range(n_questions), key=lambda i: len(passages[i]))
    for start in tqdm(range(0, len(order), batch_size), desc="generate", disable=not progress, unit="batch"):
        chunk = order[start : start + batch_size]
        for i, row in zip(chunk, generate_chunk(chunk), strict=True):
            outputs[i] = tokenizer.decode(row, skip_special_tokens=True).strip().split("\n")[0].strip()
    return outputs
