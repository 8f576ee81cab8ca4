"""The Hugging Face Hub: `hf://` checkpoints, fetching pretrained folders, `gsag push`.

A repo holds a pretrained folder (`gsag.pretrained`). Repos are fetched with `huggingface_hub`
(its cache, revisions, token and `HF_HUB_OFFLINE` apply), and only config.json and
model.safetensors are downloaded. `load_trained_model` is where every command turns a checkpoint
argument (a `.pt`, a `.safetensors`, a pretrained folder or `hf://owner/name[@revision]`) into a
model.

    predictor = gsag.Predictor.from_pretrained("your-name/demo-model")
    gsag.push_to_hub("runs/demo", "your-name/demo-model")
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsag.errors import GsagError, UsageError
from gsag.pretrained import CONFIG_NAME, WEIGHTS_NAME, load_folder, save_pretrained

if TYPE_CHECKING:
    from gsag.models.segmentor import Segmentor

HF_SCHEME = "hf://"
FETCHED = [CONFIG_NAME, WEIGHTS_NAME]  # all that is ever downloaded to load a model


class HubError(GsagError):
    """The Hub could not be reached or refused a request (exit code 1: the run failed)."""


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


def output_parent(source: str | os.PathLike) -> Path:
    """Where reports about a model go by default: beside a checkpoint file, inside a pretrained
    folder, and under runs/hf/OWNER--NAME for a Hub repo (never into the Hub cache)."""
    text = os.fspath(source)
    if text.startswith(HF_SCHEME):
        return Path("runs") / "hf" / parse_hf(text)[0].replace("/", "--")
    path = Path(text)
    return path if path.is_dir() else path.parent


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

    from gsag.version import __version__

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

    from gsag.version import __version__

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
