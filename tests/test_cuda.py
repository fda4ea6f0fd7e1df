"""The CUDA path against the CPU path: run by ``benchmarks/gpu_check.sh`` on a machine with a GPU.

Skipped where no CUDA device exists (CPU is the tested target; CI has no GPU). Each check compares
what CUDA computes with what the CPU computes for the same tiny random-weight models: retriever
embeddings, teacher scores in fp32 and under bf16 autocast, and a whole training run in bf16 whose
retriever and reader load back on the CPU.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import save_tiny_bert, save_tiny_reader, small_world

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (benchmarks/gpu_check.sh runs it on one)")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cuda-assets")
    return {"world": small_world(root / "world"), "reader": save_tiny_reader(root / "reader"),
            "retriever": save_tiny_bert(root / "bert")}


def _candidates(world, n_questions: int = 4, k: int = 3):
    from attnrag.data.formats import load_corpus_dir

    passages, splits = load_corpus_dir(world)
    examples = splits["train"][:n_questions]
    by_id = {p.id: p for p in passages}
    cands = []
    for e in examples:  # the gold passage and two others, in a fixed order
        others = [p for p in passages if p.id not in e.gold_passage_ids][: k - 1]
        cands.append([by_id[e.gold_passage_ids[0]], *others])
    return examples, cands


def test_auto_picks_the_gpu():
    from attnrag.parallel import pick_device

    assert pick_device("auto").type == "cuda"


def test_retriever_embeddings_match_the_cpu(assets):
    from attnrag.data.formats import load_corpus_dir
    from attnrag.retrieval.encoder import BiEncoder

    passages, _ = load_corpus_dir(assets["world"])
    cpu = BiEncoder.from_pretrained(assets["retriever"], device="cpu").encode_passages(passages[:64], progress=False)
    gpu = BiEncoder.from_pretrained(assets["retriever"], device="cuda").encode_passages(passages[:64], progress=False)
    torch.testing.assert_close(torch.from_numpy(gpu), torch.from_numpy(cpu), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_teacher_scores_match_the_cpu(assets, precision):
    """fp32 on CUDA equals the CPU; bf16 autocast (the capture computes its rows in fp32 inside it)
    stays close and keeps each question's ranking of its passages."""
    from attnrag.distill.config import TeacherConfig
    from attnrag.distill.teacher import Teacher
    from attnrag.reader.factory import load_reader

    examples, cands = _candidates(assets["world"])
    questions, answers = [e.question for e in examples], [e.answers[0] for e in examples]
    scores = {}
    for device, prec in (("cpu", "fp32"), ("cuda", precision)):
        reader = load_reader(assets["reader"], device=device, precision=prec)
        scores[device] = Teacher(reader, TeacherConfig()).score(questions, cands, answers).float().cpu()
    if precision == "fp32":
        torch.testing.assert_close(scores["cuda"], scores["cpu"], atol=1e-4, rtol=1e-3)
    else:
        torch.testing.assert_close(scores["cuda"], scores["cpu"], atol=5e-2, rtol=5e-2)
        spread = scores["cpu"].max(1).values - scores["cpu"].min(1).values
        clear = spread > 0.1  # rankings compared where the passages' scores are not near-ties
        assert torch.equal(scores["cuda"][clear].argmax(1), scores["cpu"][clear].argmax(1))


def test_a_bf16_training_run_on_cuda_loads_back_on_the_cpu(assets, tmp_path):
    from attnrag.evaluate.qa import load_system
    from attnrag.train.config import TrainConfig
    from attnrag.train.trainer import Trainer

    cfg = TrainConfig(setting="finetuned-distill", data=str(assets["world"]), out=str(tmp_path / "run"),
                      reader=str(assets["reader"]), retriever=str(assets["retriever"]), n_passages=3,
                      train_questions=16, reader_steps=4, reader_batch_size=2, distill_steps=4,
                      distill_batch_size=4, eval_every=2, eval_questions=8, indicator_questions=0,
                      reader_trainable_layers=2, device="cuda", precision="bf16")
    manifest = Trainer(cfg, progress=False).run()
    assert manifest["final"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    system = load_system(tmp_path / "run", load_reader=True, device="cpu")
    assert next(system.retriever.parameters()).device.type == "cpu"
