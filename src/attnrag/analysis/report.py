"""Figures in the style of the paper's NQ figure, and an HTML page that shows one question's attention.

Figures: grouped bars, one colour per run, on the paper's bins and with its axis labels
("Attention Score Value", "Spearman Correlation Value", "Number of Data Instances"), so a run can be
set next to the paper's figure by eye. Matplotlib is used through ``Figure`` + the Agg canvas (no
pyplot global state), and every file is written atomically.

The HTML page is self-contained (inline CSS, no script). Every piece of text that comes from data
(passages, titles, question, answer, run labels) goes through :func:`html.escape`, so a passage that
contains ``<script>`` is shown, not run.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_open, atomic_path
from .indicators import ATTENTION_BINS, RHO_BINS

#: The paper's colours, in its legend order; further runs take matplotlib's default cycle.
COLORS = ["#FF8C69", "#6A5ACD", "#1DE0AC", "#D4E04A", "#E052B0",
          "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
Y_LABEL = "Number of Data Instances"
ATTENTION_LABEL = "Attention Score Value"
RHO_LABEL = "Spearman Correlation Value"
#: In the HTML page a token is fully shaded at the question's peak attention or at this many times
#: the uniform share, whichever is larger, so that a near-uniform reader does not look focused.
FLAT_RATIO = 10.0


def _grouped_bars(ax, edges: np.ndarray, counts: dict[str, Sequence[int]], xlabel: str, legend: bool) -> None:
    """One group of bars per bin, one bar per run, filling 80% of the bin."""
    from matplotlib.ticker import MaxNLocator

    width = np.diff(edges)
    n = max(1, len(counts))
    for r, (label, values) in enumerate(counts.items()):
        x = edges[:-1] + width * (0.1 + 0.8 * (r + 0.5) / n)
        ax.bar(x, values, width=0.8 * width / n, color=COLORS[r % len(COLORS)], label=label)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel, fontsize=14)
    ax.set_ylabel(Y_LABEL, fontsize=14)
    ax.set_xlim(edges[0] - 0.02 * (edges[-1] - edges[0]), edges[-1] + 0.02 * (edges[-1] - edges[0]))
    if legend and counts:
        ax.legend(fontsize=11)


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def write_figures(aggregates: dict[str, dict], out_dir: str | Path, target: str = "answer") -> list[Path]:
    """Write ``attention_hist.png``, ``spearman_hist.png`` and the side-by-side ``indicators.png``.

    ``aggregates`` maps a run label to :func:`~attnrag.analysis.indicators.aggregate` output; the
    bars are the ``target``-related (default: answer-related) histograms.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    attn = {label: agg["hist"][f"{target}_attention"] for label, agg in aggregates.items()}
    rho = {label: agg["hist"][f"{target}_rho"] for label, agg in aggregates.items()}
    panels = [(ATTENTION_BINS, attn, ATTENTION_LABEL), (RHO_BINS, rho, RHO_LABEL)]
    paths = []
    names = ("attention_hist.png", "spearman_hist.png")
    for name, (edges, counts, xlabel) in zip(names, panels, strict=True):
        fig = Figure(figsize=(8, 6))
        FigureCanvasAgg(fig)
        _grouped_bars(fig.add_subplot(1, 1, 1), edges, counts, xlabel, legend=True)
        _save(fig, out_dir / name)
        paths.append(out_dir / name)
    fig = Figure(figsize=(16, 6.5))
    FigureCanvasAgg(fig)
    for i, (edges, counts, xlabel) in enumerate(panels):
        _grouped_bars(fig.add_subplot(1, 2, i + 1), edges, counts, xlabel, legend=i == 0)
    fig.tight_layout()
    _save(fig, out_dir / "indicators.png")
    paths.append(out_dir / "indicators.png")
    return paths


# ---------------------------------------------------------------------------------------------- HTML
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; color: #222; }
.passage { white-space: pre-wrap; line-height: 1.9; margin: .4em 0 1em; padding: .5em;
           border: 1px solid #ddd; }
.tok { background: rgba(230, 60, 30, var(--a)); }
.ans { border-bottom: 3px solid #1a9641; }
.qst { outline: 2px solid #2b83ba; outline-offset: -1px; }
.legend span { margin-right: 1.5em; padding: 0 .3em; }
.meta { color: #555; }
"""


def _token_span(text: str, alpha: float, answer: bool, question: bool, tip: str) -> str:
    classes = "tok" + (" ans" if answer else "") + (" qst" if question else "")
    return (f'<span class="{classes}" style="--a:{alpha:.3f}" title="{html.escape(tip, quote=True)}">'
            f"{html.escape(text)}</span>")


def render_section(label: str, question: str, answer: str, passages: Sequence[dict],
                   stats: dict | None = None) -> str:
    """One run's view of the question. ``passages``: ``{"title", "tokens": [(text, attention, ans, qst)]}``,
    attention being the token's share of the question's passage attention."""
    values = [t[1] for p in passages for t in p["tokens"] if np.isfinite(t[1])]
    uniform = 1.0 / max(1, sum(len(p["tokens"]) for p in passages))
    # Darkest = the most attended token, but never below 10x the uniform share: flat attention stays pale.
    scale = max(max(values, default=0.0), FLAT_RATIO * uniform)
    parts = [f"<h2>{html.escape(label)}</h2>",
             f'<p class="meta">question: <b>{html.escape(question)}</b> &middot; gold answer: '
             f"<b>{html.escape(answer)}</b></p>"]
    if stats:
        shown = ", ".join(f"{html.escape(k)} = {v:.3f}" for k, v in stats.items()
                          if isinstance(v, float) and np.isfinite(v))
        parts.append(f'<p class="meta">{shown}</p>')
    for rank, p in enumerate(passages, start=1):
        spans = "".join(
            _token_span(text, min(1.0, float(att) / scale) if np.isfinite(att) else 0.0, bool(ans), bool(qst),
                        f"attention {att:.4f} ({att / uniform:.1f}x uniform)")
            for text, att, ans, qst in p["tokens"]
        )
        title = html.escape(p.get("title", ""))
        parts.append(f'<h3>[{rank}] {title}</h3><div class="passage">{spans}</div>')
    return "\n".join(parts)


def render_page(sections: Sequence[str], title: str = "attnrag: attention on passage tokens") -> str:
    """A self-contained page around already-rendered (escaped) sections, with the legend."""
    legend = ('<p class="legend"><span class="tok" style="--a:.8">shade = attention from the answer '
              "tokens (darkest = the question's most attended token, or 10x the uniform share if that "
              'is more)</span><span class="ans">answer-related token</span>'
              '<span class="qst">question-related token</span></p>')
    head = f'<meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style>'
    return (f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head><body>\n'
            f"<h1>{html.escape(title)}</h1>\n{legend}\n"
            + "\n<hr>\n".join(sections) + "\n</body></html>\n")


def write_html(path: str | Path, sections: Sequence[str],
               title: str = "attnrag: attention on passage tokens") -> Path:
    with atomic_open(path) as fh:
        fh.write(render_page(sections, title))
    return Path(path)


def screenshot(page: str | Path, png: str | Path, width: int = 1280, height: int = 1600,
               browser: str | None = None, timeout: float = 120.0) -> Path:
    """Render ``page`` in headless Chromium and save a PNG: the check that the HTML reads as intended.

    Needs a Chromium binary (Debian's ``chromium`` package, or ``browser``). The flags keep it off the
    network (the page is self-contained) and out of any user profile; the PNG is written atomically.
    """
    import os
    import shutil
    import subprocess
    import tempfile

    from ..errors import AttnragError

    binary = browser or shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        raise AttnragError("no Chromium found: install Debian's 'chromium' package or pass browser=PATH")
    page = Path(page).resolve()
    with tempfile.TemporaryDirectory(prefix="attnrag-chromium-") as scratch:
        # Chromium picks the image format from the file extension, so it writes into the scratch
        # directory and the PNG is then moved into place atomically.
        shot = Path(scratch) / "page.png"
        cmd = [binary, "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={Path(scratch) / 'profile'}",
               f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AttnragError(f"Chromium ({binary}) could not screenshot {page}: {exc}") from exc
        if done.returncode != 0 or not shot.is_file() or shot.stat().st_size == 0:
            raise AttnragError(f"Chromium could not screenshot {page}: {done.stderr.strip()[-500:]}")
        with atomic_path(png, suffix=".png") as tmp:
            shutil.copyfile(shot, tmp)
    return Path(png)
