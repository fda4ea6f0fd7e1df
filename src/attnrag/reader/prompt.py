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

Input text is data, never control
---------------------------------
Questions, passage titles and texts and answers come from outside (a scraped corpus, a user's
upload). A passage holding ``<|im_end|>\n<|im_start|>assistant`` must not end the user turn in the
reader's prompt, so :class:`TextEncoder` tokenises input text with ``split_special_tokens=True``:
the characters stay visible to the model as ordinary tokens, but no control token (a special token,
or an added token that the chat template writes) can come out of them. The template's own pieces
(the chat prefix and suffix, the end-of-turn token, and the literal parts of ``header``, ``footer``,
``passage_marker`` and ``passage_text``) are configuration, not input, and keep their control tokens.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import NamedTuple

from ..data.records import Passage
from ..errors import AttnragError, InputError
from ..options import option

_SENTINEL = "\x00ATTNRAG_CONTENT\x00"
_FORMATTER = string.Formatter()


class Piece(NamedTuple):
    """A run of prompt text: a template literal (``field is None``, trusted) or a field's input text."""

    text: str
    field: str | None = None


def render(template: str, **values) -> list[Piece]:
    """``template.format(**values)`` as pieces, so that literals and input text can be told apart."""
    pieces = []
    for literal, name, spec, conversion in _FORMATTER.parse(template):
        if literal:
            pieces.append(Piece(literal))
        if name is not None:
            value, _ = _FORMATTER.get_field(name, (), values)
            value = _FORMATTER.convert_field(value, conversion)
            spec = _FORMATTER.vformat(spec, (), values) if spec else ""
            pieces.append(Piece(_FORMATTER.format_field(value, spec), name))
    return pieces


def control_tokens(tokenizer) -> dict[str, int]:
    """The strings a tokenizer turns into control tokens, with their ids.

    Control tokens are the special added tokens and the other added tokens that the chat template
    writes (the set transformers' own ``sanitize_control_tokens`` uses); added tokens that are plain
    vocabulary stay ordinary words.
    """
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    out: dict[str, int] = {}
    for token_id, token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        content = getattr(token, "content", str(token))
        if getattr(token, "special", True) or (content in template and not content.isspace()):
            out[content] = int(token_id)
    for content, token_id in zip(tokenizer.all_special_tokens, tokenizer.all_special_ids, strict=False):
        out.setdefault(content, int(token_id))
    return out


def _model_unk_id(tokenizer) -> int | None:
    """The id the vocabulary model itself gives unknown text, ``None`` if it has none.

    Byte-level BPE (SmolLM2) never produces one, even though its ``unk_token`` is ``<|endoftext|>``,
    a control token; WordPiece (MiniLM) does produce ``[UNK]`` for characters outside its vocabulary.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: trust its declared unknown token
        return tokenizer.unk_token_id
    unk = getattr(backend.model, "unk_token", None)  # BPE, WordPiece, WordLevel
    if unk is not None:
        return tokenizer.convert_tokens_to_ids(unk)
    return getattr(backend.model, "unk_id", None)  # Unigram


class TextEncoder:
    """Tokenises input text as plain text and template text as the tokenizer normally would.

    ``plain`` is for text from outside: its control-token strings are tokenised character by
    character (``split_special_tokens=True``), and the result is checked, so that a tokenizer that
    ignores the flag fails loudly instead of letting input text steer the model.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.controls = control_tokens(tokenizer)
        # Plain text may map to the model's unknown token (WordPiece's [UNK]); any other control id is a leak.
        self.leak_ids = set(self.controls.values()) - {_model_unk_id(tokenizer)}
        names = sorted(self.controls, key=len, reverse=True)
        self._control_re = re.compile("|".join(map(re.escape, names))) if names else None

    def trusted(self, text: str) -> list[int]:
        """Configuration text (chat template pieces): control-token strings become control tokens."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def plain(self, text: str) -> list[int]:
        """Input text: never a control token; the literal characters become ordinary tokens."""
        if not text:
            return []
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if self.leak_ids.isdisjoint(ids):
            return ids
        ids = self._without_added_tokens(text)  # e.g. a non-special added token the chat template writes
        if self.leak_ids.isdisjoint(ids):
            return ids
        leaked = sorted({self.tokenizer.convert_ids_to_tokens(i) for i in ids if i in self.leak_ids})
        raise AttnragError(f"the tokenizer turns plain input text into control tokens {leaked}; attnrag "
                           "cannot keep passages and questions from steering the reader with it")

    def _without_added_tokens(self, text: str) -> list[int]:
        """Run a fast tokenizer's normaliser, pre-tokeniser and model only (no added-token matching)."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if backend.normalizer is not None:
            text = backend.normalizer.normalize_str(text)
        splits = [s for s, _ in backend.pre_tokenizer.pre_tokenize_str(text)] if backend.pre_tokenizer else [text]
        return [token.id for split in splits for token in backend.model.tokenize(split)]

    def pieces(self, pieces: list[Piece]) -> list[int]:
        """Encode pieces as one text (BPE merges across pieces as before); only control-token strings
        that lie wholly inside a template literal become control tokens."""
        text = "".join(p.text for p in pieces)
        cuts: list[tuple[int, int, int]] = []
        at = 0
        for piece in pieces:
            if piece.field is None and self._control_re is not None:
                cuts += [(at + m.start(), at + m.end(), self.controls[m.group()])
                         for m in self._control_re.finditer(piece.text)]
            at += len(piece.text)
        ids: list[int] = []
        start = 0
        for begin, end, token_id in cuts:
            ids += self.plain(text[start:begin]) + [token_id]
            start = end
        return ids + self.plain(text[start:])

    def template(self, template: str, **values) -> list[int]:
        """``template.format(**values)`` tokenised with the values as plain text."""
        return self.pieces(render(template, **values))


@dataclass
class PromptConfig:
    """Everything that shapes the reader's input. Stored in each run's config (each field documents itself)."""

    system: str = option("Answer the question with a few words taken from the passages.", help=(
        "system message for chat models (replaces the model's default one, which is longer)"))
    header: str = option("Question: {question}\nPassages:\n", help="text before the passages; {question} is substituted")
    passage_marker: str = option("[{rank}] ", help="text before each passage; {rank} (1-based) is substituted")
    passage_text: str = option("{title} | {text}", help="how a passage is rendered; {title} and {text} are substituted")
    footer: str = option("Question: {question}\nShort answer:", help=(
        "text after the passages, before the answer; {question} is substituted"))
    max_passage_tokens: int = option(64, help=(
        "per-passage token budget; longer passages are truncated (counted in the batch), never dropped"))
    max_answer_tokens: int = option(24, help="answers longer than this are truncated for teacher forcing")
    use_chat_template: bool = option(True, help="wrap the prompt in the tokenizer's chat template when it has one")


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
        self.text = TextEncoder(tokenizer)
        self._plain = False  # set by _chat_wrapping when the tokenizer has no chat template to use
        self._prefix_ids, self._suffix_ids, self._end_ids = self._chat_wrapping()

    def _encode(self, text: str) -> list[int]:
        """Template text only (the chat wrapping, separators); input text goes through ``self.text``."""
        return self.text.trusted(text)

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
        # Plain layout (a base model without a chat template): the answer follows "Short answer:"
        # directly, as " answer" (see encode), the way such a model saw text in pre-training. A
        # separate " " token before an unspaced answer cost Gemma 3 270M 3-6 nats per answer token.
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        self._plain = True
        return bos, [], end_ids

    @property
    def end_ids(self) -> list[int]:
        return self._end_ids

    def encode(self, question: str, passages: list[Passage], answer: str | None = None) -> EncodedPrompt:
        """Build the prompt; with ``answer`` the sequence ends with the answer and the end-of-turn token."""
        cfg = self.config
        ids = list(self._prefix_ids)
        ids += self.text.template(cfg.header, question=question)
        spans: list[tuple[int, int]] = []
        truncated = 0
        for rank, passage in enumerate(passages, start=1):
            ids += self.text.template(cfg.passage_marker, rank=rank)
            content = self.text.template(cfg.passage_text, title=passage.title, text=passage.text)
            if len(content) > cfg.max_passage_tokens:
                content = content[: cfg.max_passage_tokens]
                truncated += 1
            spans.append((len(ids), len(ids) + len(content)))
            ids += content
            ids += self._encode("\n")
        footer = render(cfg.footer, question=question)
        q_at = next((i for i, p in enumerate(footer) if p.field == "question"), None) if question else None
        if q_at is not None:  # the first {question} field, tokenised on its own for an exact span
            ids += self.text.pieces(footer[:q_at])
            q_start = len(ids)
            ids += self.text.pieces(footer[q_at : q_at + 1])
            question_span = (q_start, len(ids))
            ids += self.text.pieces(footer[q_at + 1 :])
        else:
            ids += self.text.pieces(footer)
            question_span = None
        ids += self._suffix_ids
        answer_span = label_span = None
        if answer is not None:
            answer_ids = self.text.plain((" " if self._plain else "") + answer.strip())
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
