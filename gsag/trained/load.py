"""Loading a trained model: where every command and `Predictor` turns a checkpoint argument (a
`.pt`, a `.safetensors`, a pretrained folder or `hf://owner/name[@revision]`) into a model.

    model = gsag.load_pretrained("your-name/demo-model")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsag.errors import UsageError
from gsag.trained.folder import CONFIG_NAME, WEIGHTS_NAME, load_folder
from gsag.trained.hub import HF_SCHEME, fetch, parse_hf

if TYPE_CHECKING:
    from gsag.models.segmentor import Segmentor


def load_trained_model(
    source: str | os.PathLike,
    map_location: Any = "cpu",
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Segmentor, dict[str, Any]]:
    """The one place a checkpoint argument becomes (model in eval mode, meta).

    `source`: `hf://owner/name[@revision]`, a folder written by `save_pretrained`, a `.pt`
    checkpoint or `.safetensors` weights written by gsag. `revision`, `token` and `cache_dir`
    apply to Hub repos.
    """
    text = os.fspath(source)
    if text.startswith(HF_SCHEME):
        repo_id, ref_revision = parse_hf(text)
        if revision and ref_revision and revision != ref_revision:
            raise UsageError(f"{text} names revision {ref_revision} but revision={revision!r}")
        folder, listing = fetch(repo_id, revision or ref_revision, token, cache_dir)
        return load_folder(folder, map_location, name=text, listing=listing)
    path = Path(text)
    if path.is_dir():
        return load_folder(path, map_location)
    if path.name == WEIGHTS_NAME and (path.parent / CONFIG_NAME).is_file():
        return load_folder(path.parent, map_location)  # the weights of a pretrained folder
    if not path.exists() and len(path.parts) == 2 and not path.suffix:
        raise FileNotFoundError(f"{text} does not exist; for a Hub repo write hf://{text}")
    from gsag.engine.checkpoint import load_model

    return load_model(path, map_location=map_location)


def load_pretrained(
    repo_id_or_folder: str | os.PathLike,
    revision: str | None = None,
    map_location: Any = "cpu",
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Segmentor:
    """The model (eval mode) of a pretrained folder, `owner/name` on the Hub or `hf://...`."""
    return load_trained_model(
        as_source(repo_id_or_folder), map_location, revision, token, cache_dir
    )[0]


def as_source(repo_id_or_folder: str | os.PathLike) -> str:
    """An existing path stays a path; anything else is read as a Hub repo id."""
    text = os.fspath(repo_id_or_folder)
    if text.startswith(HF_SCHEME) or Path(text).exists():
        return text
    return HF_SCHEME + text


#: the suffix of the folder beside a pretrained folder where reports about it go by default
EVALS_SUFFIX = ".evals"


def output_parent(source: str | os.PathLike) -> Path:
    """Where reports about a model go by default: beside a checkpoint file; beside a pretrained
    folder, in `<folder>.evals/` (never inside it: it is what gets uploaded); under
    runs/hf/OWNER--NAME for a Hub repo (never into the Hub cache)."""
    text = os.fspath(source)
    if text.startswith(HF_SCHEME):
        return Path("runs") / "hf" / parse_hf(text)[0].replace("/", "--")
    path = Path(text)
    if path.name == WEIGHTS_NAME and (path.parent / CONFIG_NAME).is_file():
        path = path.parent  # the weights of a pretrained folder: the folder
    elif not path.is_dir():
        return path.parent
    folder = path if path.name not in ("", ".", "..") else path.resolve()  # "." has no name
    return folder.parent / f"{folder.name}{EVALS_SUFFIX}"
