"""A decoder-only reader over any Hugging Face causal LM: LM loss on answers, attention capture, generation.

Batches are left-padded so that every sequence ends at the same position: generation then needs no
special casing, and position ids are derived from the attention mask so a padded sequence sees the
same positions as an unpadded one (tests check that batching does not change teacher scores).

Architectures differ in where the decoder and the head live (``model.model`` / ``lm_head`` for
Llama-likes, ``transformer`` / ``lm_head`` for GPT-2 and Falcon, ``gpt_neox`` / ``embed_out`` for
GPT-NeoX) and in what the head does (Gemma 2 soft-caps its final logits). The reader finds them
through transformers' own accessors (:func:`find_decoder`, :func:`find_head`) and, when it is built,
checks on a four-token probe that (1) every layer's attention reaches the capture and (2) its head
reproduces the model's own logits, so an architecture it cannot serve exactly is refused with one
line before any work is done, never read silently wrong.
"""

from __future__ import annotations

import json
from contextlib import nullcontext as _nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..data.records import Passage
from .capture import AttentionCapture, capturing, enable_capture, make_capture
from ..errors import InputError
from ..io import atomic_dir
from ..models import resolve_model
from ..parallel import pick_device
from .prompt import EncodedPrompt, PromptBuilder, PromptConfig


@dataclass
class ReaderBatch:
    """A left-padded batch; spans are positions in the padded sequence."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    passage_spans: list[list[tuple[int, int]]]
    answer_spans: list[tuple[int, int] | None]
    question_spans: list[tuple[int, int] | None]
    truncated_passages: int

    def to(self, device: torch.device | str) -> ReaderBatch:
        for name in ("input_ids", "attention_mask", "position_ids", "labels"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None`` = plain fp32).

    ``auto`` picks bf16 where the hardware runs it natively: CUDA GPUs with bf16 support, and CPUs
    with AMX or AVX512-BF16 (measured on this project's 2-core Sapphire Rapids machine: a SmolLM2
    forward is 3.3x faster, a training step 1.7x). Elsewhere bf16 is emulated and slower, so ``auto``
    stays in fp32. Weights always stay fp32 (they are the optimiser's master copy); autocast runs
    the matrix multiplications in bf16, and the attention capture computes its softmax rows in fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU runs bf16 matrix multiplications natively (AMX or AVX512-BF16).

    Read from the kernel's CPU flags (public, and the same facts oneDNN dispatches on) rather than
    torch's private ``torch.cpu._is_amx_tile_supported``. Where there is no ``/proc/cpuinfo``
    (macOS, Windows) the answer is False: ``auto`` then stays in fp32, the safe choice.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(NATIVE_BF16_FLAGS & set(line.partition(":")[2].split()))
    return False


def find_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack of a causal LM (what returns ``last_hidden_state``), for any architecture."""
    decoder = None
    if hasattr(model, "get_decoder"):
        try:
            decoder = model.get_decoder()
        except (AttributeError, NotImplementedError, ValueError):
            decoder = None
    if decoder is None or decoder is model:
        decoder = getattr(model, "base_model", None)
    if decoder is None or decoder is model:
        raise InputError(f"cannot find the decoder of {type(model).__name__} (neither get_decoder() nor "
                         "base_model gives one)", field="reader")
    return decoder


def find_head(model: torch.nn.Module) -> torch.nn.Module:
    """The output projection (``lm_head``, GPT-NeoX's ``embed_out``, ...), via ``get_output_embeddings()``."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise InputError(f"{type(model).__name__} has no output embeddings (get_output_embeddings() is None): "
                         "not a causal LM", field="reader")
    return head


def find_layers(decoder: torch.nn.Module, num_layers: int) -> tuple[torch.nn.ModuleList, list[torch.nn.Module]]:
    """The decoder's list of blocks and its final norm(s) (``norm``, ``ln_f``, ``final_layer_norm``).

    The blocks are the decoder's ``ModuleList`` child with ``num_layers`` entries; the final norms are
    the norm children registered after it (a norm before it would be an embedding norm).
    """
    children = list(decoder.named_children())
    at = next((i for i, (_, m) in enumerate(children)
               if isinstance(m, torch.nn.ModuleList) and len(m) == num_layers), None)
    if at is None:
        raise InputError(f"cannot find the {num_layers} decoder blocks of {type(decoder).__name__}", field="reader")
    norms = [m for _, m in children[at + 1 :]
             if isinstance(m, torch.nn.LayerNorm) or "norm" in type(m).__name__.lower()]
    return children[at][1], norms


class DecoderReader:
    """Reads a question and K passages with a causal LM.

    Args:
        model: a transformers causal LM; it is switched to attnrag's capturing SDPA attention.
        tokenizer: its tokenizer (a pad token is set to EOS when missing).
        prompt: the prompt layout and budgets.
    """

    kind = "decoder"

    def __init__(self, model, tokenizer, prompt: PromptConfig | None = None, name: str = "",
                 precision: str = "fp32") -> None:
        self.model = model
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.prompt = prompt or PromptConfig()
        self.builder = PromptBuilder(tokenizer, self.prompt)
        self.name = name
        self.precision = precision
        self.decoder = find_decoder(model)
        self.head = find_head(model)
        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.logit_softcap = getattr(text_config, "final_logit_softcapping", None)
        self.capture_path = enable_capture(self.model)
        self._num_layers = int(text_config.num_hidden_layers)
        self._check_architecture()

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, prompt: PromptConfig | None = None,
                        device: str | None = None, dtype: torch.dtype = torch.float32,
                        precision: str = "auto") -> DecoderReader:
        path = resolve_model(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        saved_prompt = path / "attnrag_prompt.json"
        if prompt is None and saved_prompt.is_file():
            prompt = PromptConfig(**json.loads(saved_prompt.read_text()))
        model.to(pick_device(device)).eval()
        return cls(model, tokenizer, prompt, name=str(name_or_path), precision=precision)

    def save(self, out_dir: str | Path) -> None:
        """Save weights, tokenizer and prompt config as a loadable model directory (atomically)."""
        with atomic_dir(out_dir) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            (tmp / "attnrag_prompt.json").write_text(json.dumps(asdict(self.prompt), indent=2))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def autocast(self):
        """The mixed-precision context every forward of this reader runs in (see :func:`resolve_precision`)."""
        dtype = resolve_precision(self.precision, self.device)
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    @property
    def num_layers(self) -> int:
        """The number of attention layers the teacher scores are averaged over."""
        return self._num_layers

    @torch.no_grad()
    def _check_architecture(self) -> None:
        """Refuse, before any work, a model whose capture or head this reader would get wrong.

        A four-token probe (two sequences, one left-padded) must (1) reach the capture in every
        layer, and (2) give the same logits through :meth:`_logits` as the model's own forward.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            ids = torch.tensor([[3, 4, 5, 6], [3, 3, 5, 6]], device=self.device)
            mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]], device=self.device)
            probe = ReaderBatch(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), None, [[], []],
                                [(3, 4), (3, 4)], [None, None], 0)
            capture = make_capture(probe.answer_spans, 4, mask.bool(), signal="prob", num_layers=self.num_layers,
                                   device=self.device)
            with torch.autocast(self.device.type, enabled=False):
                hidden = self._hidden(probe, capture, autocast=False)
                ours = self._logits(hidden)
                theirs = self.model(input_ids=ids, attention_mask=mask, position_ids=probe.position_ids,
                                    use_cache=False).logits
        finally:
            self.model.train(was_training)
        arch = f"{type(self.model).__name__} (model_type '{self.model.config.model_type}')"
        if capture.layers_seen != self.num_layers:
            raise InputError(f"{arch}: only {capture.layers_seen} of {self.num_layers} layers reached the attention "
                             f"capture on transformers {transformers.__version__}; attnrag cannot build an exact "
                             "attention teacher for this architecture on this release (docs/method.md lists the "
                             "supported ones; `make test-latest` checks new releases)", field="reader")
        # Same weights, same ops: only rounding differs (more of it for bf16/fp16 weights).
        tolerance = max(1e-3, 8 * torch.finfo(theirs.dtype).eps) * (1.0 + float(theirs.float().abs().max()))
        if float((ours.float() - theirs.float()).abs().max()) > tolerance:
            raise InputError(f"{arch}: its output head transforms the logits in a way attnrag does not apply "
                             "(only final_logit_softcapping is known); refusing rather than training on wrong "
                             "log-probabilities", field="reader")

    def trainable_parameters(self, top_layers: int | None = None) -> list[torch.nn.Parameter]:
        """Set ``requires_grad`` for reader fine-tuning and return the parameters that train.

        ``top_layers=None`` trains the whole model; ``n`` trains the last ``n`` decoder blocks and the
        final norm (the head stays frozen: it is usually tied to the input embeddings).
        """
        self.model.requires_grad_(False)
        if top_layers is None:
            self.model.requires_grad_(True)
        else:
            layers, norms = find_layers(self.decoder, self.num_layers)
            for layer in layers[-(top_layers or len(layers)) :]:
                layer.requires_grad_(True)
            for norm in norms:
                norm.requires_grad_(True)
        return [p for p in self.model.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ batching
    def encode(self, question: str, passages: list[Passage], answer: str | None = None) -> EncodedPrompt:
        return self.builder.encode(question, passages, answer)

    def collate(self, prompts: list[EncodedPrompt], with_labels: bool = False) -> ReaderBatch:
        """Left-pad prompts into tensors and shift every recorded span by the padding."""
        length = max(len(p.input_ids) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(prompts), length), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        labels = torch.full((len(prompts), length), -100, dtype=torch.long) if with_labels else None
        passage_spans, answer_spans, question_spans = [], [], []
        for b, p in enumerate(prompts):
            off = length - len(p.input_ids)
            ids[b, off:] = torch.tensor(p.input_ids, dtype=torch.long)
            mask[b, off:] = 1
            passage_spans.append([(s + off, e + off) for s, e in p.passage_spans])
            answer_spans.append(None if p.answer_span is None else (p.answer_span[0] + off, p.answer_span[1] + off))
            question_spans.append(None if p.question_span is None
                                  else (p.question_span[0] + off, p.question_span[1] + off))
            if with_labels and p.label_span is not None:
                s, e = p.label_span
                labels[b, s + off : e + off] = ids[b, s + off : e + off]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return ReaderBatch(ids, mask, position_ids, labels, passage_spans, answer_spans, question_spans,
                           sum(p.truncated_passages for p in prompts))

    def batch(self, questions: list[str], passages: list[list[Passage]], answers: list[str] | None = None,
              with_labels: bool = False) -> ReaderBatch:
        answers_ = answers if answers is not None else [None] * len(questions)
        prompts = [self.encode(q, ps, a) for q, ps, a in zip(questions, passages, answers_, strict=True)]
        return self.collate(prompts, with_labels=with_labels).to(self.device)

    # ------------------------------------------------------------------ forward passes
    def _hidden(self, batch: ReaderBatch, capture: AttentionCapture | None = None,
                autocast: bool = True) -> torch.Tensor:
        with capturing(self.model, capture) as kwargs, (self.autocast() if autocast else _nullcontext()):
            out = self.decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               position_ids=batch.position_ids, use_cache=False, **kwargs)
        return out.last_hidden_state

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's logits for ``hidden`` rows: its head, then its final soft-capping if it has one."""
        logits = self.head(hidden)
        if self.logit_softcap:
            logits = torch.tanh(logits / self.logit_softcap) * self.logit_softcap
        return logits

    def loss(self, batch: ReaderBatch, capture: AttentionCapture | None = None) -> torch.Tensor:
        """Mean token cross-entropy over the answer (+ end-of-turn) tokens of the batch.

        The LM head (49k x 576 for SmolLM2) is applied to the labelled positions only: computing
        logits for every prompt position would cost a fifth of the forward and most of its memory.
        """
        if batch.labels is None:
            raise ValueError("batch has no labels; build it with with_labels=True")
        hidden = self._hidden(batch, capture)
        targets = batch.labels[:, 1:]
        selected = targets != -100
        with self.autocast():
            logits = self._logits(hidden[:, :-1][selected])
        return torch.nn.functional.cross_entropy(logits.float(), targets[selected])

    def answer_logprobs(self, batch: ReaderBatch) -> torch.Tensor:
        """Per-example sum of answer-token log-probabilities ``[B]`` (used by pdist / loop / emdr)."""
        hidden = self._hidden(batch)
        targets = batch.labels[:, 1:]
        selected = targets != -100
        with self.autocast():
            logits = self._logits(hidden[:, :-1][selected])
        logp = torch.log_softmax(logits.float(), dim=-1)
        token_logp = logp.gather(-1, targets[selected][:, None]).squeeze(-1)
        rows = selected.nonzero()[:, 0]
        return torch.zeros(targets.shape[0], device=token_logp.device).index_add(0, rows, token_logp)

    @torch.no_grad()
    def capture_token_attention(self, batch: ReaderBatch, signal: str = "norm",
                                first_token_only: bool = False) -> torch.Tensor:
        """``[B, L]`` attention each token receives from the answer tokens (teacher forcing, eval mode)."""
        was_training = self.model.training
        self.model.eval()
        try:
            capture = make_capture(batch.answer_spans, batch.input_ids.shape[1], batch.attention_mask.bool(),
                                   signal=signal, first_token_only=first_token_only, num_layers=self.num_layers,
                                   device=self.device)
            self._hidden(batch, capture)
        finally:
            self.model.train(was_training)
        return capture.token_scores

    @torch.no_grad()
    def generate(self, questions: list[str], passages: list[list[Passage]], max_new_tokens: int = 16,
                 batch_size: int = 8, progress: bool = False, stop_at_first_line: bool = True) -> list[str]:
        """Greedy short answers, batched; the answer is cut at the first newline or end-of-turn.
        ``stop_at_first_line``: stop each sequence once its first line is complete
        (:class:`~attnrag.reader.generation.FirstLineDone`; the answers are the same either way)."""
        from transformers import StoppingCriteriaList

        from .generation import FirstLineDone, generate_answers

        self.model.eval()

        prompts = [self.encode(q, ps) for q, ps in zip(questions, passages, strict=True)]

        def generate_chunk(chunk: list[EncodedPrompt]) -> torch.Tensor:
            batch = self.collate(chunk).to(self.device)
            stop = StoppingCriteriaList([FirstLineDone(self.tokenizer, batch.input_ids.shape[1])]
                                        if stop_at_first_line else [])
            with self.autocast():
                generated = self.model.generate(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.builder.end_ids or None, stopping_criteria=stop,
                )
            return generated[:, batch.input_ids.shape[1] :]

        return generate_answers(prompts, [len(p.input_ids) for p in prompts], batch_size, self.tokenizer,
                                generate_chunk, progress)
