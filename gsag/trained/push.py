"""`gsag push` and `gsag.push_to_hub`: save a pretrained folder (`gsag.trained.save`) and upload
it to a Hugging Face Hub repo in one commit.

    gsag.push_to_hub("runs/demo", "your-name/demo-model")
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from gsag.errors import UsageError
from gsag.trained.hub import HF_SCHEME, hub_error
from gsag.trained.save import save_pretrained
from gsag.version import __version__


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
    evaluation: str | os.PathLike | None = None,
) -> str:
    """Save a pretrained folder and upload it to `repo_id` in one commit; returns its URL.

    The repo is created (private with `private`) when it does not exist yet, and the branch
    `revision` when that does not. The token comes from `token`, HF_TOKEN or `hf auth login`.
    `evaluation`: the metrics.json the card reports (see `save_pretrained`).
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
            include_aux=include_aux, onnx=onnx, repo_id=repo_id, evaluation=evaluation,
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
