"""Fusion-in-Decoder reader over any Hugging Face encoder-decoder (T5 family, BERT2BERT, ...).

Each of the K passages is encoded *on its own* together with the question::

    question: {question} title: {title} context: {text}

The K encoder outputs are concatenated along the sequence axis (``[B, K * Lp, d]``) and the decoder
cross-attends over all of them (Izacard & Grave, 2021). The teacher signal is the decoder's
**cross-attention** from the answer tokens to the encoder tokens, weighted by the value norms
(ATLAS's attention x value-norm score), as the paper's encoder-decoder reference does.

How the cross-attention is captured
-----------------------------------
In transformers 5.x every supported encoder-decoder routes its attention through the
attention-function interface (``ALL_ATTENTION_FUNCTIONS``): ``T5Attention`` does (the relative
position bias arrives as the ``position_bias`` keyword, and T5 passes ``scaling=1.0``, i.e. no
``1/sqrt(d)``), and so do ``BertSelfAttention`` / ``BertCrossAttention`` inside
``EncoderDecoderModel``. So the reader reuses :mod:`attnrag.reader.capture` unchanged: the model is
switched to ``attnrag_sdpa``, which computes every layer with SDPA and, for the layers marked as
cross-attention, recomputes only the ``A x S`` softmax rows of the answer queries (``A`` answer
tokens, ``S = K * Lp`` encoder tokens; memory ``heads x A x S`` per layer, never the full maps).
No forward hooks on q/k/v projections and no patched forwards are needed.

T5 cross-attention has *no* relative position bias in any layer (``T5LayerCrossAttention`` builds its
``T5Attention`` with ``has_relative_attention_bias=False``, so the bias it passes is all zeros); the
capture's logits ``q . k * scaling`` are therefore exactly the logits the model softmaxes. The tests
check the scores against eager ``output_attentions=True`` cross-attentions times value norms.

Which modules are cross-attention is decided by name (``EncDecAttention`` in T5, ``crossattention``
in BERT, ``encoder_attn`` in BART-likes, ``cross_attn``); the reader sets ``is_cross_attention =
True`` on them so that the capture never confuses a cross-attention layer with a self-attention
layer, even when the decoder and encoder lengths happen to be equal. A forward that captured fewer
layers than were marked raises instead of returning silently wrong scores.

Positions
---------
``passage_spans`` are positions in the *concatenated* encoder sequence (``k * Lp + t``) and cover the
passage content ``{title} context: {text}`` only: the ``question: ... title:`` prefix, the special
tokens (EOS, CLS/SEP) and the padding are outside every span. The decoder input is the answer shifted
right (``[start] a_1 .. a_A``), so decoder position ``o`` predicts answer token ``o``:
``answer_spans = (0, A)`` in decoder positions and the capture uses ``shift=0``. ``labels`` is
aligned like :class:`~attnrag.reader.decoder.DecoderReader`'s (``labels[:, t + 1]`` is the target of
decoder position ``t``) so that code written for the decoder-only reader (the likelihood teachers
count ``labels[:, 1:] != -100``) works unchanged; ``decoder_labels`` holds the usual seq2seq labels.

Analysis
--------
:mod:`attnrag.analysis.token_attention` reads passage, question *and answer* token ids out of one
``input_ids`` sequence. An FiD batch has two sequences (encoder and decoder), so the analysis must go
through :func:`as_analysis_reader`, which presents encoder tokens followed by the answer tokens as one
sequence. :class:`FiDBatch` deliberately has no ``input_ids`` so that using a raw FiD reader there
fails loudly instead of reading answer ids from the wrong positions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.modeling_outputs import BaseModelOutput

from ..data.records import Passage
from .capture import enable_capture, make_capture, register_capture_attention
from ..errors import InputError
from ..io import atomic_dir, write_json
from ..models import DEFAULT_RETRIEVER, is_model_dir, resolve_model
from ..parallel import pick_device
from .prompt import Piece, PromptConfig, TextEncoder, render

FID_PROMPT_FILE = "attnrag_fid_prompt.json"
WARM_START_FILE = "attnrag_warm_start.json"
#: Substrings of module names that denote cross-attention, per family (T5, BERT, BART/Whisper, others).
CROSS_ATTENTION_MARKERS = ("EncDecAttention", "crossattention", "encoder_attn", "cross_attn")
_PROJECTIONS = (("q", "k", "v"), ("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))


@dataclass
class FiDPromptConfig:
    """How one (question, passage) pair is written for the encoder, and the token budgets.

    The encoder input of passage ``k`` is ``{question_prefix} {question} {passage_prefix}
    {passage_text}`` (FiD's ``question: .. title: .. context: ..``), wrapped in the tokenizer's own
    special tokens (T5: ``</s>`` at the end; BERT: ``[CLS] .. [SEP]``). Only ``passage_text`` is the
    passage's span.
    """

    question_prefix: str = "question:"
    passage_prefix: str = "title:"
    passage_text: str = "{title} context: {text}"
    max_question_tokens: int = 48
    max_passage_tokens: int = 64
    max_answer_tokens: int = 24

    @classmethod
    def from_dict(cls, raw: dict) -> FiDPromptConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def _as_fid_prompt(prompt: FiDPromptConfig | PromptConfig | None,
                   saved: FiDPromptConfig | None) -> FiDPromptConfig:
    """A FiD prompt; a decoder-only :class:`PromptConfig` contributes only its token budgets."""
    if isinstance(prompt, FiDPromptConfig):
        return prompt
    base = saved or FiDPromptConfig()
    if isinstance(prompt, PromptConfig):
        return FiDPromptConfig(**{**asdict(base), "max_passage_tokens": prompt.max_passage_tokens,
                                  "max_answer_tokens": prompt.max_answer_tokens})
    if prompt is not None:
        raise TypeError(f"prompt must be a FiDPromptConfig or PromptConfig, got {type(prompt).__name__}")
    return base


@dataclass
class EncodedFiD:
    """One example: K encoder chunks and its decoder sequence."""

    chunks: list[list[int]]
    passage_spans: list[tuple[int, int]]  # per chunk, [start, end) of the content inside the chunk
    question_span: tuple[int, int]  # inside every chunk
    answer_ids: list[int] | None
    truncated_passages: int = 0


@dataclass
class FiDBatch:
    """A batch for :class:`FiDReader`; ``K`` passage slots of ``Lp`` tokens per question.

    Attributes:
        encoder_input_ids / encoder_attention_mask: ``[B * K, Lp]``, right-padded, one row per passage.
        attention_mask: ``[B, K * Lp]``, the encoder positions the decoder may attend to (0 on padding
            and on empty slots of questions with fewer than K passages).
        decoder_input_ids / decoder_attention_mask: ``[B, T]``, ``[start] + answer`` right-padded.
        decoder_labels: ``[B, T]``, ``answer + [eos]`` with ``-100`` on padding (seq2seq convention).
        passage_spans: per question, ``[start, end)`` of each passage's content in the concatenated
            encoder sequence.
        answer_spans: per question, decoder positions ``(0, A)`` whose targets are the answer tokens
            (``None`` without an answer).
        question_spans: per question, the question tokens inside the first passage's chunk.
    """

    encoder_input_ids: torch.Tensor
    encoder_attention_mask: torch.Tensor
    attention_mask: torch.Tensor
    decoder_input_ids: torch.Tensor
    decoder_attention_mask: torch.Tensor
    decoder_labels: torch.Tensor | None
    passage_spans: list[list[tuple[int, int]]]
    answer_spans: list[tuple[int, int] | None]
    question_spans: list[tuple[int, int] | None]
    truncated_passages: int
    n_passages: int
    passage_length: int
    position_ids: torch.Tensor | None = field(default=None, repr=False)

    @property
    def encoder_ids(self) -> torch.Tensor:
        """``[B, K * Lp]``: the token of every position of the concatenated encoder sequence."""
        return self.encoder_input_ids.view(-1, self.n_passages * self.passage_length)

    @property
    def labels(self) -> torch.Tensor | None:
        """``[B, T + 1]``, aligned like the decoder-only reader's: ``labels[:, t + 1]`` is the target of
        decoder position ``t``."""
        if self.decoder_labels is None:
            return None
        pad = torch.full_like(self.decoder_labels[:, :1], -100)
        return torch.cat([pad, self.decoder_labels], dim=1)

    def to(self, device: torch.device | str) -> FiDBatch:
        for name in ("encoder_input_ids", "encoder_attention_mask", "attention_mask", "decoder_input_ids",
                     "decoder_attention_mask", "decoder_labels"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self


def _has_projections(module: torch.nn.Module) -> bool:
    return any(all(isinstance(getattr(module, n, None), torch.nn.Module) for n in names)
               for names in _PROJECTIONS)


def mark_cross_attention(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Set ``is_cross_attention = True`` on every cross-attention module (the one that holds the q/k/v
    projections and calls the attention function) and return them, in order."""
    found = []
    for name, module in model.named_modules():
        if any(marker in name for marker in CROSS_ATTENTION_MARKERS) and _has_projections(module):
            module.is_cross_attention = True
            found.append(module)
    return found


def _special_wrapping(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (T5: ``[], [</s>]``; BERT: CLS, SEP)."""
    probe = "attnrag probe"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i]), list(full[i + len(plain) :])
    return [], [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def _blocks(stack: torch.nn.Module) -> torch.nn.ModuleList:
    """The longest ``ModuleList`` of a stack: its transformer blocks (T5 ``block``, BERT ``layer``)."""
    lists = [m for m in stack.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"no list of layers found in {type(stack).__name__}")
    return max(lists, key=len)


class FiDReader:
    """Reads a question and K passages with an encoder-decoder (Fusion-in-Decoder).

    Same interface as :class:`~attnrag.reader.decoder.DecoderReader` (``batch``, ``loss``,
    ``answer_logprobs``, ``capture_token_attention``, ``generate``, ``save``, ``from_pretrained``,
    ``num_layers``), so :class:`~attnrag.distill.teacher.Teacher` and the trainer use it as they are.

    Args:
        model: a transformers encoder-decoder (``AutoModelForSeq2SeqLM``); it is switched to
            attnrag's capturing SDPA attention.
        tokenizer: its tokenizer (needs a pad token and an EOS or SEP token).
        prompt: a :class:`FiDPromptConfig`, or a decoder-only :class:`PromptConfig` whose token budgets
            are taken over.
    """

    kind = "fid"

    def __init__(self, model, tokenizer, prompt: FiDPromptConfig | PromptConfig | None = None,
                 name: str = "") -> None:
        if not getattr(model.config, "is_encoder_decoder", False):
            raise InputError("FiDReader needs an encoder-decoder model (config.is_encoder_decoder)",
                             field="reader")
        self.model = model
        self.tokenizer = tokenizer
        self.prompt = _as_fid_prompt(prompt, None)
        self.name = name
        self.eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if self.eos_id is None:
            raise InputError("the tokenizer has neither an EOS nor a SEP token to end answers with",
                             field="reader")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is None:
            start = getattr(model.generation_config, "decoder_start_token_id", None)
        if start is None:
            start = next(t for t in (tokenizer.cls_token_id, tokenizer.bos_token_id, self.pad_id)
                         if t is not None)
        self.start_id = int(start)
        self._before, self._after = _special_wrapping(tokenizer)
        self._text = TextEncoder(tokenizer)  # questions, passages and answers: plain text, never control tokens
        enable_capture(self.model)
        self.cross_attention_modules = mark_cross_attention(self.model)
        if not self.cross_attention_modules:
            raise InputError(f"found no cross-attention module in {type(model).__name__} (looked for names "
                             f"containing {CROSS_ATTENTION_MARKERS})", field="reader")
        # EncoderDecoderModel routes decoder keyword arguments by their ``decoder_`` prefix.
        self._capture_kwarg = ("decoder_attnrag_capture" if model.config.model_type == "encoder-decoder"
                               else "attnrag_capture")

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, prompt: FiDPromptConfig | PromptConfig | None = None,
                        device: str | None = None, dtype: torch.dtype = torch.float32,
                        precision: str = "auto") -> FiDReader:
        """``precision``: the FiD reader runs in fp32 (its cross-attention capture is checked against
        eager attention in fp32 only), so ``auto`` means fp32 here and ``bf16`` is refused rather than
        silently ignored."""
        if precision not in ("auto", "fp32"):
            raise InputError(f"the encoder-decoder (FiD) reader runs in fp32; precision={precision!r} is not "
                             "supported for it (use auto or fp32)", field="precision")
        register_capture_attention()
        path = resolve_model(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=dtype)
        saved_file = path / FID_PROMPT_FILE
        saved = None
        if saved_file.is_file():
            saved = FiDPromptConfig.from_dict(json.loads(saved_file.read_text()))
        model.to(pick_device(device)).eval()
        reader = cls(model, tokenizer, None, name=str(name_or_path))
        reader.prompt = _as_fid_prompt(prompt, saved)
        return reader

    def save(self, out_dir: str | Path) -> None:
        """Save weights, tokenizer and prompt config as a loadable model directory (atomically)."""
        with atomic_dir(out_dir) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            (tmp / FID_PROMPT_FILE).write_text(json.dumps(asdict(self.prompt), indent=2))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_layers(self) -> int:
        """The number of decoder (cross-attention) layers the teacher scores are averaged over."""
        return len(self.cross_attention_modules)

    def trainable_parameters(self, top_layers: int | None = None) -> list[torch.nn.Parameter]:
        """Set ``requires_grad`` for reader fine-tuning and return the parameters that train.

        ``None``: every parameter. ``n``: the top ``n`` blocks of the encoder *and* of the decoder,
        every cross-attention projection (newly initialised in a warm start, so never left frozen),
        and everything outside the blocks (final norms, the LM-head transform) except the embedding
        matrices, which stay frozen as the decoder-only reader's tied embedding does.
        """
        model = self.model
        model.requires_grad_(True)
        if top_layers is None:
            return list(model.parameters())
        frozen: set[int] = set()
        for stack in (model.get_encoder(), model.get_decoder()):
            blocks = _blocks(stack)
            for block in blocks[: max(0, len(blocks) - top_layers)]:
                frozen.update(id(p) for p in block.parameters())
        for name, p in model.named_parameters():
            if any(marker in name for marker in CROSS_ATTENTION_MARKERS):
                frozen.discard(id(p))
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                frozen.update(id(p) for p in module.parameters())
        out_emb = model.get_output_embeddings()
        if out_emb is not None:
            frozen.add(id(out_emb.weight))
        params = []
        for p in model.parameters():
            p.requires_grad_(id(p) not in frozen)
            if p.requires_grad:
                params.append(p)
        return params

    # ------------------------------------------------------------------ batching
    def _encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode(self, question: str, passages: list[Passage], answer: str | None = None) -> EncodedFiD:
        """Tokenise the K encoder chunks piece by piece (so spans are exact) and the answer."""
        cfg = self.prompt
        q_ids = self._text.plain(" " + question.strip())[: cfg.max_question_tokens]
        head = list(self._before) + self._encode_text(cfg.question_prefix)
        question_span = (len(head), len(head) + len(q_ids))
        head += q_ids
        marker = self._encode_text(" " + cfg.passage_prefix) if cfg.passage_prefix else []
        chunks, spans, truncated = [], [], 0
        for passage in passages:
            content = self._text.pieces([Piece(" ")] + render(cfg.passage_text, title=passage.title,
                                                              text=passage.text))
            if len(content) > cfg.max_passage_tokens:
                content = content[: cfg.max_passage_tokens]
                truncated += 1
            ids = head + marker
            spans.append((len(ids), len(ids) + len(content)))
            chunks.append(ids + content + list(self._after))
        answer_ids = None
        if answer is not None:
            answer_ids = self._text.plain(answer.strip())[: cfg.max_answer_tokens]
            if not answer_ids:
                raise InputError("the answer is empty: teacher forcing needs at least one answer token",
                                 field="answers")
        return EncodedFiD(chunks, spans, question_span, answer_ids, truncated)

    def collate(self, examples: list[EncodedFiD], with_labels: bool = False) -> FiDBatch:
        """Pad every chunk to the longest one and every question to K slots; concatenate per question."""
        n_q = len(examples)
        k = max(1, max(len(e.chunks) for e in examples))
        empty = [list(self._before) + self._encode_text(self.prompt.question_prefix)]  # placeholder slot
        length = max(len(c) for e in examples for c in (e.chunks or empty))
        length = max(length, max(e.question_span[1] for e in examples) + len(self._after))
        enc_ids = torch.full((n_q * k, length), self.pad_id, dtype=torch.long)
        enc_mask = torch.zeros((n_q * k, length), dtype=torch.long)
        cross_mask = torch.zeros((n_q, k * length), dtype=torch.long)
        passage_spans, question_spans = [], []
        for b, e in enumerate(examples):
            for slot in range(k):
                row = b * k + slot
                if slot < len(e.chunks):
                    chunk = e.chunks[slot]
                    cross_mask[b, slot * length : slot * length + len(chunk)] = 1
                else:  # an empty slot: encode the question alone (finite states), never attended to
                    q_end = e.question_span[1]
                    chunk = (e.chunks[0][:q_end] if e.chunks else empty[0]) + list(self._after)
                enc_ids[row, : len(chunk)] = torch.tensor(chunk, dtype=torch.long)
                enc_mask[row, : len(chunk)] = 1
            passage_spans.append([(slot * length + s, slot * length + t)
                                  for slot, (s, t) in enumerate(e.passage_spans)])
            question_spans.append(e.question_span if e.chunks else None)

        answers = [e.answer_ids for e in examples]
        dec_len = max(1, max((len(a) + 1 for a in answers if a is not None), default=1))
        dec_in = torch.full((n_q, dec_len), self.pad_id, dtype=torch.long)
        dec_mask = torch.zeros((n_q, dec_len), dtype=torch.long)
        labels = torch.full((n_q, dec_len), -100, dtype=torch.long) if with_labels else None
        answer_spans: list[tuple[int, int] | None] = []
        for b, a in enumerate(answers):
            seq = [self.start_id] + (a or [])
            dec_in[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            dec_mask[b, : len(seq)] = 1
            answer_spans.append(None if a is None else (0, len(a)))
            if with_labels and a is not None:
                labels[b, : len(a) + 1] = torch.tensor(a + [self.eos_id], dtype=torch.long)
        if with_labels and any(a is None for a in answers):
            raise InputError("labels need an answer for every question", field="answers")
        return FiDBatch(enc_ids, enc_mask, cross_mask, dec_in, dec_mask, labels, passage_spans, answer_spans,
                        question_spans, sum(e.truncated_passages for e in examples), k, length)

    def batch(self, questions: list[str], passages: list[list[Passage]], answers: list[str] | None = None,
              with_labels: bool = False) -> FiDBatch:
        answers_ = answers if answers is not None else [None] * len(questions)
        encoded = [self.encode(q, ps, a) for q, ps, a in zip(questions, passages, answers_, strict=True)]
        return self.collate(encoded, with_labels=with_labels).to(self.device)

    # ------------------------------------------------------------------ forward passes
    def encode_passages(self, batch: FiDBatch) -> torch.Tensor:
        """``[B, K * Lp, d]``: every passage encoded on its own, concatenated per question."""
        out = self.model.get_encoder()(input_ids=batch.encoder_input_ids,
                                       attention_mask=batch.encoder_attention_mask)
        hidden = out.last_hidden_state
        return hidden.reshape(-1, batch.n_passages * batch.passage_length, hidden.shape[-1])

    def _forward(self, batch: FiDBatch, capture=None):
        encoded = self.encode_passages(batch)
        kwargs = {self._capture_kwarg: capture} if capture is not None else {}
        return self.model(encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                          attention_mask=batch.attention_mask, decoder_input_ids=batch.decoder_input_ids,
                          decoder_attention_mask=batch.decoder_attention_mask, use_cache=False, **kwargs)

    def loss(self, batch: FiDBatch, capture=None) -> torch.Tensor:
        """Mean token cross-entropy over the answer (+ EOS) tokens of the batch."""
        if batch.decoder_labels is None:
            raise ValueError("batch has no labels; build it with with_labels=True")
        logits = self._forward(batch, capture).logits
        selected = batch.decoder_labels != -100
        return torch.nn.functional.cross_entropy(logits[selected].float(), batch.decoder_labels[selected])

    def answer_logprobs(self, batch: FiDBatch) -> torch.Tensor:
        """Per-example sum of answer (+ EOS) token log-probabilities ``[B]`` (pdist / loop / emdr)."""
        if batch.decoder_labels is None:
            raise ValueError("batch has no labels; build it with with_labels=True")
        logits = self._forward(batch).logits
        selected = batch.decoder_labels != -100
        logp = torch.log_softmax(logits[selected].float(), dim=-1)
        token_logp = logp.gather(-1, batch.decoder_labels[selected][:, None]).squeeze(-1)
        rows = selected.nonzero()[:, 0]
        return torch.zeros(logits.shape[0], device=token_logp.device).index_add(0, rows, token_logp)

    @torch.no_grad()
    def capture_token_attention(self, batch: FiDBatch, signal: str = "norm",
                                first_token_only: bool = False) -> torch.Tensor:
        """``[B, K * Lp]`` cross-attention each encoder token receives from the answer tokens (eval mode)."""
        was_training = self.model.training
        self.model.eval()
        try:
            capture = make_capture(batch.answer_spans, batch.decoder_input_ids.shape[1],
                                   batch.attention_mask.bool(), signal=signal,
                                   first_token_only=first_token_only, num_layers=self.num_layers,
                                   device=self.device, cross_attention=True, shift=0)
            self._forward(batch, capture)
        finally:
            self.model.train(was_training)
        if capture.layers_seen != self.num_layers:
            raise RuntimeError(
                f"captured {capture.layers_seen} of {self.num_layers} cross-attention layers: this model "
                "does not route its cross-attention through transformers' attention interface")
        if capture.token_scores is None:
            return torch.zeros(batch.attention_mask.shape, device=self.device)
        return capture.token_scores

    @torch.no_grad()
    def generate(self, questions: list[str], passages: list[list[Passage]], max_new_tokens: int = 16,
                 batch_size: int = 8, progress: bool = False, stop_at_first_line: bool = True) -> list[str]:
        """Greedy short answers, batched; the answer is cut at the first newline (``stop_at_first_line``:
        as :meth:`DecoderReader.generate`)."""
        from transformers import StoppingCriteriaList

        from .generation import FirstLineDone, generate_answers

        self.model.eval()

        prompts = [self.encode(q, ps) for q, ps in zip(questions, passages, strict=True)]

        def generate_chunk(chunk: list[EncodedFiD]) -> torch.Tensor:
            batch = self.collate(chunk).to(self.device)
            encoded = self.encode_passages(batch)
            stop = StoppingCriteriaList([FirstLineDone(self.tokenizer, 1)] if stop_at_first_line else [])
            return self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                attention_mask=batch.attention_mask, max_new_tokens=max_new_tokens, do_sample=False,
                num_beams=1, stopping_criteria=stop,
                decoder_start_token_id=self.start_id, pad_token_id=self.pad_id, eos_token_id=self.eos_id,
            )

        # a batch computes K slots x the longest chunk for every question: sort by both
        lengths = [max(1, len(p.chunks)) * max((len(c) for c in p.chunks), default=1) for p in prompts]
        return generate_answers(prompts, lengths, batch_size, self.tokenizer, generate_chunk, progress)


# ---------------------------------------------------------------------------------------------- analysis
@dataclass
class _AnalysisBatch:
    """An FiD batch seen as one sequence: the concatenated encoder tokens, then the answer tokens."""

    fid: FiDBatch
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    passage_spans: list[list[tuple[int, int]]]
    answer_spans: list[tuple[int, int] | None]
    question_spans: list[tuple[int, int] | None]
    position_ids: torch.Tensor | None = None


class FiDAnalysisView:
    """An :class:`FiDReader` as :mod:`attnrag.analysis.token_attention` expects a reader to look.

    ``batch`` returns one sequence per question, ``encoder tokens (K * Lp) + answer tokens``, with the
    passage and question spans in encoder positions and the answer span after them;
    ``capture_token_attention`` returns the cross-attention scores with zeros on the answer part. Only
    ``layer=None`` (input-embedding relatedness) is supported by the analysis on this view.
    """

    kind = "fid"

    def __init__(self, reader: FiDReader) -> None:
        self.reader = reader
        self.model = reader.model
        self.tokenizer = reader.tokenizer
        self.name = reader.name

    def batch(self, questions, passages, answers=None, with_labels: bool = False) -> _AnalysisBatch:
        fid = self.reader.batch(questions, passages, answers, with_labels=with_labels)
        enc = fid.encoder_ids
        answer_ids = fid.decoder_input_ids[:, 1:]  # [start] a_1 .. a_A -> a_1 .. a_A
        offset = enc.shape[1]
        ids = torch.cat([enc, answer_ids], dim=1)
        mask = torch.cat([fid.attention_mask, fid.decoder_attention_mask[:, 1:]], dim=1)
        spans = [None if s is None else (offset + s[0], offset + s[1]) for s in fid.answer_spans]
        return _AnalysisBatch(fid, ids, mask, fid.passage_spans, spans, fid.question_spans)

    def capture_token_attention(self, batch: _AnalysisBatch, signal: str = "norm",
                                first_token_only: bool = False) -> torch.Tensor:
        scores = self.reader.capture_token_attention(batch.fid, signal=signal,
                                                     first_token_only=first_token_only)
        pad = torch.zeros((scores.shape[0], batch.input_ids.shape[1] - scores.shape[1]), dtype=scores.dtype,
                          device=scores.device)
        return torch.cat([scores, pad], dim=1)


def as_analysis_reader(reader):
    """The reader to hand to :mod:`attnrag.analysis` (FiD readers are wrapped, others returned as is)."""
    return FiDAnalysisView(reader) if isinstance(reader, FiDReader) else reader


# ---------------------------------------------------------------------------------------------- warm start
def warm_start_fid(out_dir: str | Path, encoder: str | Path = DEFAULT_RETRIEVER,
                   decoder: str | Path | None = None, *, seed: int = 0, tie_encoder_decoder: bool = False,
                   prompt: FiDPromptConfig | None = None) -> Path:
    """Build an FiD reader from BERT-style checkpoints (BERT2BERT, Rothe et al. 2020) and save it.

    No pretrained sequence-to-sequence model ships with attnrag (the model registry holds a decoder-only
    LM and a MiniLM sentence encoder), so the encoder-decoder option is
    ``EncoderDecoderModel.from_encoder_decoder_pretrained(encoder, decoder)``: the encoder and the
    decoder's self-attention and feed-forward layers start from the checkpoint (MiniLM by default);
    the decoder's **cross-attention** and the LM-head transform are **newly initialised** (the
    output matrix is tied to the decoder's word embeddings). It must be fine-tuned before it reads
    anything, and even then it is a weak reader: results obtained with it say how attention
    distillation behaves with a small, briefly trained FiD reader, not with Atlas. Idempotent: an
    existing model directory at ``out_dir`` is returned as it is. ``seed`` fixes the new weights.
    """
    from transformers import EncoderDecoderModel

    out = Path(out_dir)
    if is_model_dir(out):
        return out
    enc_path = resolve_model(encoder)
    dec_path = resolve_model(decoder if decoder is not None else encoder)
    torch.manual_seed(seed)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(str(enc_path), str(dec_path),
                                                                tie_encoder_decoder=tie_encoder_decoder)
    tokenizer = AutoTokenizer.from_pretrained(enc_path)
    if tokenizer.eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token
    start = next(t for t in (tokenizer.cls_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id)
                 if t is not None)
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id = start
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
    reader = FiDReader(model.eval(), tokenizer, prompt, name=str(out))
    reader.save(out)
    new = _new_decoder_parameters(model, dec_path)
    write_json(out / WARM_START_FILE, {
        "kind": "bert2bert warm start (transformers EncoderDecoderModel)",
        "encoder": str(encoder), "decoder": str(decoder if decoder is not None else encoder), "seed": seed,
        "tie_encoder_decoder": tie_encoder_decoder,
        "newly_initialised_parameters": new,
        "note": "cross-attention and LM-head transform are random: fine-tune before use",
    })
    return out


def _new_decoder_parameters(model, checkpoint: Path) -> list[str]:
    """Decoder parameters the checkpoint did not provide (newly initialised), by name."""
    weights = checkpoint / "model.safetensors"
    if not weights.is_file():
        return ["unknown (the decoder checkpoint has no model.safetensors)"]
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as fh:
        have = {k.removeprefix("bert.") for k in fh.keys()}  # noqa: SIM118 - safe_open is no dict
    return sorted(n for n, _ in model.named_parameters()
                  if n.startswith("decoder.")
                  and n.removeprefix("decoder.").removeprefix("bert.") not in have)


__all__ = ["FiDAnalysisView", "FiDBatch", "FiDPromptConfig", "FiDReader", "as_analysis_reader",
           "mark_cross_attention", "warm_start_fid"]
