"""Turn (question, retrieved passages, answer) into one token sequence with known passage spans.

The decoder-only reader sees the question and the K passages concatenated into one prompt
("input reformulation"), then the answer. Attention distillation needs to know exactly which
token positions belong to which passage, so the prompt is assembled from separately tokenised
pieces and the offsets are recorded as the pieces are appended, instead of being recovered from
character offsets afterwards (which breaks on BPE merges across piece boundaries).

Layout (``{...}`` are template fields; only the passage *content* tokens count as the passage span,
so index markers, newlines and chat-role tokens, which act as attention sinks, are excluded)::

    <chat prefix> {header: question} [1] <title | text> \n [2] <...> \n {footer: question} <chat suffix>
    <answer> <end of turn>
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.records import Passage
from ..errors import InputError

_SENTINEL = "\x00ATTNRAG_CONTENT\x00"


@dataclass
class PromptConfig:
    """Everything that shapes the reader's input. Stored in each run's config.

    Attributes:
        system: system message for chat models (replaces the model's default one, which is longer).
        header: text before the passages; ``{question}`` is substituted.
        passage_marker: text before each passage; ``{rank}`` (1-based) is substituted.
        passage_text: how a passage is rendered; ``{title}`` and ``{text}`` are substituted.
        footer: text after the passages and before the answer; ``{question}`` is substituted.
        max_passage_tokens: per-passage token budget; longer passages are truncated (documented
            behaviour, counted in ``ReaderBatch.truncated_passages``), never dropped.
        max_answer_tokens: answers longer than this are truncated for teacher forcing.
        use_chat_template: wrap the prompt in the tokenizer's chat template when it has one.
    """

    system: str = "Answer the question with a few words taken from the passages."
    header: str = "Question: {question}\nPassages:\n"
    passage_marker: str = "[{rank}] "
    passage_text: str = "{title} | {text}"
    footer: str = "Question: {question}\nShort answer:"
    max_passage_tokens: int = 64
    max_answer_tokens: int = 24
    use_chat_template: bool = True


@dataclass
class EncodedPrompt:
    """One example's token ids and the positions the distillation and the loss need."""

    input_ids: list[int]
    passage_spans: list[tuple[int, int]]  # [start, end) of each passage's content tokens
    answer_span: tuple[int, int] | None  # [start, end) of the answer content tokens (no end-of-turn)
    label_span: tuple[int, int] | None  # tokens that carry LM loss: answer + end-of-turn token
    truncated_passages: int = 0
    question_span: tuple[int, int] | None = None  # the question tokens in the footer
    meta: dict = field(default_factory=dict)


class PromptBuilder:
    """Tokenises prompts piece by piece so that passage and answer offsets are exact."""

    def __init__(self, tokenizer, config: PromptConfig | None = None) -> None:
        self.tokenizer = tokenizer
        self.config = config or PromptConfig()
        self._prefix_ids, self._suffix_ids, self._end_ids = self._chat_wrapping()

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _chat_wrapping(self) -> tuple[list[int], list[int], list[int]]:
        """Split the chat template around a sentinel to get the token ids before and after the user turn."""
        tok = self.tokenizer
        end_ids: list[int] = [tok.eos_token_id] if tok.eos_token_id is not None else []
        if self.config.use_chat_template and getattr(tok, "chat_template", None):
            messages = [{"role": "user", "content": _SENTINEL}]
            if self.config.system:
                messages.insert(0, {"role": "system", "content": self.config.system})
            rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            before, _, after = rendered.partition(_SENTINEL)
            return self._encode(before), self._encode(after), end_ids
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        return bos, self._encode(" "), end_ids

    @property
    def end_ids(self) -> list[int]:
        return self._end_ids

    def encode(self, question: str, passages: list[Passage], answer: str | None = None) -> EncodedPrompt:
        """Build the prompt; with ``answer`` the sequence ends with the answer and the end-of-turn token."""
        cfg = self.config
        ids = list(self._prefix_ids)
        ids += self._encode(cfg.header.format(question=question))
        spans: list[tuple[int, int]] = []
        truncated = 0
        for rank, passage in enumerate(passages, start=1):
            ids += self._encode(cfg.passage_marker.format(rank=rank))
            content = self._encode(cfg.passage_text.format(title=passage.title, text=passage.text))
            if len(content) > cfg.max_passage_tokens:
                content = content[: cfg.max_passage_tokens]
                truncated += 1
            spans.append((len(ids), len(ids) + len(content)))
            ids += content
            ids += self._encode("\n")
        footer = cfg.footer.format(question=question)
        q_at = footer.find(question) if question else -1
        if q_at >= 0:
            ids += self._encode(footer[:q_at])
            q_start = len(ids)
            ids += self._encode(question)
            question_span = (q_start, len(ids))
            ids += self._encode(footer[q_at + len(question) :])
        else:
            ids += self._encode(footer)
            question_span = None
        ids += self._suffix_ids
        answer_span = label_span = None
        if answer is not None:
            answer_ids = self._encode(answer.strip())
            if not answer_ids:
                raise InputError("the answer is empty: teacher forcing needs at least one answer token",
                                 field="answers")
            answer_ids = answer_ids[: cfg.max_answer_tokens]
            start = len(ids)
            ids += answer_ids
            answer_span = (start, len(ids))
            ids += self._end_ids
            label_span = (start, len(ids))
        return EncodedPrompt(ids, spans, answer_span, label_span, truncated, question_span)
