"""Teacher scores: one number per retrieved passage, from the reader, for the retriever to imitate.

The attention teachers (``attn``, ``attn-norm``, ``attn-logits``) reduce the per-token attention
captured by :mod:`attnrag.reader.capture` to one score per passage span. The likelihood teachers
(``pdist``, ``loop``) score passages by how well the reader predicts the gold answer from them;
``emdr`` uses the per-passage likelihoods inside its own loss (see :mod:`attnrag.distill.loss`).
"""

from __future__ import annotations

import torch

from ..data.records import Passage
from .config import ATTENTION_TEACHERS, TEACHERS, TeacherConfig

def aggregate_spans(token_scores: torch.Tensor, spans: list[list[tuple[int, int]]], aggregation: str = "sum",
                    topk: int = 5) -> torch.Tensor:
    """Reduce ``[B, L]`` token scores to ``[B, K]`` passage scores over each passage's token span."""
    n_passages = max(len(s) for s in spans)
    out = torch.zeros((len(spans), n_passages), dtype=torch.float32, device=token_scores.device)
    for b, row_spans in enumerate(spans):
        for k, (start, end) in enumerate(row_spans):
            values = token_scores[b, start:end]
            if values.numel() == 0:
                continue
            if aggregation == "sum":
                out[b, k] = values.sum()
            elif aggregation == "mean":
                out[b, k] = values.mean()
            else:
                out[b, k] = values.topk(min(topk, values.numel())).values.sum()
    return out


class Teacher:
    """Scores the K retrieved passages of each question with a reader."""

    def __init__(self, reader, config: TeacherConfig | None = None) -> None:
        self.reader = reader
        self.config = config or TeacherConfig()

    @torch.no_grad()
    def score(self, questions: list[str], passages: list[list[Passage]], answers: list[str]) -> torch.Tensor:
        """``[B, K]`` teacher scores (higher = the reader relied on / benefited from the passage more)."""
        cfg = self.config
        if cfg.teacher in ATTENTION_TEACHERS:
            if cfg.shuffle_orders <= 0:
                return self._attention_scores(questions, passages, answers)
            generator = torch.Generator().manual_seed(cfg.seed)
            total = None
            for _ in range(cfg.shuffle_orders):
                perms = [torch.randperm(len(ps), generator=generator).tolist() for ps in passages]
                shuffled = [[ps[i] for i in perm] for ps, perm in zip(passages, perms, strict=True)]
                scores = self._attention_scores(questions, shuffled, answers)
                restored = torch.zeros_like(scores)
                for b, perm in enumerate(perms):
                    restored[b, perm] = scores[b, : len(perm)]
                total = restored if total is None else total + restored
            return total / cfg.shuffle_orders
        if cfg.teacher in ("pdist", "emdr"):
            # pdist compares passages by mean log-likelihood per answer token; EMDR2 marginalises the
            # full answer likelihood p(a | q, d_k), so it needs the sum.
            return self.passage_loglikelihoods(questions, passages, answers, per_token=cfg.teacher == "pdist")
        return self._leave_one_out(questions, passages, answers)

    def _attention_scores(self, questions, passages, answers) -> torch.Tensor:
        cfg = self.config
        batch = self.reader.batch(questions, passages, answers)
        tokens = self.reader.capture_token_attention(batch, signal=ATTENTION_TEACHERS[cfg.teacher],
                                                     first_token_only=cfg.first_token_only)
        return aggregate_spans(tokens, batch.passage_spans, cfg.aggregation, cfg.topk_tokens)

    def passage_loglikelihoods(self, questions, passages, answers, per_token: bool = True) -> torch.Tensor:
        """``[B, K]`` log-likelihood of the answer given each passage alone (per token for ATLAS ``pdist``)."""
        flat_q, flat_p, flat_a = [], [], []
        for q, ps, a in zip(questions, passages, answers, strict=True):
            for p in ps:
                flat_q.append(q)
                flat_p.append([p])
                flat_a.append(a)
        batch = self.reader.batch(flat_q, flat_p, flat_a, with_labels=True)
        logp = self.reader.answer_logprobs(batch)
        if per_token:
            logp = logp / (batch.labels[:, 1:] != -100).sum(-1).clamp(min=1)
        return _unflatten(logp, [len(ps) for ps in passages])

    def _leave_one_out(self, questions, passages, answers) -> torch.Tensor:
        """``[B, K]``: log p(answer | all K) - log p(answer | all but k) (large = the passage mattered)."""
        flat_q, flat_p, flat_a = [], [], []
        for q, ps, a in zip(questions, passages, answers, strict=True):
            flat_q.append(q)
            flat_p.append(list(ps))
            flat_a.append(a)
            for k in range(len(ps)):
                flat_q.append(q)
                flat_p.append(ps[:k] + ps[k + 1 :])
                flat_a.append(a)
        batch = self.reader.batch(flat_q, flat_p, flat_a, with_labels=True)
        logp = self.reader.answer_logprobs(batch)
        out, row = [], 0
        for ps in passages:
            full = logp[row]
            out.append(full - logp[row + 1 : row + 1 + len(ps)])
            row += 1 + len(ps)
        return torch.nn.utils.rnn.pad_sequence(out, batch_first=True)


def _unflatten(values: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(list(values.split(sizes)), batch_first=True)


__all__ = ["TEACHERS", "Teacher", "TeacherConfig", "aggregate_spans"]
