"""Generation stops once each answer's first line is complete, and the answers do not change.

A tiny random Llama (the real SmolLM2 tokenizer) is steered by a forward hook that forces chosen
tokens at chosen steps, so each row meets one case: an answer then a newline, a *leading* newline
(stripped, so it must not stop), no newline at all, and an answer that runs to the token limit.
"""

from __future__ import annotations

import torch

from attnrag.data.records import Passage
from attnrag.reader import generation
from attnrag.reader.generation import FirstLineDone, first_line

from helpers import tiny_reader

X, Y, NEWLINE = 104, 105, 198  # "x", "y", "\n" in the SmolLM2 tokenizer
QUESTIONS = [f"What is item {i}?" for i in range(4)]
PASSAGES = [[Passage(f"p{i}", f"T{i}", f"Item {i} is a thing number {i * 7} in the list.")] for i in range(4)]


def test_first_line_done_on_hand_built_rows():
    reader = tiny_reader()
    tok = reader.tokenizer
    assert tok.decode([NEWLINE]) == "\n" and tok.decode([X, Y]) == "xy"
    rows = torch.tensor([[7, 7, X, NEWLINE], [7, 7, NEWLINE, X], [7, 7, NEWLINE, NEWLINE], [7, 7, X, Y]])
    assert FirstLineDone(tok, prompt_length=2)(rows, None).tolist() == [True, False, False, False]
    assert [first_line(t) for t in ("x\ny", "\n\nxy\nz", " \n ", "xy ")] == ["x", "xy", "", "xy"]


def test_stopping_early_gives_the_same_answers_and_does_stop(monkeypatch):
    reader = tiny_reader()
    script = {0: [X, NEWLINE], 1: [NEWLINE, X, Y, NEWLINE], 2: [], 3: [X, Y]}
    step = {"n": 0}

    def force(module, args, kwargs, output):
        step["n"] = 0 if kwargs["input_ids"].shape[1] > 1 else step["n"] + 1  # prefill, then one token a call
        for row, tokens in script.items():
            if step["n"] < len(tokens):
                output.logits[row, -1, tokens[step["n"]]] += 1e4
        return output

    reader.model.register_forward_hook(force, with_kwargs=True)
    stopped: list[list[bool]] = []
    call = FirstLineDone.__call__

    def spy(self, input_ids, scores, **kwargs):
        out = call(self, input_ids, scores, **kwargs)
        stopped.append(out.tolist())
        return out

    monkeypatch.setattr(generation.FirstLineDone, "__call__", spy)
    full = reader.generate(QUESTIONS, PASSAGES, max_new_tokens=10, batch_size=4, stop_at_first_line=False)
    assert stopped == []
    early = reader.generate(QUESTIONS, PASSAGES, max_new_tokens=10, batch_size=4)
    assert early == full
    assert full[0] == "x" and full[1] == "xy"  # the leading newline is stripped, not taken as the end
    assert stopped[1][0] and not stopped[1][1]  # row 0 stops after "x\n"; row 1's leading newline does not stop it
    assert stopped[3][1] and not any(s[2] for s in stopped)


def test_batches_are_formed_by_prompt_length():
    lengths = [9, 3, 7, 3, 12, 5, 8]
    chunks: list[list[int]] = []

    def record(prompts):
        chunks.append(list(prompts))
        return [torch.tensor([X]) for _ in prompts]

    reader = tiny_reader()
    out = generation.generate_answers(lengths, lengths, 3, reader.tokenizer, record)
    assert chunks == [[3, 3, 5], [7, 8, 9], [12]]  # each batch pads only to its own longest prompt
    assert out == ["x"] * len(lengths)


def test_the_order_and_the_batch_do_not_change_an_answer():
    """Sorting by length puts a prompt in another batch, with other padding: the answers stay the same,
    whatever the order, and equal those of each prompt generated alone (no padding at all)."""
    reader = tiny_reader(seed=5)  # a random model whose answers are not all empty for these prompts
    questions = [f"What is item {i}?" + " Tell me please." * (i % 3) for i in range(7)]
    passages = [[Passage(f"p{i}{j}", f"T{i}", f"Item {i} is number {i * 7} of {j} things. " * (1 + (i + j) % 3))
                 for j in range(1 + i % 3)] for i in range(7)]
    answers = reader.generate(questions, passages, max_new_tokens=6, batch_size=3)
    perm = [3, 5, 0, 6, 1, 4, 2]
    shuffled = reader.generate([questions[i] for i in perm], [passages[i] for i in perm], max_new_tokens=6,
                               batch_size=3)
    assert shuffled == [answers[i] for i in perm]
    alone = [reader.generate([q], [ps], max_new_tokens=6, batch_size=1)[0] for q, ps in zip(questions, passages)]
    assert alone == answers
    assert len(set(answers)) > 1  # the prompts do differ in what they make the model say
