"""How often each teacher variant picks the gold passage, on a corpus with gold passage ids.

For ``--n`` training questions (the same seeded subset the trainer distils on), retrieve the top
``--k`` candidates with the base retriever from an experiment's index, score them with one reader
under every attention signal x aggregation and with ``pdist``, and print one JSON line: the top-1
accuracy of each variant and of the retriever itself, over the questions whose candidates hold the
gold passage. A teacher helps distillation only where it beats the retriever it teaches.

    python scripts/teacher_accuracy.py --reader RUN/reader --index OUT/index --data DIR [--n 100]
"""

from __future__ import annotations

import argparse
import collections
import json
import time

from attnrag.data.formats import load_corpus_dir
from attnrag.distill.teacher import Teacher, TeacherConfig, aggregate_spans
from attnrag.reader.factory import load_reader
from attnrag.reader.prompt import PromptConfig
from attnrag.retrieval.encoder import BiEncoder
from attnrag.retrieval.index import retrieve
from attnrag.retrieval.store import load_indexed_corpus
from attnrag.train.trainer import select_subset

VARIANTS = (("sum", 5), ("mean", 5), ("topk", 1), ("topk", 5), ("topk", 20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--distractors")
    parser.add_argument("--retriever", default="minilm-l6-v2")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-passage-tokens", type=int, default=192)
    parser.add_argument("--train-questions", type=int, default=800, help="the trainer's train subset size")
    parser.add_argument("--distill-questions", type=int, default=200, help="the trainer's distillation subset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    _, splits = load_corpus_dir(args.data, args.distractors)
    train = select_subset(splits["train"], args.train_questions, args.seed)  # as the trainer picks them
    examples = select_subset(train, args.distill_questions, args.seed + 1)[: args.n]
    index, by_id = load_indexed_corpus(args.index)
    encoder = BiEncoder.from_pretrained(args.retriever)
    reader = load_reader(args.reader, prompt=PromptConfig(max_passage_tokens=args.max_passage_tokens))
    start = time.time()
    _, candidates = retrieve(index, by_id, encoder, [e.question for e in examples], args.k)
    hits = collections.defaultdict(list)
    for i in range(0, len(examples), 4):
        chunk, passages = examples[i : i + 4], candidates[i : i + 4]
        questions, answers = [e.question for e in chunk], [e.answers[0] for e in chunk]
        gold = [[p.id in e.gold_passage_ids for p in row] for e, row in zip(chunk, passages, strict=True)]
        usable = [b for b in range(len(chunk)) if any(gold[b])]
        batch = reader.batch(questions, passages, answers)
        for signal in ("norm", "prob"):
            tokens = reader.capture_token_attention(batch, signal=signal)
            for aggregation, k in VARIANTS:
                scores = aggregate_spans(tokens, batch.passage_spans, aggregation, k)
                name = f"{signal}-{aggregation}{k if aggregation == 'topk' else ''}"
                hits[name] += [gold[b][int(scores[b, : len(passages[b])].argmax())] for b in usable]
        pdist = Teacher(reader, TeacherConfig(teacher="pdist")).score(questions, passages, answers)
        hits["pdist"] += [gold[b][int(pdist[b, : len(passages[b])].argmax())] for b in usable]
        hits["retriever"] += [gold[b][0] for b in usable]
    print(json.dumps({"reader": args.reader, "n_questions": len(examples), "n_with_gold": len(hits["retriever"]),
                      "seconds": round(time.time() - start),
                      **{k: round(sum(v) / len(v), 3) for k, v in hits.items() if v}}))


if __name__ == "__main__":
    main()
