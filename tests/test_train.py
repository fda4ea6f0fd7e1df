"""Training loop: every setting runs, resumes to the same numbers, and guards against NaN losses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnrag.errors import InputError, TrainingDivergedError
from attnrag.train.config import TrainConfig
from attnrag.train.schedule import make_scheduler, parse_refresh_schedule, should_refresh
from attnrag.train.trainer import Trainer

from helpers import save_tiny_bert, save_tiny_reader, small_world


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("train-assets")
    return {
        "world": str(small_world(root / "world")),
        "reader": str(save_tiny_reader(root / "reader")),
        "retriever": str(save_tiny_bert(root / "bert")),
    }


def make_config(assets: dict, out: Path, **overrides) -> TrainConfig:
    options = dict(data=assets["world"], out=str(out), reader=assets["reader"], retriever=assets["retriever"],
                   n_passages=3, train_questions=12, reader_steps=4, reader_batch_size=2, distill_steps=6,
                   distill_batch_size=4, joint_steps=3, joint_batch_size=2, eval_every=3, save_every=2,
                   eval_questions=6, indicator_questions=0, reader_trainable_layers=2, seed=3,
                   first_stage="dense",  # the hand computations below retrieve with the dense retriever
                   pilot_steps=0)  # the pilot has its own tests (test_trainer_pilot.py)
    options.update(overrides)
    return TrainConfig(**options)


def losses(run_dir: Path) -> list[tuple[str, int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r["loss"]) for r in rows if "loss" in r]


@pytest.mark.parametrize("setting", ["reader", "offtheshelf-distill", "finetuned-distill", "joint"])
def test_every_setting_produces_a_loadable_run(assets, tmp_path, setting):
    manifest = Trainer(make_config(assets, tmp_path / setting, setting=setting), progress=False).run()
    run = tmp_path / setting
    assert manifest["final"] and (run / "run.json").is_file() and (run / "config.json").is_file()
    assert losses(run), "no loss was logged"
    assert manifest["stages_done"] == list(make_config(assets, run, setting=setting).stages)
    from attnrag.reader.decoder import DecoderReader
    from attnrag.retrieval.encoder import BiEncoder

    def moved(a, b) -> bool:
        return any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))

    trains_reader = setting in ("reader", "finetuned-distill", "joint")
    if trains_reader:  # the saved reader loads and is not the reader it started from
        assert manifest["reader"] == str((run / "reader").resolve())
        assert moved(DecoderReader.from_pretrained(run / "reader").model,
                     DecoderReader.from_pretrained(assets["reader"]).model)
    else:
        assert manifest["reader"] == assets["reader"]
    if setting != "reader":  # the saved retriever loads and its query tower moved
        assert manifest["retriever"] == str((run / "retriever").resolve())
        assert moved(BiEncoder.from_pretrained(run / "retriever", device="cpu").query_encoder,
                     BiEncoder.from_pretrained(assets["retriever"], device="cpu").query_encoder)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert any("dev_gold_recall@1" in r for r in rows)
    else:
        assert manifest["retriever"] == assets["retriever"]


def test_query_side_training_leaves_the_passage_tower_untouched(assets, tmp_path):
    from attnrag.retrieval.encoder import BiEncoder

    Trainer(make_config(assets, tmp_path / "run", setting="offtheshelf-distill", retriever_lr=1e-2),
            progress=False).run()
    trained = BiEncoder.load(tmp_path / "run" / "retriever")
    base = BiEncoder.from_pretrained(assets["retriever"])
    for (name, p_base), p_new in zip(base.query_encoder.named_parameters(), trained.passage_encoder.parameters()):
        assert torch.equal(p_base, p_new), name
    changed = any(not torch.equal(a, b) for a, b in zip(base.query_encoder.parameters(),
                                                        trained.query_encoder.parameters()))
    assert changed, "the query tower did not train"


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("setting,stop_at", [("finetuned-distill", ("reader", 3)),
                                             ("finetuned-distill", ("distill", 5))])
def test_resume_reaches_the_same_metrics_as_an_uninterrupted_run(assets, tmp_path, monkeypatch, setting, stop_at):
    straight = tmp_path / "straight"
    Trainer(make_config(assets, straight, setting=setting), progress=False).run()

    broken = tmp_path / "broken"
    original_log = Trainer._log

    def log_then_die(self, row):
        original_log(self, row)
        if (row.get("stage"), row.get("step")) == stop_at and "loss" in row:
            raise Interrupt

    monkeypatch.setattr(Trainer, "_log", log_then_die)
    with pytest.raises(Interrupt):
        Trainer(make_config(assets, broken, setting=setting), progress=False).run()
    monkeypatch.setattr(Trainer, "_log", original_log)
    Trainer(TrainConfig(out=str(broken)), resume=True, progress=False).run()

    a, b = losses(straight), losses(broken)
    assert [x[:2] for x in a] == [x[:2] for x in b]
    for (_, _, la), (_, _, lb) in zip(a, b):
        assert la == pytest.approx(lb, rel=1e-4, abs=1e-6)


def test_nan_losses_are_skipped_then_stop_the_run(assets, tmp_path, monkeypatch):
    from attnrag.reader.decoder import DecoderReader

    monkeypatch.setattr(DecoderReader, "loss", lambda self, batch, capture=None: torch.tensor(float("nan"),
                                                                                             requires_grad=True))
    cfg = make_config(assets, tmp_path / "nan", setting="reader", reader_steps=5, max_bad_steps=3)
    with pytest.raises(TrainingDivergedError, match="3 consecutive steps"):
        Trainer(cfg, progress=False).run()
    rows = [json.loads(line) for line in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert sum("skipped" in r for r in rows) == 3


def test_existing_run_directory_is_not_overwritten(assets, tmp_path):
    Trainer(make_config(assets, tmp_path / "run", setting="reader", reader_steps=1), progress=False).run()
    with pytest.raises(InputError, match="--resume"):
        Trainer(make_config(assets, tmp_path / "run", setting="reader"), progress=False)


@pytest.mark.parametrize("field,value", [("reader_lr", -1.0), ("n_passages", 0), ("setting", "magic"),
                                         ("tau_gold", float("nan")), ("scheduler", "step")])
def test_bad_options_name_the_field(assets, tmp_path, field, value):
    with pytest.raises(InputError) as err:
        make_config(assets, tmp_path / "x", **{field: value}).validate()
    assert err.value.field == field


def test_k_larger_than_corpus_is_rejected(assets, tmp_path):
    with pytest.raises(InputError, match="larger than the corpus"):
        Trainer(make_config(assets, tmp_path / "big", setting="reader", n_passages=10_000), progress=False).run()


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_lr_schedules_against_a_hand_computation(kind):
    """10 steps, 20% warm-up: 0, 1/2, then 1 -> 0 (linear: (10 - s) / 8; cosine: half a cosine; constant 1)."""
    import math

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    scheduler = make_scheduler(optimizer, total_steps=10, warmup_ratio=0.2, kind=kind)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"] / 2.0)
        optimizer.step()
        scheduler.step()
    after = {"linear": lambda s: (10 - s) / 8, "cosine": lambda s: 0.5 * (1 + math.cos(math.pi * (s - 2) / 8)),
             "constant": lambda s: 1.0}[kind]
    assert seen == pytest.approx([0.0, 0.5] + [after(s) for s in range(2, 10)])


def test_refresh_schedule():
    schedule = parse_refresh_schedule("0-1000:500,1000-10000:2000")
    assert [s for s in range(1, 6001) if should_refresh(s, schedule)] == [500, 1000, 3000, 5000]
    with pytest.raises(InputError):
        parse_refresh_schedule("0-10")


def test_full_retriever_training_refreshes_the_index(assets, tmp_path):
    cfg = make_config(assets, tmp_path / "full", setting="offtheshelf-distill", retriever_training="full",
                      distill_mode="online", refresh_schedule="0-100:2", distill_steps=4, reader_batch_size=2)
    manifest = Trainer(cfg, progress=False).run()
    assert manifest["passage_tower_changed"] and (tmp_path / "full" / "index" / "index.faiss").is_file()
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("event") == "index_refresh" for r in rows) >= 2


@pytest.mark.parametrize("target", ["teacher", "gold"])
def test_cached_training_of_the_tied_tower(assets, tmp_path, target):
    """retriever_training=full with cached teacher scores (or gold labels): one tied tower learns on
    both sides, the teacher runs once, and the run's index is the saved retriever's encoding of the
    corpus (checked against an independent re-encoding), so the run retrieves what it learned."""
    import faiss
    import numpy as np

    from attnrag.data.formats import load_corpus_dir
    from attnrag.retrieval.encoder import BiEncoder

    run = tmp_path / target
    cfg = make_config(assets, run, setting="offtheshelf-distill", retriever_training="full", target=target,
                      distill_steps=4, eval_every=2, retriever_lr=1e-3)
    manifest = Trainer(cfg, progress=False).run()
    assert manifest["passage_tower_changed"] and manifest["index"] == str((run / "index").resolve())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("event") == "teacher" for r in rows) == (1 if target == "teacher" else 0)
    # the teacher check on held-out dev questions too (a fine-tuned reader has seen its distillation ones)
    dev_checks = [r for r in rows if r.get("event") == "teacher_dev"]
    assert len(dev_checks) == (1 if target == "teacher" else 0)
    if dev_checks:
        assert dev_checks[0]["split"] == "dev" and dev_checks[0]["questions_scored"] == 6  # eval_questions
        assert "teacher_top1_gold" in dev_checks[0] and "answer_check" in dev_checks[0]
    for r in rows:
        if r.get("event") == "teacher":  # the label-free check is logged beside the gold one, on the same scores
            assert r["answer_check"]["questions_with_answers"] > 0 and "paired" in r and "paired" in r["answer_check"]
    assert sum(r.get("event") == "index_refresh" for r in rows) == 2  # before the evaluations at steps 2 and 4
    trained = BiEncoder.from_pretrained(run / "retriever", device="cpu")
    base = BiEncoder.from_pretrained(assets["retriever"], device="cpu")
    assert trained.tied and not (run / "retriever" / "passage_encoder").exists()
    moved = [not torch.equal(a, b) for a, b in zip(trained.passage_encoder.state_dict().values(),
                                                    base.passage_encoder.state_dict().values(), strict=True)]
    assert any(moved)
    passages, _ = load_corpus_dir(assets["world"])
    index = faiss.read_index(str(run / "index" / "index.faiss"))
    stored = index.reconstruct_n(0, index.ntotal)
    ids = json.loads((run / "index" / "ids.json").read_text())
    order = {p.id: i for i, p in enumerate(passages)}
    expected = trained.encode_passages(passages, progress=False)[[order[i] for i in ids]]
    np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_teacher_accuracy_against_the_retrievers_own_top1():
    from attnrag.data.records import QAExample
    from attnrag.evaluate.teacher import teacher_accuracy

    examples = [QAExample("q1", "?", ["a"], ["p2"]), QAExample("q2", "?", ["a"], ["p1"]),
                QAExample("q3", "?", ["a"], ["p9"]), QAExample("q4", "?", ["a"], [])]
    candidates = [["p1", "p2", "p3"], ["p1", "p2", "p3"], ["p1", "p2", "p3"], ["p1", "p2", "p3"]]
    scores = torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.9, 0.05, 0.05]])
    stats = teacher_accuracy(scores, candidates, examples)
    # 3 labelled questions; q3's gold is not a candidate; q4 has no gold ids and does not count
    assert stats["teacher_top1_gold"] == pytest.approx(1 / 3)  # q1 right, q2 wrong
    assert stats["retriever_top1_gold"] == pytest.approx(1 / 3)  # the first candidate: q2 right
    assert stats["teacher_top1_gold_when_retrieved"] == pytest.approx(1 / 2)
    assert stats["candidates_contain_gold"] == pytest.approx(2 / 3)
    assert stats["questions"] == 3 and stats["questions_without_gold"] == 1 and stats["flat_rows"] == 0
    # an all-zero row (an empty generated answer) has no favourite: a miss, not agreement with rank 0
    flat = teacher_accuracy(torch.zeros(1, 3), [["p2", "p1", "p3"]], [QAExample("q", "?", ["a"], ["p2"])])
    assert flat["teacher_top1_gold"] == 0.0 and flat["retriever_top1_gold"] == 1.0 and flat["flat_rows"] == 1
    assert flat["teacher_top1_rank_share"] == []
    with pytest.raises(ValueError, match="one row per question"):
        teacher_accuracy(scores[:3], candidates, examples)


@pytest.mark.parametrize("retriever_training", ["query", "full"])
def test_supervised_upper_bound_trains_on_gold_passages(assets, tmp_path, retriever_training):
    """target=gold (in-batch loss by default): cross-entropy towards the gold passage among in-batch and retrieved negatives;
    its first logged loss equals a hand computation from the base retriever."""
    import math

    import numpy as np

    from attnrag.data.formats import load_corpus_dir
    from attnrag.retrieval.encoder import BiEncoder
    from attnrag.train.trainer import select_subset

    from transformers import AutoModel, AutoTokenizer

    no_dropout = tmp_path / "bert-no-dropout"  # the reference runs in eval mode: training must match it
    model = AutoModel.from_pretrained(assets["retriever"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.save_pretrained(no_dropout)
    AutoTokenizer.from_pretrained(assets["retriever"]).save_pretrained(no_dropout)
    assets = {**assets, "retriever": str(no_dropout)}
    cfg = make_config(assets, tmp_path / "sup", setting="offtheshelf-distill", target="gold",
                      distill_batch_size=12, distill_steps=1, retriever_lr=1e-9, warmup_ratio=0.0,
                      retriever_training=retriever_training)
    Trainer(cfg, progress=False).run()
    rows = [json.loads(line) for line in (tmp_path / "sup" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "targets" and r["target"] == "gold" and r["loss_kind"] == "in-batch"
               and r["questions"] > r["left_out"] for r in rows)
    logged = [r["loss"] for r in rows if r.get("stage") == "distill" and "loss" in r][0]
    # Reference: every question of the (single, full) batch against the union of all candidates.
    passages, splits = load_corpus_dir(assets["world"])
    by_id = {p.id: p for p in passages}
    examples = [e for e in select_subset(select_subset(splits["train"], 12, 3), None, 4) if e.gold_passage_ids]
    enc = BiEncoder.from_pretrained(assets["retriever"], device="cpu")
    q = enc.encode_queries([e.question for e in examples]).numpy()
    p_all = enc.encode_passages(passages, progress=False)
    top = np.argsort(-(q @ p_all.T), axis=1)[:, :3]
    cands = []
    for e, row in zip(examples, top, strict=True):
        ids = [passages[j].id for j in row]
        gold = next((i for i in ids if i in e.gold_passage_ids), e.gold_passage_ids[0])
        cands.append([gold] + [i for i in ids if i not in e.gold_passage_ids][:2])
    pool = sorted({i for row in cands for i in row})
    emb = enc.encode_passages([by_id[i] for i in pool], progress=False)
    logits = (q @ emb.T) / math.sqrt(q.shape[1]) / 0.01  # a plain BERT dir: dot product, ATLAS scaling
    total = 0.0
    for b, (e, row) in enumerate(zip(examples, cands, strict=True)):
        mask = np.array([pid in e.gold_passage_ids and pid != row[0] for pid in pool])
        z = np.where(mask, -np.inf, logits[b])
        total += -(z[pool.index(row[0])] - np.log(np.exp(z - z.max()).sum()) - z.max())
    assert logged == pytest.approx(total / len(examples), rel=1e-3)


def test_generated_answers_teacher(assets, tmp_path, monkeypatch):
    """teacher_answers=generated: the teacher scores the reader's own answers, not the gold ones."""
    from attnrag.reader.decoder import DecoderReader

    seen: list[list[str]] = []
    real_score = Trainer._score_chunk

    def fake_generate(self, questions, passages, **kwargs):
        return ["" if i == 0 else f"answer {i}" for i in range(len(questions))]

    def spy(self, part, cands):
        scores, answers = real_score(self, part, cands)
        seen.append(answers)
        return scores, answers

    monkeypatch.setattr(DecoderReader, "generate", fake_generate)
    monkeypatch.setattr(Trainer, "_score_chunk", spy)
    cfg = make_config(assets, tmp_path / "gen", setting="offtheshelf-distill", teacher_answers="generated")
    Trainer(cfg, progress=False).run()
    assert seen and all(a[0] == "" for a in seen)
    rows = [json.loads(line) for line in (tmp_path / "gen" / "metrics.jsonl").read_text().splitlines()]
    teacher = [r for r in rows if r.get("event") == "teacher"][-1]
    assert teacher["generated_answer_empty"] == len(seen)  # one empty answer per chunk, left out
    assert teacher["generated_answer_em"] == 0.0


@pytest.mark.parametrize("retriever_training", ["query", "full"])
def test_logged_kl_equals_a_recomputation_from_the_cached_teacher(assets, tmp_path, retriever_training):
    """The trainer's first distillation step against an independent computation: the cache holds the
    base retriever's top-K candidates in rank order, one teacher row per candidate, and the logged loss
    is KL(softmax(teacher / tau_gold) || softmax(student / tau_score)) over exactly those candidates."""
    import math

    import numpy as np
    from transformers import AutoModel, AutoTokenizer

    from attnrag.data.formats import load_corpus_dir
    from attnrag.retrieval.encoder import BiEncoder
    from attnrag.train.checkpoint import load_teacher_cache
    from attnrag.train.trainer import TEACHER_CACHE, select_subset

    no_dropout = tmp_path / "bert-no-dropout"  # the reference runs in eval mode: training must match it
    AutoModel.from_pretrained(assets["retriever"], hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0).save_pretrained(no_dropout)
    AutoTokenizer.from_pretrained(assets["retriever"]).save_pretrained(no_dropout)
    cfg = make_config({**assets, "retriever": str(no_dropout)}, tmp_path / "kl", setting="offtheshelf-distill",
                      distill_batch_size=12, distill_steps=1, retriever_lr=1e-9, warmup_ratio=0.0,
                      distill_passages=4, tau_gold=0.5, tau_score=0.02, retriever_training=retriever_training)
    Trainer(cfg, progress=False).run()
    cache = load_teacher_cache(tmp_path / "kl" / TEACHER_CACHE)
    rows = [json.loads(line) for line in (tmp_path / "kl" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["loss"] for r in rows if r.get("stage") == "distill" and "loss" in r][0]

    passages, splits = load_corpus_dir(assets["world"])
    examples = select_subset(select_subset(splits["train"], 12, 3), None, 4)
    assert cache["question_ids"] == [e.id for e in examples]
    enc = BiEncoder.from_pretrained(no_dropout, device="cpu")
    q = enc.encode_queries([e.question for e in examples]).numpy()
    p = enc.encode_passages(passages, progress=False)
    top = np.argsort(-(q @ p.T), axis=1, kind="stable")[:, :4]
    assert cache["candidate_ids"] == [[passages[j].id for j in row] for row in top]
    teacher = np.stack([r.numpy() for r in cache["rows"]]).astype(np.float64) / 0.5
    student = np.take_along_axis(q @ p.T, top, axis=1).astype(np.float64) / math.sqrt(q.shape[1]) / 0.02

    def log_softmax(x):
        m = x.max(1, keepdims=True)
        return x - m - np.log(np.exp(x - m).sum(1, keepdims=True))

    target = np.exp(log_softmax(teacher))
    kl = (target * (log_softmax(teacher) - log_softmax(student))).sum(1).mean()
    assert logged == pytest.approx(kl, rel=1e-4)


def test_api_train_logs_the_papers_indicators_at_each_evaluation(assets, tmp_path):
    """``attnrag train`` attaches the indicators (analysis.indicators.attach_indicators) to the trainer:
    every evaluation row carries the three values, and none is logged when indicator_questions is 0."""
    from attnrag import api

    keys = {"ind_answer_attn_share_ge_0.057", "ind_answer_rho_mean", "ind_question_attn_mean"}
    for n, expect in ((3, True), (0, False)):
        out = tmp_path / f"run{n}"
        cfg = make_config(assets, out, setting="offtheshelf-distill", indicator_questions=n).to_dict()
        api.train(progress=False, **cfg)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        evals = [r for r in rows if "dev_gold_recall@1" in r]
        assert evals
        assert all(keys <= set(r) for r in evals) if expect else not any(keys & set(r) for r in evals)


def test_run_manifest_records_its_provenance(assets, tmp_path):
    """run.json says what produced the run: command, commit, machine, versions and wall time."""
    Trainer(make_config(assets, tmp_path / "run", setting="offtheshelf-distill"), progress=False).run()
    record = json.loads((tmp_path / "run" / "run.json").read_text())["provenance"]
    assert {"command", "commit", "dirty", "machine", "versions", "started_at", "wall_seconds"} <= set(record)


def test_a_teacher_cache_for_other_candidates_is_scored_afresh(assets, tmp_path):
    """A teacher cache is only kept when its questions *and* candidates are the ones this run retrieves:
    a copied or stale cache with other candidates is discarded and the teacher scores again."""
    from attnrag.train.checkpoint import load_teacher_cache, save_teacher_cache
    from attnrag.train.trainer import TEACHER_CACHE

    first = tmp_path / "first"
    Trainer(make_config(assets, first, setting="offtheshelf-distill"), progress=False).run()
    good = load_teacher_cache(first / TEACHER_CACHE)
    for name, candidates, kept in (("same", good["candidate_ids"], True),
                                   ("other", [row[::-1] for row in good["candidate_ids"]], False)):
        run = tmp_path / name
        run.mkdir()
        fake = {**good, "candidate_ids": candidates, "rows": [torch.full_like(r, 7.0) for r in good["rows"]]}
        save_teacher_cache(run / TEACHER_CACHE, fake)
        Trainer(make_config(assets, run, setting="offtheshelf-distill"), progress=False).run()
        log = (run / "metrics.jsonl").read_text()
        rows = torch.stack(load_teacher_cache(run / TEACHER_CACHE)["rows"])
        assert ("teacher_cache_discarded" in log) is not kept
        assert bool((rows == 7.0).all()) is kept  # kept: the copied scores; discarded: the teacher's own


def test_a_moved_run_directory_works_from_another_working_directory(assets, tmp_path, monkeypatch):
    """run.json stores the run's own parts relative to the run and config.json its inputs as absolute
    paths, so a run copied or moved elsewhere exports, evaluates and resumes from any directory."""
    import shutil

    from attnrag import api
    from attnrag.evaluate.qa import load_system

    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    cfg = make_config(assets, Path("runs/ftd"), setting="finetuned-distill", retriever_training="full",
                      reader_steps=2, distill_steps=2)
    Trainer(cfg, progress=False).run()
    raw = json.loads(Path("runs/ftd/run.json").read_text())
    assert (raw["reader"], raw["retriever"], raw["index"]) == ("reader", "retriever", "index")
    shutil.move(str(tmp_path / "a" / "runs" / "ftd"), str(tmp_path / "moved"))
    shutil.rmtree(tmp_path / "a")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    moved = tmp_path / "moved"
    assert (api.export_retriever(moved, tmp_path / "exported") / "modules.json").is_file()
    system = load_system(moved, device="cpu")
    assert Path(system.source) == moved and len(system.index) > 0
    result = api.evaluate_qa(str(Path(assets["world"]) / "test.jsonl"), run=moved, limit=2, n_passages=2)
    assert result["n"] == 2
    assert Trainer(TrainConfig(data="", out=str(moved)), resume=True, progress=False).run()["final"]
