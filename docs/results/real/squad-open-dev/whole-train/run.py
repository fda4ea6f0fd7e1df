"""Distil the zero-shot retriever from the Step-1 reader over the WHOLE SQuAD train split (3,725 questions).

Provenance copy of the command behind whole-train/result.json (run from the repository root with the
project's venv; BASE is the output directory of docs/results/real/run.sh's SQuAD call, which holds the
Step-1 reader and the base index). Same teacher as the committed Step-1 row (attn-norm, top-5-token
aggregation, 5 candidates, 192-token passages); only the question count and the step count differ.
"""

import json
import sys
import time
from pathlib import Path

from attnrag.data.formats import load_corpus_dir
from attnrag.distill.teacher import TeacherConfig
from attnrag.evaluate.qa import load_system
from attnrag.evaluate.retrieval import evaluate_retrieval
from attnrag.reader.prompt import PromptConfig
from attnrag.train.config import TrainConfig
from attnrag.train.trainer import Trainer

BASE = Path(sys.argv[1] if len(sys.argv) > 1 else "real-out/squad-open-dev")
OUT = Path(sys.argv[2] if len(sys.argv) > 2 else "real-out/squad-whole-train")
DATA = "../shared/data/squad-open-dev"
STEPS = 350  # 3 epochs of 3,725 questions at batch 32

started = time.time()
_, splits = load_corpus_dir(DATA)
cfg = TrainConfig(setting="offtheshelf-distill", data=DATA, out=str(OUT), index=str(BASE / "index"),
                  reader=str(BASE / "runs/step1/reader"), n_passages=3, distill_passages=5,
                  train_questions=None, distill_questions=None, distill_steps=STEPS, retriever_lr=5e-5,
                  tau_gold=0.01, seed=0, eval_every=10_000, eval_questions=32, indicator_questions=0,
                  prompt=PromptConfig(max_passage_tokens=192),
                  teacher=TeacherConfig(aggregation="topk", topk_tokens=5))
Trainer(cfg, resume=(OUT / "config.json").is_file(), progress=True).run()
system = load_system(OUT, load_reader=False)
test = evaluate_retrieval(system.index, system.passages, system.retriever, splits["test"], ks=[1, 5, 10])
teacher = [json.loads(line) for line in (OUT / "metrics.jsonl").read_text().splitlines()
           if '"event": "teacher"' in line]
result = {"distill_questions": len(splits["train"]), "distill_steps": STEPS,
          "test": {k: round(v, 4) for k, v in test.items() if isinstance(v, float)},
          "teacher": teacher[-1] if teacher else None, "wall_seconds": round(time.time() - started)}
print(json.dumps(result), flush=True)
