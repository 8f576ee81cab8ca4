"""`gsag push` and `gsag save`: the folder uploaded, one upload_folder call, the errors.

The Hub cannot be reached here: `HfApi.upload_folder` is replaced by a recorder, and nothing else.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, constants
from safetensors.torch import load_file

from gsag.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


class _Recorder:
    """Stands in for `HfApi.upload_folder`: keeps its arguments and a copy of the folder."""

    def __init__(self, copy_to: Path) -> None:
        self.calls: list[dict] = []
        self.copy_to = copy_to

    def install(self, monkeypatch) -> None:
        def upload_folder(api: HfApi, **kwargs):
            self.calls.append(kwargs)
            shutil.copytree(kwargs["folder_path"], self.copy_to)
            return "https://huggingface.co/your-name/tiny/commit/0123456"

        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


@pytest.fixture
def no_stored_token(monkeypatch, tmp_path) -> None:
    """No token from the environment or from `hf auth login`'s files."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))


def test_push_uploads_the_saved_folder_in_one_call(evaluated_run, tmp_path, monkeypatch):
    recorder = _Recorder(tmp_path / "uploaded")
    recorder.install(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    assert main(["push", str(evaluated_run), "your-name/tiny", "--revision", "dev"]) == 0
    (call,) = recorder.calls
    assert call["repo_id"] == "your-name/tiny" and call["revision"] == "dev"
    assert call["repo_type"] == "model"
    assert call["commit_message"] == f"gsag push {evaluated_run.name}"
    assert not Path(call["folder_path"]).exists()  # a temporary folder, removed afterwards

    assert main(["save", str(evaluated_run), str(tmp_path / "saved")]) == 0
    uploaded, saved = tmp_path / "uploaded", tmp_path / "saved"
    files = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(uploaded).as_posix()
                           for p in uploaded.rglob("*") if p.is_file())  # fmt: skip
    assert filecmp.cmp(uploaded / "config.json", saved / "config.json", shallow=False)
    ours, theirs = (load_file(str(f / "model.safetensors")) for f in (uploaded, saved))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    card = (uploaded / "README.md").read_text()
    assert 'from_pretrained("your-name/tiny")' in card
    assert 'from_pretrained("your-name/MODEL")' in (saved / "README.md").read_text()


def test_push_without_a_login_is_one_error_line(
    evaluated_run, tmp_path, monkeypatch, capsys, no_stored_token
):
    recorder = _Recorder(tmp_path / "uploaded")
    recorder.install(monkeypatch)
    assert main(["push", str(evaluated_run), "your-name/tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: gsag push your-name/tiny: no Hugging Face token; log in with `hf auth login` "
        "or set HF_TOKEN to a token that may write to the repo"
    )
    assert recorder.calls == []


def test_push_with_nothing_listening_is_one_error_line(
    evaluated_run, unreachable_hub, monkeypatch, capsys
):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    assert main(["push", str(evaluated_run), "your-name/tiny"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(
        f"error: hf://your-name/tiny: cannot reach the Hub at {unreachable_hub} "
    ), err


def test_save_refuses_a_folder_holding_something_else(evaluated_run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["save", str(evaluated_run), str(other)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {other} is not empty and holds no saved")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    folder = tmp_path / "m"
    assert main(["save", str(evaluated_run), str(folder), "--checkpoint", "last.pt"]) == 0
    (folder / "model.onnx").write_bytes(b"stale")  # as if an earlier save had --onnx
    assert main(["save", str(evaluated_run), str(folder)]) == 2  # never replaced unasked
    assert "already holds a saved model" in capsys.readouterr().err
    assert main(["save", str(evaluated_run), str(folder), "--overwrite"]) == 0
    assert not (folder / "model.onnx").exists()
    (aside,) = tmp_path.glob("m.old-*")  # the earlier save, whole
    assert (aside / "model.onnx").read_bytes() == b"stale"
    assert main(["save", str(folder), str(folder)]) == 2
    assert "is both the model and the target" in capsys.readouterr().err
    weights = load_file(str(folder / "model.safetensors"))
    best = torch.load(evaluated_run / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[k], best[k]) for k in weights)


def test_save_onnx_computes_what_the_saved_model_computes(pretrained, tmp_path):
    import onnxruntime as ort

    from gsag.trained.load import load_pretrained
    from gsag.trained.save import save_pretrained

    folder = save_pretrained(pretrained, tmp_path / "m", onnx=True)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 40, 56)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = load_pretrained(pretrained)(x)["out"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
