"""The experiments' reports: Markdown tables, the results README table and the figures.

Reads only the results dictionaries the runs write (``results.json``), so a committed experiment can
be re-rendered without re-running it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_open, atomic_path
from .config import DEMO_ROWS, PaperConfig, Row

def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_table(results: dict, plan: list[Row] | None = None) -> str:
    """The comparison as a Markdown table (rows in plan order; failed rows show their error)."""
    from ..analysis.indicators import ATTENTION_THRESHOLD

    share_key = f"answer_attn_share_ge_{ATTENTION_THRESHOLD:g}"
    paper = results.get("paper_nq", {})
    keys = [r.key for r in plan] if plan else results.get("order", list(results["rows"]))
    header = ("| setting | reader | teacher | EM | F1 | R@1 | R@5 | R@10 | gold R@1 | gold R@5 | gold R@10 | "
              f"att>={ATTENTION_THRESHOLD:g} | rho | paper att | paper rho | teacher top-1 gold (/ retriever) | wall s |")
    lines = [header, "|" + "---|" * 17]
    for key in keys:
        r = results["rows"].get(key)
        if r is None:
            continue
        if r.get("status") != "done":
            error = str(r.get("error", "not run")).replace("|", "/").splitlines()[0][:160]
            lines.append(f"| {r['label']} | {r.get('reader_kind', '')} | {r.get('teacher', '')} | "
                         f"failed: {error} |" + " |" * 13)
            continue
        ind = r.get("indicators") or {}
        ref = paper.get(r.get("paper_setting") or "", {})
        stats = r.get("teacher_stats") or {}
        teacher_top1 = _fmt(stats.get("teacher_top1_gold"))
        if stats.get("retriever_top1_gold") is not None:
            teacher_top1 += f" / {stats['retriever_top1_gold']:.3f}"
        lines.append(
            f"| {r['label']} | {r['reader_kind']} | {r['teacher']} | {_fmt(r.get('em'))} | "
            f"{_fmt(r.get('f1'))} | {_fmt(r.get('answer_recall@1'))} | {_fmt(r.get('answer_recall@5'))} | "
            f"{_fmt(r.get('answer_recall@10'))} | {_fmt(r.get('gold_recall@1'))} | "
            f"{_fmt(r.get('gold_recall@5'))} | {_fmt(r.get('gold_recall@10'))} | "
            f"{_fmt(ind.get(share_key), 2)} | {_fmt(ind.get('answer_rho_mean'), 2)} | "
            f"{_fmt(ref.get('answer_attn_share_ge_0.057'), 2)} | {_fmt(ref.get('answer_rho_mean'), 2)} | "
            f"{teacher_top1} | {r.get('wall_seconds', 0):.0f} |")
    return "\n".join(lines)


def best_first_stage(results: dict) -> dict | None:
    """The best of BM25, the zero-shot dense retriever and their dev-tuned hybrid, picked on dev
    recall@1 (ties: the simpler one), with its test gold recall@1 and the one best on test."""
    rows = results["rows"]
    dev = (rows.get("hybrid", {}).get("dev_recall@1")
           or (rows.get("offtheshelf", {}).get("with_bm25") or {}).get("dev_recall@1"))
    if not dev:
        return None
    test = {"bm25": rows.get("bm25", {}).get("gold_recall@1"),
            "dense": rows.get("offtheshelf", {}).get("gold_recall@1"),
            "hybrid": rows.get("hybrid", {}).get("gold_recall@1")
            or (rows.get("offtheshelf", {}).get("with_bm25") or {}).get("gold_recall@1")}
    picked = max(("dense", "bm25", "hybrid"), key=lambda k: (dev[k], -("dense", "bm25", "hybrid").index(k)))
    on_test = max((k for k in test if test[k] is not None), key=lambda k: test[k], default=None)
    return {"picked_on_dev": picked, "dev_recall@1": {k: dev[k] for k in ("dense", "bm25", "hybrid")},
            "weight": dev["weight"], "test_gold_recall@1": test, "picked_test": test.get(picked),
            "best_on_test": on_test}


def final_retriever(record: dict) -> dict | None:
    """A row's final retriever as dev picks it: its dense retriever alone, or its hybrid with BM25."""
    bm25 = record.get("with_bm25")
    if not bm25 or record.get("gold_recall@1") is None:
        return None
    dev = bm25["dev_recall@1"]
    hybrid = dev["hybrid"] > dev["dense"]
    return {"kind": "hybrid" if hybrid else "dense", "weight": dev["weight"] if hybrid else None,
            "dev_recall@1": dev["hybrid"] if hybrid else dev["dense"],
            "gold_recall@1": bm25["gold_recall@1"] if hybrid else record["gold_recall@1"],
            "gold_recall@5": bm25.get("gold_recall@5") if hybrid else record.get("gold_recall@5"),
            "em": bm25.get("em") if hybrid else record.get("em"), "f1": bm25.get("f1") if hybrid else record.get("f1")}


def format_first_stage_table(results: dict, plan: list[Row] | None = None) -> str:
    """Every row against the best first stage a user already has (BM25, zero-shot dense, their hybrid)."""
    best = best_first_stage(results)
    if best is None or not any(r.get("with_bm25") for r in results["rows"].values()):
        return ""
    keys = [r.key for r in plan] if plan else results.get("order", list(results["rows"]))
    lines = ["| setting | trained on | dense gold R@1 / R@5 | + BM25: weight (dev) | hybrid gold R@1 / R@5 | "
             "hybrid EM / F1 | final (dev pick) | final gold R@1 | vs best first stage |", "|" + "---|" * 9]
    for key in keys:
        r = results["rows"].get(key)
        if r is None or r.get("status") != "done":
            continue
        fs = (r.get("first_stage") or {}).get("first_stage", "-" if key in ("offtheshelf", "reader") else "dense")
        if key in ("bm25", "hybrid"):
            lines.append(f"| {r['label']} | - | – | – | {_fmt(r.get('gold_recall@1'))} / {_fmt(r.get('gold_recall@5'))} "
                         f"| {_fmt(r.get('em'))} / {_fmt(r.get('f1'))} | {key} | {_fmt(r.get('gold_recall@1'))} | "
                         f"{_fmt_signed(_minus(r.get('gold_recall@1'), best['picked_test']))} |")
            continue
        h = r.get("with_bm25") or {}
        final = final_retriever(r)
        lines.append(
            f"| {r['label']} | {fs} | {_fmt(r.get('gold_recall@1'))} / {_fmt(r.get('gold_recall@5'))} | "
            f"{_fmt((h.get('dev_recall@1') or {}).get('weight'), 1)} | {_fmt(h.get('gold_recall@1'))} / "
            f"{_fmt(h.get('gold_recall@5'))} | {_fmt(h.get('em'))} / {_fmt(h.get('f1'))} | "
            f"{final['kind'] if final else '–'} | {_fmt(final['gold_recall@1'] if final else None)} | "
            f"{_fmt_signed(_minus(final['gold_recall@1'] if final else None, best['picked_test']))}"
            f"{_interval(results, key)} |")
    dev = best["dev_recall@1"]
    return ("\n".join(lines) + "\n\n"
            f"Best first stage on dev: **{best['picked_on_dev']}** (dev recall@1 dense {dev['dense']:.3f}, "
            f"BM25 {dev['bm25']:.3f}, hybrid {dev['hybrid']:.3f} at BM25 weight {best['weight']:.1f}); its test gold "
            f"recall@1 {_fmt(best['picked_test'])}; best on test: {best['best_on_test']}. 'vs best first stage' is "
            "each row's final retriever (dense alone or its hybrid with BM25, whichever dev picks) minus that"
            + (", with its 95% paired bootstrap interval over the same test questions." if results.get(
                "first_stage_intervals") else "."))


def format_target_grid(grid: dict | None) -> str:
    """The target x loss grid (attnrag.experiment.grid.target_grid) as a markdown table."""
    if not grid or not grid.get("rows"):
        return ""

    def paired(got: dict | None) -> str:
        return "–" if not got else f"{got['delta']:+.3f} [{got['low']:+.3f}, {got['high']:+.3f}]"

    lines = ["| row | target | loss | favourite gold / holds answer (left out) | dense R@1 | fused R@1 | final "
             "(dev picks) R@1 / R@5 | vs best first stage | vs answer match (in-batch) | EM | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in grid["rows"].items():
        lines.append(
            f"| {'**' + key + '**' if key == grid.get('winner_on_dev') else key} | "
            f"{r['target'] + (' (gold labels: the ceiling)' if r.get('needs_gold_ids') else '')} | {r['loss']} | "
            f"{_fmt(r['favourite_is_gold'])} / {_fmt(r['favourite_holds_answer'])} ({r['left_out']}) | "
            f"{_fmt(r['dense_gold_recall@1'])} | {_fmt(r['fused_gold_recall@1'])} | {r['final'] or '–'}: "
            f"{_fmt(r['final_gold_recall@1'])} / {_fmt(r['final_gold_recall@5'])} | {paired(r['vs_best_first_stage'])} | "
            f"{paired(r.get('vs_answer_match'))} | {_fmt(r['em'])} | {_fmt(r['wall_seconds'], 0)} |")
    return ("\n".join(lines) + "\n\n"
            f"Winner on dev (reader-using rows, final dev recall@1): **{grid.get('winner_on_dev') or '–'}**. "
            "Intervals: 95% paired bootstrap over the same test questions, final retriever against final retriever.")


def _interval(results: dict, key: str) -> str:
    got = ((results.get("first_stage_intervals") or {}).get("rows", {}).get(key) or {}).get("vs_picked_on_dev")
    return "" if not got else f" [{got['low']:+.3f}, {got['high']:+.3f}]"


def _minus(a, b):
    return None if a is None or b is None else a - b


def _fmt_signed(value) -> str:
    return "–" if value is None else f"{value:+.3f}"


def write_table(path: Path, results: dict, plan: list[Row]) -> None:
    cfg = PaperConfig.from_dict(results["config"])
    train = cfg.train
    total = results.get("total_wall_seconds")
    text = (
        "# attnrag: the paper's comparison\n\n"
        f"Data: `{results['data']}`"
        + (f" + distractors `{results['distractors']}`" if results.get("distractors") else "")
        + f"; EM and F1 on {results['n_test']} test questions, answer recall@k (DPR matching) and gold "
        f"recall@k (when the data has gold passage ids) on {results.get('n_retrieval_test', results['n_test'])}; "
        f"indicators on the first {results['n_indicator_questions']} "
        f"{'dev questions' if results.get('indicator_split') == 'dev' else 'of the test questions'} (signal `{cfg.indicator_signal}`, relatedness "
        f"`{cfg.relatedness}`, 95th percentile). K = {train.n_passages} passages read; "
        f"{train.distill_passages or train.n_passages} candidates scored by the teacher "
        f"(aggregation `{train.teacher.aggregation}`"
        + (f", top {train.teacher.topk_tokens} tokens" if train.teacher.aggregation == "topk" else "")
        + "). "
        f"Budget `{results['budget']}`; reader `{train.reader}`, retriever `{train.retriever}`.\n\n"
        f"{format_table(results, plan)}\n\n"
        + (f"## Against the first stage a user already has\n\n{first}\n\n" if (first := format_first_stage_table(results, plan)) else "")
        + (f"## Target and loss\n\n{grid}\n\n" if (grid := format_target_grid(results.get("target_grid"))) else "")
        + "How to read it:\n\n"
        "- *Step 1* fine-tunes the reader on the base retriever's passages, then distils the retriever "
        "from it; *Step 2* starts from Step 1's reader and retriever, retrieves with Step 1's retriever, "
        "fine-tunes the reader further and distils again.\n"
        "- *FiD*: a Fusion-in-Decoder reader whose teacher is the decoder's cross-attention x value norm. "
        f"It is a BERT2BERT warm start from `{cfg.fid_encoder}` (cross-attention newly initialised), "
        "fine-tuned "
        f"for {cfg.fid_reader_steps} steps, not Atlas: a weak reader, reported as it is. "
        "Its 'paper' columns are Atlas-large's, for orientation only.\n"
        "- *Step-1 reader, teacher X*: the Step-1 fine-tuned reader with another teacher signal; compare "
        "with Step 1 (teacher attn-norm).\n"
        "- teacher top-1 gold: how often the passage the teacher scores highest is the gold passage, on "
        "the distillation questions (training split); after the slash, how often the retriever's own top "
        "passage is (runs since the retriever's figure was logged). In every run measured so far, a teacher "
        "clearly below the retriever pulled it down.\n"
        f"- att>=0.057: share of questions whose answer-related tokens get >= 0.057 of the passage "
        "attention; rho: mean Spearman correlation between attention and answer relatedness; paper: the "
        "authors' NQ figure.\n\n"
        + (f"Total wall time: {total:.0f} s ({len(results.get('calls', []))} call(s) of the command) on "
           f"{results['machine']}.\n" if total is not None else
           f"Machine: {results['machine']}.\n")
        + f"\nConfiguration: `{json.dumps(results['config'])}`\n"
    )
    with atomic_open(path) as fh:
        fh.write(text)


def write_paper_figures(out_dir: Path, results: dict, plan: list[Row]) -> list[Path]:
    """``recall_em.png`` and, from the rows' indicator histograms, the paper-style indicator figures."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..analysis.report import write_figures

    rows = results["rows"]
    done = [(r, rows[r.key]) for r in plan if rows.get(r.key, {}).get("status") == "done"]
    if not done:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    series = [("answer recall@1", "answer_recall@1"), ("EM", "em")]
    if any(rec.get("gold_recall@1") is not None for _, rec in done):
        series.append(("gold recall@1", "gold_recall@1"))
    fig = Figure(figsize=(max(8.0, 1.2 * len(done)), 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(done))
    width = 0.8 / len(series)
    for i, (name, key) in enumerate(series):
        values = [rec.get(key) if rec.get(key) is not None else 0.0 for _, rec in done]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width=width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [r.label for r, _ in done], rotation=30, ha="right", fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend()
    fig.tight_layout()
    path = out_dir / "recall_em.png"
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    paths = [path]
    aggregates = {r.label: rec["indicators"] for r, rec in done if (rec.get("indicators") or {}).get("hist")}
    if aggregates:
        paths += write_figures(aggregates, out_dir)
    return paths


def json_safe_results(obj):
    from ..analysis.indicators import json_safe

    return json_safe(obj)


def demo_table(rows: dict) -> str:
    """The demo's four rows as a Markdown table (rows of a paper-grid ``results.json``)."""
    header = ("| setting | EM | F1 | recall@1 | recall@5 | recall@10 | gold R@1 | teacher top-1 gold (/ retriever) "
              "| wall s |\n|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    for key, label in DEMO_ROWS:
        r = rows.get(key)
        if r is None or r.get("status") != "done":
            continue
        stats = r.get("teacher_stats") or {}
        teacher = (f"{stats['teacher_top1_gold']:.3f} / {stats.get('retriever_top1_gold', float('nan')):.3f}"
                   if stats.get("teacher_top1_gold") is not None else "–")
        lines.append(
            f"| {label} | {r.get('em', float('nan')):.3f} | {r.get('f1', float('nan')):.3f} | "
            f"{r['answer_recall@1']:.3f} | {r['answer_recall@5']:.3f} | {r['answer_recall@10']:.3f} | "
            f"{r.get('gold_recall@1', float('nan')):.3f} | {teacher} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines)


def render_demo_report(results: dict) -> str:
    """``report.md`` of a demo run: the table with what its columns mean and where it ran."""
    cfg = PaperConfig.from_dict(results["config"])
    train = cfg.train
    return (
        "# attnrag demo report\n\n"
        f"World: synthetic `{cfg.size}` (seed {cfg.world_seed}; training seed {train.seed}); reader `{train.reader}`, "
        f"retriever `{train.retriever}`; K = {train.n_passages} passages read, "
        f"{train.distill_passages or train.n_passages} scored by the teacher.\n\n"
        "recall@k is answer recall (a top-k passage contains a gold answer, DPR matching); gold R@1 is "
        "whether the top passage is the one that holds the fact; teacher top-1 gold is how often the "
        "teacher's favourite candidate is the gold passage on the distillation questions (after the slash: "
        "the retriever's own top passage). `wall s` counts the training of that row plus its evaluation "
        "(the fine-tuned reader row reuses the fine-tuned distillation row's reader).\n\n"
        f"{results['demo_table']}\n\n"
        f"Total wall time: {results['total_wall_seconds']:.0f} s on {results['machine']}.\n\n"
        f"Configuration: `{json.dumps(results['config'])}`\n"
    )
