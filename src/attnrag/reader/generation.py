"""The batching loop both readers share for greedy short-answer generation, and when to stop."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import StoppingCriteria


def first_line(text: str) -> str:
    """The answer in a generated text: its first line once surrounding whitespace is stripped."""
    return text.strip().split("\n")[0].strip()


class FirstLineDone(StoppingCriteria):
    """Stops a sequence as soon as its answer (:func:`first_line`) can no longer change: once the
    generated text, leading whitespace stripped, holds a newline. Answers are cut there anyway, so
    the tokens generated after it were wasted; leading newlines do not stop it (they are stripped).
    The readers end generation at their end-of-turn tokens too; this stops the ones that write on.
    """

    def __init__(self, tokenizer, prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor(["\n" in t.lstrip() for t in texts], dtype=torch.bool, device=input_ids.device)


def generate_answers(prompts: Sequence, lengths: Sequence[int], batch_size: int, tokenizer,
                     generate_chunk: Callable[[list], torch.Tensor], progress: bool = False) -> list[str]:
    """Run ``generate_chunk`` over batches of encoded prompts and decode the first line of each answer.

    Prompts are batched in order of length (``lengths``, one per prompt: what a batch pads to), so a
    batch of short prompts is not padded to a long one: in a batch of mixed lengths every row computes
    the longest row's prefill. The order does not change an answer (prompts are left-padded, masked,
    and positioned from the mask; tests/test_generation.py checks a shuffled order gives the same
    answers). ``generate_chunk(prompts)`` returns the generated token rows (new tokens only) in the
    order of the prompts it is given.
    """
    from tqdm.auto import tqdm

    if len(lengths) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(lengths)} lengths")
    outputs: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    for start in tqdm(range(0, len(order), batch_size), desc="generate", disable=not progress, unit="batch"):
        chunk = order[start : start + batch_size]
        for i, row in zip(chunk, generate_chunk([prompts[i] for i in chunk]), strict=True):
            outputs[i] = first_line(tokenizer.decode(row, skip_special_tokens=True))
    return outputs
