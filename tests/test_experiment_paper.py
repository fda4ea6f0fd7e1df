"""``run_paper_experiment`` end to end on tiny models, on the small world written in the real formats
(DPR tsv passages, NQ-open questions without gold ids): every row, failure isolation, resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from helpers import save_tiny_reader

from attnrag.data.formats import write_dpr_tsv, write_nq_open
from attnrag.data.synth import generate_world
from attnrag.errors import InputError
from attnrag.experiment import paper
from attnrag.data.formats import load_corpus_dir
from attnrag.evaluate.metrics import has_answer
from attnrag.experiment.config import LEGACY_NAMES, PaperConfig, flat_config, row_plan
from attnrag.experiment.paper import run_paper_experiment


@pytest.fixture(scope="module")
def real_format_data(tmp_path_factory):
    world = generate_world(seed=0, size="small")
    out = tmp_path_factory.mktemp("nq_like")
    write_dpr_tsv(out / "psgs_w100.tsv", world.passages)
    for split, examples in world.splits().items():
        write_nq_open(out / f"{split}.jsonl", examples)
    return out


def tiny_config(tmp_path, tiny_bert_dir) -> PaperConfig:
    reader = save_tiny_reader(tmp_path / "reader")
    return PaperConfig.quick(reader=str(reader), retriever=str(tiny_bert_dir), fid_encoder=str(tiny_bert_dir),
                       n_passages=3, distill_passages=None, train_questions=8, reader_steps=1,
                       reader_batch_size=2, reader_trainable_layers=2, distill_questions=4, distill_steps=2,
                       distill_batch_size=4,
                       fid_reader_steps=1, em_questions=4, row_indicator_questions=3, max_new_tokens=2,
                       eval_questions=2, save_every=50, teachers=("attn-logits", "loop"), seed=5,
                       precision="fp32",
                       # NQ-open questions carry no gold passage ids (no supervised row) and a random
                       # reader generates no answers (no questions-only row): tests/test_domain_sets.py
                       # runs those two on real slices
                       rows=("offtheshelf", "offtheshelf-distill", "step1", "reader", "step2", "fid",
                             "teacher-attn-logits", "teacher-loop", "step1-full",
                             "offtheshelf-distill-full", "bm25", "hybrid", "step1-bm25", "answer-bm25-full"))


def test_budgets_and_validation():
    quick, full = PaperConfig.for_budget("quick"), PaperConfig.for_budget("full")
    assert quick.train.reader_steps < full.train.reader_steps and full.em_questions is None
    keys = [r.key for r in row_plan(quick)]
    assert keys[:8] == ["offtheshelf", "bm25", "hybrid", "offtheshelf-distill", "step1", "reader", "step2", "fid"]
    assert len(row_plan(quick)) == 8 + 5 + 2 + 4 + 6
    demo = PaperConfig.for_budget("demo")
    assert [r.key for r in row_plan(demo)] == ["offtheshelf", "offtheshelf-distill", "step1", "reader"]
    assert demo.row_indicator_questions == 0 and demo.em_questions is None and demo.train.reader_steps == 180
    assert keys[-12:-6] == ["questions-only", "supervised", "offtheshelf-distill-full", "step1-full",
                            "questions-only-full", "supervised-full"]
    assert keys[-6:] == ["answer", "answer-full", "step1-bm25", "step1-bm25-full", "step1-hybrid-full",
                         "answer-bm25-full"]
    # the target x loss grid runs only when selected, and a selected row brings the row it needs
    grid = [r.key for r in row_plan(PaperConfig(rows=("answer-bm25-full-kl", "gated-bm25-full-inbatch")))]
    assert grid == ["step1", "answer-bm25-full-kl", "gated-bm25-full-inbatch"]
    assert [r.key for r in row_plan(PaperConfig(rows=("step1-full", "bm25")))] == ["bm25", "step1", "step1-full"]
    assert [r.key for r in row_plan(PaperConfig(rows=("offtheshelf-distill-full",)))] == ["offtheshelf-distill-full"]
    assert len(row_plan(quick, select=False)) == len(keys) + 12  # the target x loss grid: 6 targets x 2 losses
    with pytest.raises(InputError):
        PaperConfig.for_budget("huge")
    with pytest.raises(InputError):
        PaperConfig(teachers=("attn", "nope")).validate()
    for bad in ("1", -1, 1.5):  # e.g. a --config file's "world_seed": "1"
        with pytest.raises(InputError, match="world_seed"):
            PaperConfig(world_seed=bad).validate()
    with pytest.raises(InputError, match="precision"):
        PaperConfig.quick(precision="fp16").validate()
    with pytest.raises(InputError, match="train.target"):  # rows set it: a config may not
        PaperConfig.quick(train={"target": "answer"}).validate()
    assert demo.train.precision == "auto"  # the demo's numbers stay what they were unless asked


def test_paper_experiment_real_formats_failure_and_resume(tmp_path, tiny_bert_dir, real_format_data,
                                                          monkeypatch):
    cfg = tiny_config(tmp_path, tiny_bert_dir)
    out = tmp_path / "out"

    def broken_warm_start(*args, **kwargs):
        raise RuntimeError("no encoder-decoder today")

    monkeypatch.setattr(paper, "warm_start_fid", broken_warm_start)
    first = run_paper_experiment(out, data=real_format_data, config=cfg, progress=False)
    rows = first["rows"]
    assert rows["fid"]["status"] == "failed" and "no encoder-decoder today" in rows["fid"]["error"]
    done = [k for k in first["order"] if k != "fid"]
    from attnrag.evaluate.metrics import exact_match, f1_score

    for key in done:
        assert rows[key]["status"] == "done", rows[key].get("error")
        # EM and F1 recomputed from the row's own predictions file
        preds = [json.loads(line) for line in (out / "predictions" / f"{key}.jsonl").open()]
        assert len(preds) == rows[key]["n_em_questions"] == 4
        assert rows[key]["em"] == pytest.approx(sum(exact_match(p["prediction"], p["answers"]) for p in preds) / 4)
        assert rows[key]["f1"] == pytest.approx(sum(f1_score(p["prediction"], p["answers"]) for p in preds) / 4)
        assert rows[key]["answer_recall@1"] <= rows[key]["answer_recall@5"] <= rows[key]["answer_recall@10"]
        assert "gold_recall@1" not in rows[key]  # NQ-open questions carry no gold passage ids
        assert rows[key]["indicators"]["n_questions"] == 3
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"]["fid"]["status"] == "failed" and saved["n_test"] == 4
    assert "failed: RuntimeError" in (out / "table.md").read_text()
    # Step 2 started from Step 1; the teacher rows distil from Step 1's reader
    assert json.loads((out / "runs" / "step2" / "config.json").read_text())["init_run"].endswith("step1")
    from attnrag.run import RunDir

    step1_reader = RunDir(out / "runs" / "step1").manifest()["reader"]
    for t in cfg.teachers:
        run_cfg = json.loads((out / "runs" / f"teacher-{t}" / "config.json").read_text())
        assert run_cfg["reader"] == step1_reader and run_cfg["teacher"]["teacher"] == t
    # the grid's precision reaches every trained row (fp32 here: the demo's numbers on a CPU without bf16)
    assert {json.loads((out / "runs" / k / "config.json").read_text())["precision"] for k in done if k not in
            ("offtheshelf", "reader", "bm25", "hybrid")} == {"fp32"}
    # train_seed seeds every row's training; the world's seed stays seed
    assert {json.loads((out / "runs" / k / "config.json").read_text())["seed"] for k in done if k not in
            ("offtheshelf", "reader", "bm25", "hybrid")} == {5}
    # the tied-tower row: Step 1's reader, both towers trained, evaluated on its own re-encoded index
    tied = RunDir(out / "runs" / "step1-full").manifest()
    assert json.loads((out / "runs" / "step1-full" / "run.json").read_text())["index"] == "index"  # relative
    assert tied["reader"] == step1_reader and tied["passage_tower_changed"]
    assert tied["index"] == str((out / "runs" / "step1-full" / "index").resolve())
    from attnrag.train.checkpoint import load_teacher_cache

    shared = [load_teacher_cache(out / "runs" / k / "teacher_cache.pt") for k in ("step1", "step1-full")]
    assert shared[0]["candidate_ids"] == shared[1]["candidate_ids"]  # Step 1's scores, not paid again
    assert torch.equal(torch.stack(shared[0]["rows"]), torch.stack(shared[1]["rows"]))
    tied_log = (out / "runs" / "step1-full" / "metrics.jsonl").read_text()
    assert "teacher_cache_discarded" not in tied_log and '"event": "teacher"' in tied_log
    # off-the-shelf distillation with the tied tower: the base reader, its own row's teacher scores
    otsd = json.loads((out / "runs" / "offtheshelf-distill-full" / "config.json").read_text())
    assert otsd["reader"] == cfg.train.reader and otsd["retriever_training"] == "full"
    shared = [load_teacher_cache(out / "runs" / k / "teacher_cache.pt")["rows"]
              for k in ("offtheshelf-distill", "offtheshelf-distill-full")]
    assert torch.equal(torch.stack(shared[0]), torch.stack(shared[1]))
    # the fine-tuned reader row: Step 1's reader, no training of its own, the zero-shot retriever's passages
    assert rows["reader"]["reader"] == step1_reader and not (out / "runs" / "reader").exists()
    assert rows["reader"]["answer_recall@5"] == rows["offtheshelf"]["answer_recall@5"]
    # the first stages a user already has: BM25 alone, and every dense row fused with it (weight chosen on dev)
    from attnrag.retrieval.lexical import BM25Index

    assert first["indicator_split"] == "dev" and first["n_indicator_questions"] == 3
    passages, splits = load_corpus_dir(real_format_data)
    by_id = {p.id: p for p in passages}
    test = splits["test"]  # retrieval is measured on every test question
    _, ids = BM25Index.build(passages).search([e.question for e in test], 1)
    bm25_r1 = sum(has_answer(by_id[row[0]].text, e.answers) for e, row in zip(test, ids)) / len(test)
    assert rows["bm25"]["answer_recall@1"] == pytest.approx(bm25_r1)
    dev = rows["hybrid"]["dev_recall@1"]
    assert dev["metric"] == "answer_recall@1" and dev["hybrid"] == max(dev["curve"].values())
    assert rows["offtheshelf"]["with_bm25"]["dev_recall@1"]["weight"] == dev["weight"]
    assert rows["offtheshelf"]["with_bm25"]["answer_recall@1"] == pytest.approx(rows["hybrid"]["answer_recall@1"])
    assert rows["step1-bm25"]["first_stage"]["first_stage"] == "bm25"
    answer_cfg = json.loads((out / "runs" / "answer-bm25-full" / "config.json").read_text())
    assert (answer_cfg["target"], answer_cfg["first_stage"], answer_cfg["retriever_training"]) == (
        "answer", "bm25", "full")
    assert "Against the first stage a user already has" in (out / "table.md").read_text()

    # Re-run: only the failed row runs again, and it now works.
    monkeypatch.undo()
    trained = []
    real_train = paper._Context.train

    def counting_train(self, key, *args, **kwargs):
        trained.append(key)
        return real_train(self, key, *args, **kwargs)

    monkeypatch.setattr(paper._Context, "train", counting_train)
    second = run_paper_experiment(out, data=real_format_data, config=cfg, progress=False)
    assert trained == ["fid"]
    fid = second["rows"]["fid"]
    assert fid["status"] == "done", fid.get("error")
    assert fid["reader_kind"] == "fid" and fid["indicators"]["n_questions"] == 3
    assert json.loads((out / "runs" / "fid" / "config.json").read_text())["reader"].endswith("fid-warmstart")
    for key in done:
        assert second["rows"][key] == rows[key]
    for name in ("recall_em.png", "indicators.png", "attention_hist.png", "spearman_hist.png"):
        assert (out / "figures" / name).stat().st_size > 0
    table = (out / "table.md").read_text()
    assert "Encoder-decoder (FiD) distillation" in table and "failed" not in table
    # one predictions file per row, and one per row measured with BM25 in front of its dense retriever
    with_bm25 = [k for k in second["order"] if "with_bm25" in second["rows"][k]]
    expected = sorted(second["order"] + [f"{k}+bm25" for k in with_bm25])
    files = [p.name for p in (out / "predictions").glob("*.jsonl")]
    assert sorted(f.removesuffix(".jsonl") for f in files if not f.endswith(paper.RETRIEVAL_SUFFIX)) == expected
    assert sorted(f.removesuffix(paper.RETRIEVAL_SUFFIX) for f in files if f.endswith(paper.RETRIEVAL_SUFFIX)) == expected

    with pytest.raises(InputError):  # a directory holding another configuration is not mixed into
        run_paper_experiment(out, data=real_format_data, config=replace(cfg, train=replace(cfg.train, seed=1)),
                             progress=False)
    # a directory written before an option existed reads it as its default
    saved = json.loads((out / "results.json").read_text())
    for value, accepted in ((True, True), (False, False)):
        old = {k: v for k, v in saved["config"].items() if k != "with_bm25"}
        (out / "results.json").write_text(json.dumps({**saved, "config": old}))
        call = lambda: run_paper_experiment(out, data=real_format_data, progress=False,  # noqa: E731
                                            config=replace(cfg, with_bm25=value))
        if accepted:
            assert call()["rows"]["step1"] == saved["rows"]["step1"]
        else:
            with pytest.raises(InputError, match="with_bm25"):
                call()
    # a directory written before the grid composed TrainConfig (flat names) is the same experiment
    flat = {**{k: v for k, v in flat_config(saved["config"]).items() if not k.startswith("train.")},
            **{name: _lookup(saved["config"], path) for name, path in LEGACY_NAMES.items()},
            "seed": saved["config"]["world_seed"], "train_seed": saved["config"]["train"]["seed"]}
    assert PaperConfig.from_dict(flat) == PaperConfig.from_dict(saved["config"])
    (out / "results.json").write_text(json.dumps({**saved, "config": flat}))
    assert run_paper_experiment(out, data=real_format_data, progress=False, config=cfg)["rows"]["step1"] == \
        saved["rows"]["step1"]


def test_demo_is_a_preset_of_the_paper_grid(tmp_path, tiny_bert_dir):
    """``attnrag demo`` runs the paper grid's four main rows on the generated world, exports Step 1's
    retriever as a sentence-transformers model and writes report.md with the demo's table."""
    from attnrag.experiment.demo import run_demo

    reader = save_tiny_reader(tmp_path / "reader")
    cfg = PaperConfig.demo(quick=True, reader=str(reader), retriever=str(tiny_bert_dir), train_questions=8,
                           reader_steps=1, reader_batch_size=2, reader_trainable_layers=2, distill_questions=4,
                           distill_steps=2, distill_batch_size=4, em_questions=4, max_new_tokens=2,
                           eval_questions=2, indicator_questions=0, eval_every=1)
    results = run_demo(tmp_path / "demo", quick=True, config=cfg, progress=False)
    assert results["order"] == ["offtheshelf", "offtheshelf-distill", "step1", "reader"]
    assert all(results["rows"][k]["status"] == "done" for k in results["order"])
    assert "indicators" not in results["rows"]["step1"]  # the demo leaves them to attnrag analyze
    assert (tmp_path / "demo" / "retriever-export" / "modules.json").is_file()
    report = (tmp_path / "demo" / "report.md").read_text()
    labels = ["Off-the-shelf checkpoint", "Off-the-shelf distillation", "Fine-tuned reader, zero-shot retriever",
              "Fine-tuned distillation"]
    assert [label in report for label in labels] == [True] * 4
    assert report.index(labels[2]) < report.index(labels[3])  # the demo's order, not the grid's
    metrics = [json.loads(line) for line in (tmp_path / "demo" / "runs" / "step1" / "metrics.jsonl").open()]
    assert sum("dev_gold_recall@1" in m for m in metrics) >= 2  # train_eval_every=1 evaluates within a stage



def _lookup(config: dict, path: tuple[str, ...]):
    for key in path:
        config = config[key]
    return config


def test_first_stage_intervals_pair_the_final_retriever_with_the_dev_pick(tmp_path):
    """Hand-built rows: the dev pick is BM25; a row whose dev prefers its hybrid is paired through its
    ``+bm25`` retrievals, question by question, against BM25's."""
    from attnrag.data.records import QAExample

    examples = [QAExample(f"q{i}", f"question {i}?", ["a"], [f"g{i}"]) for i in range(6)]
    top1 = {"bm25": [1, 1, 0, 0, 1, 0], "offtheshelf": [0, 1, 0, 0, 0, 0], "hybrid": [1, 1, 0, 0, 1, 1],
            "offtheshelf+bm25": [1, 1, 0, 0, 1, 1], "step1": [0, 0, 0, 0, 0, 0], "step1+bm25": [1, 1, 1, 1, 1, 0]}
    (tmp_path / "predictions").mkdir()
    for key, hit in top1.items():
        with open(tmp_path / "predictions" / f"{key}{paper.RETRIEVAL_SUFFIX}", "w") as fh:
            for e, h in zip(examples, hit):
                fh.write(json.dumps({"id": e.id, "retrieved": [e.gold_passage_ids[0] if h else "x", "y"]}) + "\n")
    dev = {"weight": 0.6, "dense": 0.4, "bm25": 0.7, "hybrid": 0.65}
    results = {"rows": {
        "offtheshelf": {"status": "done", "gold_recall@1": 1 / 6, "with_bm25": {"dev_recall@1": {**dev},
                                                                               "gold_recall@1": 4 / 6}},
        "bm25": {"status": "done", "gold_recall@1": 3 / 6},
        "hybrid": {"status": "done", "gold_recall@1": 4 / 6, "dev_recall@1": dev},
        "step1": {"status": "done", "gold_recall@1": 0.0,
                  "with_bm25": {"dev_recall@1": {**dev, "dense": 0.5, "hybrid": 0.8}, "gold_recall@1": 5 / 6}},
    }}
    got = paper.first_stage_intervals(tmp_path, results, examples)
    assert got["picked_on_dev"] == "bm25" and got["best_on_test"] == "hybrid" and got["n"] == 6
    step1 = got["rows"]["step1"]
    assert step1["final"] == "hybrid"
    assert step1["vs_picked_on_dev"]["delta"] == pytest.approx((5 - 3) / 6)
    assert step1["vs_best_on_test"]["delta"] == pytest.approx((5 - 4) / 6)
    assert step1["vs_picked_on_dev"]["low"] <= step1["vs_picked_on_dev"]["delta"] <= step1["vs_picked_on_dev"]["high"]
    assert got["rows"]["offtheshelf"]["vs_picked_on_dev"]["delta"] == pytest.approx((4 - 3) / 6)  # its hybrid
