"""Pretrained folders and the Hugging Face Hub: save, push and load trained models.

One folder format, on disk and on the Hub:

    model.safetensors  the weights (without the training-only aux head unless asked for)
    config.json        model_args, classes, palette, input conventions (mean/std), eval
                       settings, gsag version and the full training config
    README.md          a model card generated from the run (see `gsag.model_card`)
    model.onnx         optional, from `gsag.export.export_onnx`
    plots/             the run's training curve and confusion matrix, where they exist

    import gsag
    gsag.save_pretrained("runs/demo", "demo-model")
    predictor = gsag.Predictor.from_pretrained("your-name/demo-model")  # or the folder

Only `model.safetensors` is ever read from a folder or repo: pickled weights (`*.bin`, `*.pt`)
are refused, never unpickled. Repos are fetched with `huggingface_hub` (its cache, revisions,
token and `HF_HUB_OFFLINE` apply). `load_trained_model` is where every command turns a
checkpoint argument (a `.pt`, a `.safetensors`, such a folder or `hf://owner/name[@revision]`)
into a model.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsag.errors import CheckpointError, GsagError, UsageError

if TYPE_CHECKING:
    from torch import nn

    from gsag.models.segmentor import Segmentor

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
ONNX_NAME = "model.onnx"
FORMAT = "gsag-pretrained"
FORMAT_VERSION = 1  # raise when a reader of version 1 could no longer read the folder
HF_SCHEME = "hf://"
REQUIRED_KEYS = ("model_args", "classes", "palette", "input", "eval")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
FETCHED = [CONFIG_NAME, WEIGHTS_NAME]  # all that is ever downloaded to load a model
EVAL_KEYS = ("mode", "crop_size", "stride", "scales", "flip")


class HubError(GsagError):
    """The Hub could not be reached or refused a request (exit code 1: the run failed)."""


@dataclass
class Trained:
    """A trained model and where it came from: what a pretrained folder and its card are made of.

    `meta` is as `gsag.engine.checkpoint.load_model` returns it; `metrics` is the evaluation of
    this checkpoint found in its run folder (a metrics.json), if any.
    """

    model: Segmentor
    meta: dict[str, Any]
    checkpoint: Path | None = None
    run_dir: Path | None = None
    metrics: dict[str, Any] | None = None
    metrics_path: Path | None = None


# ---- where a model comes from -------------------------------------------------------------------


def parse_hf(ref: str) -> tuple[str, str | None]:
    """`hf://owner/name[@revision]` -> ("owner/name", revision or None)."""
    repo_id, _, revision = ref.removeprefix(HF_SCHEME).partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or (revision == "" and "@" in ref):
        raise UsageError(f"{ref} is not a Hub reference; write hf://owner/name or "
                         "hf://owner/name@revision (a branch, tag or commit)")  # fmt: skip
    return repo_id, revision or None


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


def output_parent(source: str | os.PathLike) -> Path:
    """Where reports about a model go by default: beside a checkpoint file, inside a pretrained
    folder, and under runs/hf/OWNER--NAME for a Hub repo (never into the Hub cache)."""
    text = os.fspath(source)
    if text.startswith(HF_SCHEME):
        return Path("runs") / "hf" / parse_hf(text)[0].replace("/", "--")
    path = Path(text)
    return path if path.is_dir() else path.parent


# ---- reading a folder ---------------------------------------------------------------------------


def load_folder(
    folder: str | os.PathLike,
    map_location: Any = "cpu",
    name: str | None = None,
    listing: list[str] | None = None,
) -> tuple[Segmentor, dict[str, Any]]:
    """Rebuild the model of a pretrained folder from config.json and model.safetensors.

    `name` is how errors call it (default: the folder); `listing` is the repo's file list when
    known (else the folder's files), for naming what is there instead of what is missing.
    """
    from gsag.models.segmentor import model_from_args

    folder = Path(folder)
    name = name or str(folder)
    files = listing if listing is not None else _files(folder)
    if WEIGHTS_NAME not in files:
        raise CheckpointError(_no_weights_message(name, files))
    config = read_config(folder, name, files)
    state = _read_weights(folder / WEIGHTS_NAME, name)
    try:
        model = model_from_args(config["model_args"])
    except (ValueError, TypeError) as e:  # a model this version of gsag cannot build
        raise CheckpointError(f"{name}: its model cannot be rebuilt ({e})") from e
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(
            f"{name}: {WEIGHTS_NAME} does not fit its config.json: {first}"
        ) from e
    model.to(map_location).eval()
    return model, meta_from_config(config)


def _files(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; pass a folder written by gsag save")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _no_weights_message(name: str, files: list[str]) -> str:
    if "config.yaml" in files and {"best.pt", "last.pt"} & set(files):
        return (
            f"{name} is a training run folder, not a gsag model folder (no {WEIGHTS_NAME}); "
            f"pass {name}/best.pt, or write a model folder with `gsag save {name} FOLDER`"
        )
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        return (
            f"{name} holds only pickled weights ({', '.join(pickles)}); gsag never loads pickles "
            f"from a model folder or repo (unpickling can run code): it needs {WEIGHTS_NAME}, "
            "written by `gsag save` or `gsag push`"
        )
    found = ", ".join(files[:8]) or "nothing"
    return f"{name} is not a gsag model: it has no {WEIGHTS_NAME} (found: {found})"


def read_config(folder: Path, name: str, files: list[str] | None = None) -> dict[str, Any]:
    """config.json of a pretrained folder, checked: gsag's format, not too new, all keys there."""
    from gsag import __version__

    path = folder / CONFIG_NAME
    if not path.is_file():
        found = ", ".join(files if files is not None else _files(folder)) or "nothing"
        raise CheckpointError(f"{name} is not a gsag model: it has no {CONFIG_NAME} ({found})")
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{name}: {CONFIG_NAME} is not valid JSON ({e})") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(
            f"{name} is not a gsag model: its {CONFIG_NAME} has no format={FORMAT!r} entry"
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name} was saved by gsag {config.get('gsag_version', '?')} in folder format "
            f"{version}; this gsag {__version__} reads format {FORMAT_VERSION}: upgrade gsag "
            "(pip install -U gsag)"
        )
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise CheckpointError(
            f"{name} is not a complete gsag model: its {CONFIG_NAME} lacks {', '.join(missing)}"
        )
    return config


def _read_weights(path: Path, name: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, OSError: truncated, random or foreign bytes
        raise CheckpointError(
            f"{name}: {WEIGHTS_NAME} is not a readable safetensors file ({type(e).__name__}: "
            f"{e}); save the model again with `gsag save`"
        ) from e


def meta_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """The `meta` dict `load_model` returns, from a folder's config.json: its eval settings
    become the training config's eval section, which `Predictor` and `gsag eval` read."""
    run_config = dict(config.get("config") or {})
    run_config["eval"] = {**(run_config.get("eval") or {}), **config["eval"]}
    meta = {
        "config": run_config,
        "classes": list(config["classes"]),
        "palette": [list(c) for c in config["palette"]],
        "num_classes": len(config["classes"]),
        "ignore_index": config.get("ignore_index", 255),
        "mean": list(config["input"]["mean"]),
        "std": list(config["input"]["std"]),
        "model_args": dict(config["model_args"]),
        **dict(config.get("training") or {}),
    }
    if config.get("prediction_ids") is not None:
        meta["prediction_ids"] = list(config["prediction_ids"])
    return meta


# ---- the Hub: fetching ---------------------------------------------------------------------------


def fetch(
    repo_id: str,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, list[str] | None]:
    """Download (or find in the cache) config.json and model.safetensors of a Hub repo.

    Returns:
        (the snapshot folder, the repo's file list when the cache knows it, else None).
    """
    from huggingface_hub import snapshot_download

    from gsag import __version__

    where = HF_SCHEME + repo_id + (f"@{revision}" if revision else "")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            token=token,
            cache_dir=os.fspath(cache_dir) if cache_dir else None,
            allow_patterns=FETCHED,
            library_name="gsag",
            library_version=__version__,
        )
    except Exception as e:
        raise hub_error(e, where) from e
    return Path(folder), _cached_listing(repo_id, revision, cache_dir)


def _cached_listing(
    repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None
) -> list[str] | None:
    """Every file of the repo at `revision`, from huggingface_hub's cached tree listing."""
    try:
        from huggingface_hub import get_cached_repo_tree  # huggingface_hub >= 1.x

        where = os.fspath(cache_dir) if cache_dir else None
        tree = get_cached_repo_tree(repo_id, revision=revision, cache_dir=where)
    except Exception:  # no listing cached (an older cache or huggingface_hub)
        return None
    return sorted(f.path for f in tree)


def hub_error(e: BaseException, where: str, pushing: bool = False) -> BaseException:
    """One-line gsag error for a huggingface_hub failure about `where` (while fetching it, or
    `pushing` to it); other errors are returned unchanged."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    names = {c.__name__ for c in type(e).__mro__} | {
        c.__name__ for c in type(e.__cause__).__mro__ if e.__cause__ is not None
    }
    endpoint = constants.ENDPOINT
    if isinstance(e, hf.RevisionNotFoundError):
        return UsageError(f"{where}: no such revision (branch, tag or commit) in that repo")
    if isinstance(e, hf.RepositoryNotFoundError):
        return UsageError(
            f"{where}: no such model repo on {endpoint}, or it is private or gated and your token "
            "cannot read it; check the name, or log in with `hf auth login` (or set HF_TOKEN)"
        )
    if isinstance(e, hf.HFValidationError):
        return UsageError(f"{where} is not a valid repo id ({str(e).splitlines()[0]})")
    if pushing and "OfflineModeIsEnabled" in names:
        return UsageError(f"{where}: HF_HUB_OFFLINE=1 forbids uploading; unset it to push")
    if "OfflineModeIsEnabled" in names or (
        isinstance(e, hf.LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE
    ):
        return UsageError(
            f"{where} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
            "downloading it; unset HF_HUB_OFFLINE, or fetch it once with the network"
        )
    network = names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError"}
    if network or isinstance(e, hf.LocalEntryNotFoundError):
        cached = "" if pushing else " and it is not in the local cache"
        return HubError(
            f"{where}: cannot reach the Hub at {endpoint} ({type(e).__name__}){cached}; check "
            "the network connection (or HF_ENDPOINT)"
        )
    if isinstance(e, hf.HfHubHTTPError):
        status = e.response.status_code if e.response is not None else "?"
        if status in (401, 403):
            need = "write to" if pushing else "read"
            return UsageError(
                f"{where}: the Hub refused access (HTTP {status}); log in with a token that may "
                f"{need} it: `hf auth login` or HF_TOKEN"
            )
        return HubError(f"{where}: the Hub answered HTTP {status}: {str(e).splitlines()[0]}")
    return e


# ---- writing a folder ----------------------------------------------------------------------------


def save_pretrained(
    model_or_run: Any,
    folder: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    meta: dict[str, Any] | None = None,
    include_aux: bool = False,
    onnx: bool = False,
    repo_id: str | None = None,
) -> Path:
    """Write a pretrained folder (see the module docstring) and return it.

    Args:
        model_or_run: a run folder (its best.pt, else last.pt), a `.pt` / `.safetensors`
            file, a `Predictor`, or a `Segmentor` with `meta` (as `load_model` returns it).
        folder: where to write; an existing folder must be empty or a gsag pretrained folder.
        checkpoint: in a run folder, the checkpoint file name to save (e.g. "last.pt").
        include_aux: keep the training-only auxiliary head (for fine-tuning).
        onnx: also write model.onnx.
        repo_id: the Hub repo the card's usage example names (default: a placeholder).
    """
    from gsag.atomic import write_json, write_text
    from gsag.model_card import render_card, write_plots

    trained = gather(model_or_run, checkpoint=checkpoint, meta=meta)
    folder = Path(folder)
    _check_target(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder_config(trained, include_aux)
    _write_weights(trained.model, folder / WEIGHTS_NAME, include_aux)
    write_json(folder / CONFIG_NAME, config)
    if onnx:
        from gsag.export import export_onnx

        size = _example_size(config["eval"].get("crop_size"))
        export_onnx(trained.model.eval(), folder / ONNX_NAME, *size)
    plots = write_plots(trained, folder)
    write_text(folder / CARD_NAME, render_card(trained, config, plots, repo_id or None))
    return folder


def _example_size(crop: Any) -> tuple[int, int]:
    if isinstance(crop, int):
        return min(crop, 512), min(crop, 512)
    if isinstance(crop, (list, tuple)) and len(crop) == 2:
        return min(int(crop[0]), 512), min(int(crop[1]), 512)
    return 512, 512


def _check_target(folder: Path) -> None:
    if folder.is_file():
        raise UsageError(f"{folder} is a file; pass a folder to write the model into")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    config = folder / CONFIG_NAME
    try:
        ours = json.loads(config.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise UsageError(
            f"{folder} is not empty and holds no gsag model; pass a new or empty folder"
        )


def gather(
    model_or_run: Any, checkpoint: str | None = None, meta: dict[str, Any] | None = None
) -> Trained:
    """A `Trained` from any of what `save_pretrained` accepts."""
    from torch import nn

    from gsag.predict import Predictor

    if isinstance(model_or_run, Predictor):
        return Trained(model_or_run.model, dict(model_or_run.meta))  # type: ignore[arg-type]
    if isinstance(model_or_run, nn.Module):
        if meta is None:
            raise UsageError("save_pretrained(model, ...) needs meta= (classes, palette, mean, "
                             "std), e.g. the meta that gsag.engine.checkpoint.load_model returns")  # fmt: skip
        return Trained(model_or_run, dict(meta))  # type: ignore[arg-type]
    path = Path(model_or_run)
    if path.is_dir() and (path / CONFIG_NAME).is_file() and not checkpoint:
        model, folder_meta = load_folder(path)
        return Trained(model, folder_meta, run_dir=path)
    run_dir, ckpt, metrics_path = find_checkpoint(path, checkpoint)
    model, ckpt_meta = load_trained_model(ckpt)
    metrics = json.loads(metrics_path.read_text()) if metrics_path else None
    return Trained(model, ckpt_meta, ckpt, run_dir, metrics, metrics_path)


def find_checkpoint(path: Path, name: str | None = None) -> tuple[Path, Path, Path | None]:
    """(run folder, checkpoint, its metrics.json or None) for a run folder or a checkpoint file.

    In a run folder: `name`, else the first of best.pt and last.pt that the run holds an
    evaluation of, else best.pt, else last.pt.
    """
    if path.is_file():
        return path.parent, path, find_evaluation(path.parent, path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist; pass a run folder or a checkpoint")
    present = [path / n for n in ([name] if name else ["best.pt", "last.pt"])]
    present = [p for p in present if p.is_file()]
    if not present:
        wanted = name or "best.pt or last.pt"
        raise CheckpointError(f"{path} holds no {wanted}; pass a run folder written by gsag train")
    evaluated = [(p, find_evaluation(path, p)) for p in present]
    return (path, *next((e for e in evaluated if e[1] is not None), (present[0], None)))


def find_evaluation(run_dir: Path, checkpoint: Path) -> Path | None:
    """The newest metrics.json in `run_dir` (or one folder down: eval_*/, report/) whose
    settings name `checkpoint`; None when the run holds no evaluation of it."""
    found = []
    for path in [run_dir / "metrics.json", *run_dir.glob("*/metrics.json")]:
        try:
            named = json.loads(path.read_text()).get("settings", {}).get("checkpoint")
        except (OSError, ValueError, AttributeError):
            continue
        if named and _same_file(Path(named), checkpoint, path):
            found.append(path)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _same_file(named: Path, checkpoint: Path, metrics: Path) -> bool:
    """Whether a metrics.json's `settings.checkpoint` (as typed, maybe relative to another working
    folder) is `checkpoint`: the same file, or the same name in the run it lies in."""
    if named.exists() and named.resolve() == checkpoint.resolve():
        return True
    inside = checkpoint.parent.resolve() in metrics.resolve().parents
    return named.name == checkpoint.name and not named.is_absolute() and inside


def folder_config(trained: Trained, include_aux: bool = False) -> dict[str, Any]:
    """config.json of a pretrained folder."""
    from gsag import __version__
    from gsag.config import EvalConfig
    from gsag.data.io import IMAGENET_MEAN, IMAGENET_STD

    meta = trained.meta
    run_config = dict(meta.get("config") or {})
    eval_section = run_config.get("eval") or {}
    defaults = EvalConfig()
    mean, std = list(meta.get("mean", IMAGENET_MEAN)), list(meta.get("std", IMAGENET_STD))
    model_args = dict(trained.model.model_args or meta["model_args"])
    model_args["aux"] = bool(include_aux and model_args.get("aux"))
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gsag_version": __version__,
        "model_args": model_args,
        "classes": list(meta["classes"]),
        "palette": [list(c) for c in meta["palette"]],
        "ignore_index": meta.get("ignore_index", 255),
        "input": {
            "color": "RGB",
            "layout": "NCHW float32",
            "scale": 1.0 if max(mean) > 1.0 else 1 / 255,  # pixel values are multiplied by it
            "mean": mean,  # then (x * scale - mean) / std
            "std": std,
            "output": "logits (B, num_classes, H, W) at the input's size; argmax = class index",
        },
        "eval": {k: eval_section.get(k, getattr(defaults, k)) for k in EVAL_KEYS},
        "training": {k: meta[k] for k in ("iteration", "best_miou") if k in meta},
        "config": run_config,
    }
    if meta.get("prediction_ids") is not None:
        config["prediction_ids"] = list(meta["prediction_ids"])
    return config


def _write_weights(model: nn.Module, path: Path, include_aux: bool) -> None:
    """model.safetensors: contiguous CPU copies; the aux head's tensors only with `include_aux`."""
    from safetensors.torch import save_file

    from gsag.atomic import atomic_path

    tensors = {
        k: v.detach().cpu().contiguous().clone()
        for k, v in model.state_dict().items()
        if include_aux or not k.startswith("aux_head.")
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


# ---- the Hub: pushing ----------------------------------------------------------------------------


def push_to_hub(
    model_or_run: Any,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    onnx: bool = False,
    checkpoint: str | None = None,
    include_aux: bool = False,
    token: str | None = None,
) -> str:
    """Save a pretrained folder and upload it to `repo_id` in one commit; returns its URL.

    The repo is created (private with `private`) when it does not exist yet, and the branch
    `revision` when that does not. The token comes from `token`, HF_TOKEN or `hf auth login`.
    """
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise UsageError(
            f"gsag push {repo_id}: no Hugging Face token; log in with `hf auth login` or set "
            "HF_TOKEN to a token that may write to the repo"
        )
    with tempfile.TemporaryDirectory(prefix="gsag-push-") as tmp:
        folder = save_pretrained(
            model_or_run, Path(tmp) / "model", checkpoint=checkpoint,
            include_aux=include_aux, onnx=onnx, repo_id=repo_id,
        )  # fmt: skip
        message = f"gsag push {_run_label(model_or_run, checkpoint)}"
        info = _upload(folder, repo_id, token, private, revision, message)
    return str(getattr(info, "commit_url", info))


def _run_label(model_or_run: Any, checkpoint: str | None) -> str:
    if isinstance(model_or_run, (str, os.PathLike)):
        path = Path(model_or_run)
        return f"{path.name}/{checkpoint}" if checkpoint else path.name
    return type(model_or_run).__name__


def _upload(
    folder: Path, repo_id: str, token: str, private: bool, revision: str | None, message: str
) -> Any:
    """`HfApi.upload_folder`, creating the repo or branch first when the Hub says it is missing."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf

    from gsag import __version__

    api = HfApi(token=token, library_name="gsag", library_version=__version__)
    where = HF_SCHEME + repo_id + (f"@{revision}" if revision else "")
    upload = dict(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                  commit_message=message, revision=revision)  # fmt: skip
    try:
        try:
            return api.upload_folder(**upload)  # type: ignore[call-overload]
        except hf.RevisionNotFoundError:
            api.create_branch(repo_id, branch=str(revision), exist_ok=True)
        except hf.RepositoryNotFoundError:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(**upload)  # type: ignore[call-overload]
    except Exception as e:
        raise hub_error(e, where, pushing=True) from e
