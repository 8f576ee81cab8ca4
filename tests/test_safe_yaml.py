"""Every YAML gsag reads (config files, `--set` values, classes.yaml) refuses a key written twice,
naming the line, and is bounded before anything walks it: an alias bomb or deep nesting is one
error line at once, never a hang or a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gsag.config import ConfigError, load_config
from gsag.data.errors import DataError
from gsag.data.io import read_classes_yaml

DUPLICATES = {
    # a second section: batch size and workers changed without a word
    "section": ("train:\n  batch_size: 2\nmodel:\n  name: fcn\ntrain:\n  batch_size: 16\n", 5, 1),
    "inner key": ("train:\n  batch_size: 2\n  num_workers: 0\n  batch_size: 16\n", 4, 2),
    "kwargs key": ("model:\n  kwargs:\n    num_heads: 2\n    num_heads: 4\n", 4, 3),
    "flow mapping": ("train: {batch_size: 2, batch_size: 4}\n", 1, 1),
}


def _bomb(depth: int = 10, fan: int = 9) -> str:
    """`fan` ** `depth` references to one list, in a few hundred bytes."""
    lines = ["a0: &a0 [" + ", ".join(["1"] * fan) + "]"]
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", DUPLICATES)
def test_a_key_written_twice_in_a_config_names_both_lines(case, tmp_path):
    text, line, first = DUPLICATES[case]
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"twice.yaml: line {line}: key '\w+' is written twice "
                       rf"\(first on line {first}\)"):  # fmt: skip
        load_config(path)


def test_merge_keys_and_anchors_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "eval:\n  crop_size: &crop 64\n  stride: 32\ndata:\n  crop_size: *crop\n"
        "train: &t\n  iters: 7\n"
    )
    cfg = load_config(path)
    assert (cfg.eval.crop_size, cfg.data.crop_size, cfg.train.iters) == (64, 64, 7)


def test_set_values_refuse_a_key_written_twice():
    with pytest.raises(ConfigError, match=r"override .*: line 1: key 'a' is written twice"):
        load_config(None, ["model.kwargs={a: 1, a: 2}"])


def test_classes_yaml_refuses_a_key_written_twice(tmp_path):
    path = tmp_path / "classes.yaml"
    path.write_text("classes: [a, b]\nignore_index: 255\nclasses: [a, b, c]\n")
    with pytest.raises(DataError, match=r"classes.yaml: line 3: key 'classes' is written twice"):
        read_classes_yaml(path)


@pytest.mark.parametrize("where", ["file", "set"])
def test_an_alias_bomb_in_model_kwargs_is_refused_at_once(where, tmp_path):
    bomb = _bomb()
    start = time.process_time()
    with pytest.raises(ConfigError, match=r"aliases \(\*name\) expand to more than 100000 values"):
        if where == "file":
            indented = "".join(f"    {line}\n" for line in bomb.splitlines())
            path = tmp_path / "bomb.yaml"
            path.write_text(f"model:\n  kwargs:\n{indented}")
            load_config(path)
        else:
            load_config(None, ["model.kwargs={" + bomb.replace("\n", ", ").rstrip(", ") + "}"])
    # bounded before the walk: a 9**10-value walk takes hours, the check a few milliseconds
    assert time.process_time() - start < 5


def test_small_anchors_below_the_bound_load():
    text = _bomb(depth=2, fan=3).replace("\n", ", ").rstrip(", ")
    cfg = load_config(None, ["model.kwargs={" + text + "}"])
    assert cfg.model.kwargs["a2"] == [[[1, 1, 1]] * 3] * 3


@pytest.mark.parametrize("text", ["[" * 3000 + "]" * 3000, "a:\n" + "".join(
    f"{'  ' * i}k{i}:\n" for i in range(1, 1500)) + "  " * 1500 + "x: 1\n"])  # fmt: skip
def test_nesting_past_the_recursion_limit_is_one_error(text, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"deep.yaml: line \d+: nested more than 64 levels"):
        load_config(path)


def test_a_recursive_anchor_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("model:\n  kwargs:\n    a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="recursive anchor"):
        load_config(path)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [("twice.yaml", "train:\n  iters: 2\ntrain:\n  iters: 3\n", "line 3: key 'train'"),
     ("deep.yaml", "[" * 2000 + "]" * 2000, "nested more than 64 levels"),
     ("bomb.yaml", "model:\n  kwargs:\n" + "".join(f"    {ln}\n" for ln in _bomb().splitlines()),
      "expand to more than 100000 values")],
)  # fmt: skip
def test_gsag_train_prints_one_line_and_exits_2(name, text, fragment, tmp_path, capsys):
    from gsag.cli import main

    path = Path(tmp_path / name)
    path.write_text(text)
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}") and "\n" not in err and fragment in err, err
    assert not (tmp_path / "run").exists()
