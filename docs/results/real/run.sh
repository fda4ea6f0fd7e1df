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
# TweetQA (a domain the retriever was not trained on), against the cosine zero-shot baseline: the query
# tower alone (as in every row above), then the tied tower (both sides trained; batch 8) in its own
# experiment, with two more training seeds.
attnrag experiment paper --out "$OUT/tweetqa-open" --data "$SHARED/tweetqa-open" \
    --config docs/results/real/tweetqa-open/config.json --rows offtheshelf,step1,supervised
attnrag experiment paper --out "$OUT/tweetqa-open" --data "$SHARED/tweetqa-open" \
    --config docs/results/real/tweetqa-open/config.json --rows questions-only
TIED=docs/results/real/tweetqa-open/tied-tower/config.json
attnrag experiment paper --out "$OUT/tweetqa-open-tied" --data "$SHARED/tweetqa-open" --config "$TIED" \
    --rows offtheshelf,step1,supervised,step1-full,supervised-full
attnrag experiment paper --out "$OUT/tweetqa-open-tied" --data "$SHARED/tweetqa-open" --config "$TIED" \
    --rows questions-only,questions-only-full
attnrag experiment paper --out "$OUT/tweetqa-open-tied" --data "$SHARED/tweetqa-open" --config "$TIED" \
    --rows offtheshelf-distill,offtheshelf-distill-full
for seed in 1 2; do
  attnrag experiment paper --out "$OUT/tweetqa-open-tied-seed$seed" --seed $seed --data "$SHARED/tweetqa-open" \
      --config "$TIED" --rows offtheshelf,step1,supervised,step1-full,supervised-full
done
# COVID-QA (biomedical papers; the retriever was not trained on them), against the cosine zero-shot baseline
attnrag experiment paper --out "$OUT/covidqa-open" --data "$SHARED/covidqa-open" \
    --config docs/results/real/covidqa-open/config.json --rows offtheshelf,offtheshelf-distill,step1,supervised
attnrag experiment paper --out "$OUT/covidqa-open" --data "$SHARED/covidqa-open" \
    --config docs/results/real/covidqa-open/config.json --rows questions-only
# diagnose before each distillation: the off-the-shelf reader, and Step 1's reader after its fine-tuning
for set in tweetqa-open covidqa-open; do
  attnrag diagnose --reader smollm2-135m-instruct --data "$SHARED/$set/dev.jsonl" --index "$OUT/$set/index" \
      --n 100 --n-passages 3 --teacher-aggregation topk --out "$OUT/$set/diagnose-base.json"
  attnrag diagnose --reader "$OUT/$set/runs/step1/reader" --data "$SHARED/$set/dev.jsonl" --index "$OUT/$set/index" \
      --n 100 --n-passages 3 --teacher-aggregation topk --out "$OUT/$set/diagnose-step1.json"
done
# paired bootstrap of each trained row against the zero-shot retriever (evaluation uncertainty), plus
# the row-to-row comparisons and recovered shares the READMEs quote, e.g. for the tied experiment:
#   python scripts/paired_bootstrap.py ... --compare step1-full:step1 --share step1-full:supervised-full
# and the training-seed spread of the tied experiment:
#   python scripts/seed_spread.py --experiment 0=$OUT/tweetqa-open-tied --experiment 1=$OUT/tweetqa-open-tied-seed1 \
#       --experiment 2=$OUT/tweetqa-open-tied-seed2 --out docs/results/real/tweetqa-open/tied-tower/seeds.json
for set in squad-open-dev nq-oracle-dev tweetqa-open covidqa-open; do
  extra=(); [ "$set" = nq-oracle-dev ] && extra=(--distractors "$SHARED/wiki-sample/flashrag-wiki18-100w-sample.jsonl")
  runs=(); for r in "$OUT/$set"/runs/*/; do runs+=(--run "$(basename "$r")=$r"); done
  python scripts/paired_bootstrap.py --data "$SHARED/$set" --index "$OUT/$set/index" "${extra[@]}" "${runs[@]}" \
      --out "$OUT/$set/bootstrap.json"
done
# TweetQA against the first stage a user already has (docs/results/real/tweetqa-open/first-stage/): BM25,
# the dev-tuned hybrid, and tied-tower distillation from dense or BM25 candidates, three training seeds
FS_ROWS=offtheshelf,bm25,hybrid,step1,step1-full,step1-bm25-full,answer-full,answer-bm25-full
attnrag experiment paper --out "$OUT/tweetqa-fs" --data "$SHARED/tweetqa-open" --config "$TIED" --rows $FS_ROWS
for seed in 1 2; do
  attnrag experiment paper --out "$OUT/tweetqa-fs-seed$seed" --seed $seed --data "$SHARED/tweetqa-open" \
      --config "$TIED" --rows $FS_ROWS
done
