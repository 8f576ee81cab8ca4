"""gsag.trained.hub and gsag.trained.load: pretrained folders, loading by repo id from the Hub
cache, hf:// checkpoints in the commands, refused pickles and the one-line errors. Nothing here
reaches the network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gsag.data.synth import SYNTH_CLASSES
from gsag.errors import CheckpointError, UsageError
from gsag.trained.load import load_pretrained
from gsag.trained.predict import Predictor
from tests.helpers.hub import cache_repo, one_error_line, random_image

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = "your-name/tiny-gsag"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROOT = Path(__file__).resolve().parents[1]


def _run_gsag(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m gsag ARGS` in a fresh process, so that huggingface_hub reads `env`."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "gsag", *args], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=300)  # fmt: skip


def test_load_by_repo_id_from_the_hub_cache_offline(pretrained, offline_cache):
    cache_repo(offline_cache, REPO, pretrained, COMMIT, refs=("main", "v1"))
    image = random_image(seed=1)
    expected = Predictor.from_pretrained(pretrained).logits(image)
    for source, revision in [(REPO, None), (REPO, "v1"), (REPO, COMMIT), (f"hf://{REPO}@v1", None)]:
        loaded = Predictor.from_pretrained(source, revision=revision)
        assert torch.equal(loaded.logits(image), expected), (source, revision)
        assert loaded.classes == SYNTH_CLASSES
    assert torch.equal(Predictor(f"hf://{REPO}").logits(image), expected)
    for missing in ["your-name/not-cached", f"hf://{REPO}@v2"]:
        with pytest.raises(UsageError, match="HF_HUB_OFFLINE=1 forbids downloading"):
            load_pretrained(missing)


class _Planted:
    """Unpickling this creates the file `path`: a stand-in for code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_pickled_weights_are_refused_and_never_unpickled(pretrained, tmp_path, offline_cache):
    planted = tmp_path / "the-pickle-ran"
    pickle_only = tmp_path / "pickle-only"
    pickle_only.mkdir()
    shutil.copy(pretrained / "config.json", pickle_only)
    torch.save({"weights": _Planted(planted)}, pickle_only / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"only pickled weights \(pytorch_model.bin\)"):
        load_pretrained(pickle_only)
    cache_repo(offline_cache, "your-name/pickled", pickle_only, COMMIT)
    with pytest.raises(CheckpointError, match=r"hf://your-name/pickled holds only pickled"):
        Predictor.from_pretrained("your-name/pickled")

    both = tmp_path / "both"
    shutil.copytree(pretrained, both)
    shutil.copy(pickle_only / "pytorch_model.bin", both)
    state = load_pretrained(both).state_dict()  # from model.safetensors, the pickle untouched
    weights = load_file(str(both / "model.safetensors"))
    assert state.keys() == weights.keys()
    assert all(torch.equal(state[k], weights[k]) for k in weights)
    disguised = tmp_path / "disguised"
    shutil.copytree(pretrained, disguised)
    shutil.copy(pickle_only / "pytorch_model.bin", disguised / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_pretrained(disguised)

    assert not planted.exists()
    torch.load(pickle_only / "pytorch_model.bin", weights_only=False)  # the pickle is live
    assert planted.exists()


def test_predict_hf_on_a_cached_repo_equals_predict_best_pt(evaluated_run, pretrained, tmp_path):
    """`gsag predict hf://...` in a fresh process, with HF_HUB_OFFLINE=1 and HF_HUB_CACHE set."""
    from gsag.cli import main

    cache_repo(tmp_path / "cache", REPO, pretrained, COMMIT)
    images = tmp_path / "in"
    images.mkdir()
    for i, (h, w) in enumerate([(37, 61), (64, 48)]):
        Image.fromarray(random_image(h, w, seed=5 + i)).save(images / f"img{i}.png")
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    hub = _run_gsag(["predict", f"hf://{REPO}", "--input", str(images), "--out",
                     str(tmp_path / "hub"), "--threads", "1"], env)  # fmt: skip
    assert hub.returncode == 0, hub.stderr
    args = ["predict", str(evaluated_run / "best.pt"), "--input", str(images)]
    assert main([*args, "--out", str(tmp_path / "pt"), "--threads", "1"]) == 0
    for i in range(2):
        for kind in ("masks", "overlays"):
            ours = np.asarray(Image.open(tmp_path / "hub" / kind / f"img{i}.png"))
            theirs = np.asarray(Image.open(tmp_path / "pt" / kind / f"img{i}.png"))
            np.testing.assert_array_equal(ours, theirs)


def test_no_network_is_one_error_line(unreachable_hub, tmp_path, capsys):
    from gsag.cli import main

    Image.fromarray(random_image()).save(tmp_path / "x.png")
    args = ["predict", "hf://your-name/absent", "--input", str(tmp_path / "x.png")]
    assert main([*args, "--out", str(tmp_path / "out")]) == 1
    err = one_error_line(capsys)
    assert err.startswith(
        f"error: hf://your-name/absent: cannot reach the Hub at {unreachable_hub} "
    )
    assert "not in the local cache" in err


def test_eval_and_export_take_a_pretrained_folder(evaluated_run, pretrained, tmp_path):
    import onnxruntime as ort

    from gsag.cli import main

    args = ["eval", str(pretrained), "--quiet", "--workers", "0", "--threads", "1"]
    assert main([*args, "--out", str(tmp_path / "eval")]) == 0
    ours = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    theirs = json.loads((evaluated_run / "eval_best_val_whole" / "metrics.json").read_text())
    assert ours["confusion"] == theirs["confusion"] and ours["mIoU"] == theirs["mIoU"]

    # without --out the results go beside the folder, never into it (it is what gets uploaded)
    inside = sorted(p.relative_to(pretrained) for p in pretrained.rglob("*"))
    copy = tmp_path / "saved"
    shutil.copytree(pretrained, copy)
    assert main(["eval", str(copy), "--quiet", "--workers", "0", "--threads", "1"]) == 0
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == inside
    beside = tmp_path / "saved.evals" / "eval_val_whole" / "metrics.json"
    assert json.loads(beside.read_text())["confusion"] == ours["confusion"]
    weights = str(copy / "model.safetensors")  # the folder's weights name the folder too
    assert main(["eval", weights, "--quiet", "--workers", "0", "--threads", "1",
                 "--max-images", "1"]) == 0  # fmt: skip
    assert (tmp_path / "saved.evals" / "eval_val_whole_first1" / "metrics.json").is_file()
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == inside

    onnx = tmp_path / "m.onnx"
    args = ["export", str(pretrained), "--out", str(onnx), "--height", "32", "--width", "32"]
    assert main([*args, "--no-check"]) == 0
    x = torch.randn(1, 3, 40, 48)
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    reference = Predictor(evaluated_run / "best.pt").model
    with torch.no_grad():
        expected = reference(x)["out"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
