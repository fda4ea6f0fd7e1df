import json, shutil, sys, time
from pathlib import Path
from attnrag.train.config import TrainConfig
from attnrag.train.trainer import Trainer, select_subset
from attnrag.evaluate.qa import load_system
from attnrag.evaluate.retrieval import evaluate_retrieval
from attnrag.data.formats import load_corpus_dir
from attnrag.reader.prompt import PromptConfig
from attnrag.distill.teacher import TeacherConfig
base = Path("/tmp/real2/squad-open-dev")
passages, splits = load_corpus_dir("../shared/data/squad-open-dev")
distill_q = select_subset(select_subset(splits["train"], 800, 0), 200, 1)
for spec in sys.argv[1:]:
    name, lr, steps, tau, *rest = spec.split(":")
    n_distill = int(rest[0]) if rest else 200
    out = Path(f"/tmp/sweep/{name}")
    out.mkdir(parents=True, exist_ok=True)
    if n_distill == 200:
        shutil.copy(base / "runs/step1/teacher_cache.pt", out / "teacher_cache.pt")
    t0 = time.time()
    cfg = TrainConfig(setting="offtheshelf-distill", data="../shared/data/squad-open-dev", out=str(out),
                      index=str(base / "index"), reader=str(base / "runs/step1/reader"), n_passages=3,
                      distill_passages=5, train_questions=800, distill_questions=n_distill, distill_steps=int(steps),
                      retriever_lr=float(lr), tau_gold=float(tau), seed=0, eval_every=1000, eval_questions=8,
                      indicator_questions=0, prompt=PromptConfig(max_passage_tokens=192),
                      teacher=TeacherConfig(aggregation="topk", topk_tokens=5))
    Trainer(cfg, resume=(out / "config.json").is_file(), progress=False).run()
    system = load_system(out, load_reader=False)
    test = evaluate_retrieval(system.index, system.passages, system.retriever, splits["test"], ks=[1, 5])
    subset = select_subset(select_subset(splits["train"], 800, 0), n_distill, 1)
    train = evaluate_retrieval(system.index, system.passages, system.retriever, subset, ks=[1, 5])
    print(json.dumps({"name": name, "lr": lr, "steps": steps, "tau": tau, "distill_questions": n_distill, "test_gR1": round(test["gold_recall@1"], 4),
                      "test_gR5": round(test["gold_recall@5"], 4), "distillq_gR1": round(train["gold_recall@1"], 4),
                      "seconds": round(time.time() - t0)}), flush=True)
