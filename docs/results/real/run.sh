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
# COVID-QA (biomedical papers; the retriever was not trained on them), against the cosine zero-shot baseline
attnrag experiment paper --out "$OUT/covidqa-open" --data "$SHARED/covidqa-open" \
    --config docs/results/real/covidqa-open/config.json --rows offtheshelf,offtheshelf-distill,step1,supervised
# paired bootstrap of each trained row against the zero-shot retriever (evaluation uncertainty)
for set in squad-open-dev nq-oracle-dev tweetqa-open covidqa-open; do
  extra=(); [ "$set" = nq-oracle-dev ] && extra=(--distractors "$SHARED/wiki-sample/flashrag-wiki18-100w-sample.jsonl")
  runs=(); for r in "$OUT/$set"/runs/*/; do runs+=(--run "$(basename "$r")=$r"); done
  python scripts/paired_bootstrap.py --data "$SHARED/$set" --index "$OUT/$set/index" "${extra[@]}" "${runs[@]}" \
      --out "$OUT/$set/bootstrap.json"
done
