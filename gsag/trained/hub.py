"""The Hugging Face Hub: `hf://owner/name[@revision]` references, fetching a repo's pretrained
folder (`gsag.trained.folder`), and the one-line errors of its failures.

Repos are fetched with `huggingface_hub` (its cache, revisions, token and `HF_HUB_OFFLINE`
apply), and only config.json and model.safetensors are downloaded. `gsag.trained.load` turns a
fetched folder into a model; `gsag.trained.push` uploads one.
"""

from __future__ import annotations

import os
from pathlib import Path

from gsag.errors import GsagError, UsageError
from gsag.trained.folder import CONFIG_NAME, WEIGHTS_NAME
from gsag.version import __version__

HF_SCHEME = "hf://"
FETCHED = [CONFIG_NAME, WEIGHTS_NAME]  # all that is ever downloaded to load a model


class HubError(GsagError):
    """The Hub could not be reached or refused a request (exit code 1: the run failed)."""


def parse_hf(ref: str) -> tuple[str, str | None]:
    """`hf://owner/name[@revision]` -> ("owner/name", revision or None)."""
    repo_id, _, revision = ref.removeprefix(HF_SCHEME).partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or (revision == "" and "@" in ref):
        raise UsageError(f"{ref} is not a Hub reference; write hf://owner/name or "
                         "hf://owner/name@revision (a branch, tag or commit)")  # fmt: skip
    return repo_id, revision or None


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
