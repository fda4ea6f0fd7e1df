#!/usr/bin/env bash
# The exact commands behind docs/results/real/<set>/ (run from the repository root, with ../shared/data).
# Each call resumes where it stopped; results.json records the configuration, commit and wall times.
set -euo pipefail
OUT=${OUT:-real-out}
SHARED=${SHARED:-../shared/data}
attnrag experiment paper --out "$OUT/squad-open-dev" --data "$SHARED/squad-open-dev" \
    --config docs/results/real/squad-open-dev/config.json --rows offtheshelf,offtheshelf-distill,step1,step2
attnrag experiment paper --out "$OUT/squad-open-dev" --data "$SHARED/squad-open-dev" \
    --config docs/results/real/squad-open-dev/config.json --rows teacher-pdist   # second call: adds one row
attnrag experiment paper --out "$OUT/nq-oracle-dev" --data "$SHARED/nq-oracle-dev" \
    --distractors "$SHARED/wiki-sample/flashrag-wiki18-100w-sample.jsonl" \
    --config docs/results/real/nq-oracle-dev/config.json --rows offtheshelf,offtheshelf-distill,step1,step2
# TweetQA (a domain the retriever was not trained on), against the cosine zero-shot baseline; the
# second call adds off-the-shelf distillation and Step 2 to the same experiment.
attnrag experiment paper --out "$OUT/tweetqa-open" --data "$SHARED/tweetqa-open" \
    --config docs/results/real/tweetqa-open/config.json --rows offtheshelf,step1,supervised,questions-only
attnrag experiment paper --out "$OUT/tweetqa-open" --data "$SHARED/tweetqa-open" \
    --config docs/results/real/tweetqa-open/config.json --rows offtheshelf-distill,step2
