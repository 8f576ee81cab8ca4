"""Every value is checked where it enters: each config key (YAML, `--set`, a checkpoint's config)
and each numeric or choice option of each command refuses bad values with one `error:` line and
exit code 2, before any work. The keys and options are read from the config dataclasses and from
`gsag.cli.build_parser()`, so a new key without a rule, or a new option with an unchecked type,
fails here."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any

import pytest
import yaml

from gsag.cli import build_parser, main
from gsag.commands import Bounded, device_type
from gsag.config import RULES, Config, ConfigError, from_dict
from gsag.rules import INT_MAX, Rule


def config_keys() -> dict[str, Any]:
    """`section.name` -> type hint of every leaf of `Config`."""
    keys = {}
    for section in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[section.name]
        for name, hint in typing.get_type_hints(cls).items():
            keys[f"{section.name}.{name}"] = hint
    return keys


def _number_cases(rule: Rule, kind: type) -> list[Any]:
    """Numbers `rule` refuses: NaN, infinities, just outside each end, past a C int."""
    cases: list[Any] = [math.nan, math.inf, -math.inf] if kind is float else []
    numbers = [c for c in rule.choices if c is not None]  # None may be a choice: "unset"
    if numbers:
        return [*cases, min(numbers) - 1, max(numbers) + 1]
    if rule.low is not None:
        cases.append(rule.low if rule.low_open else rule.low - 1)
    if rule.high is not None:
        cases.append(rule.high if rule.high_open else rule.high + 1)
    elif kind is int:
        cases.append(INT_MAX + 1)
    return [kind(c) if kind is int else c for c in cases]


def bad_values(key: str, hint: Any) -> list[Any]:
    """Values of the wrong type, non-finite, out of range, not a choice or of a wrong length."""
    rule = RULES[key]
    options = typing.get_args(hint) if typing.get_origin(hint) is not list else (hint,)
    options = options or (hint,)
    cases: list[Any] = [{"a": {"b": 1}}]  # a mapping is no valid value of any key but kwargs
    if hint == dict[str, Any]:
        return [[1], {"dropout": math.nan}, {"rates": [1, math.inf]}]
    for option in options:
        if option in (int, float):
            cases += ["ten"] if str not in options else []
            cases += _number_cases(rule, option)
            cases += [1.5] if option is int else []
        elif option is str and (rule.choices or rule.words):
            cases.append("nosuch")
        elif option is bool and len(options) == 1:
            cases.append(5)
        elif typing.get_origin(option) is list and typing.get_args(option)[0] is str:
            cases.append(["nosuch"])  # a list of names: each one of the choices
        elif typing.get_origin(option) is list:
            item = typing.get_args(option)[0]
            section, name = key.split(".")
            default = getattr(getattr(Config(), section), name)
            good = (default if isinstance(default, list) and default else [1]) * 3
            if rule.lengths:
                cases.append(good[:1] * (max(rule.lengths) + 1))
            if rule.nonempty:
                cases.append([])
            n = min((size for size in rule.lengths if size), default=1)
            cases += [[bad, *good[: n - 1]] for bad in _number_cases(rule, item)]
            if rule.increasing:
                cases.append(sorted(set(good[:n]), reverse=True))
    return cases


CASES = [(key, value) for key, hint in config_keys().items() for value in bad_values(key, hint)]


def test_every_config_key_has_a_rule_and_its_default_passes():
    assert set(RULES) == set(config_keys())
    from_dict(Config().to_dict())  # every default satisfies its rule


def test_every_rule_is_walked():
    """Each key with a range, choices or lengths gets at least one out-of-rule case."""
    walked = {key for key, _ in CASES}
    assert walked == set(config_keys())
    assert len(CASES) > 150


def one_error_line(capsys, argv: list[str]) -> tuple[int, str]:
    """(exit code, the stderr line with `error:`) of `gsag ARGV`; fails unless there is one."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse: usage, then one `gsag CMD: error: ...` line
        code = e.code if isinstance(e.code, int) else 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1, err
    if not err.startswith("usage:"):
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    return code, errors[0]


@pytest.fixture
def no_work(monkeypatch):
    """Training, generating or benchmarking anything fails the test: errors come first."""
    import gsag.bench
    import gsag.data.synth
    import gsag.engine.train

    def work(*args, **kwargs):
        raise AssertionError("work started before the bad value was refused")

    monkeypatch.setattr(gsag.engine.train, "train", work)
    monkeypatch.setattr(gsag.data.synth, "generate", work)
    monkeypatch.setattr(gsag.bench, "run_bench", work)


@pytest.mark.parametrize(("key", "value"), CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_config_values_are_refused_from_set_yaml_and_checkpoints(
    capsys, tmp_path, no_work, key, value
):
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  iters: 1\n")
    code, line = one_error_line(capsys, ["train", base, "--set", f"{key}={text}"])
    assert code == 2 and key in line, line
    section, name = key.split(".")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({section: {name: value}}))
    code, line = one_error_line(capsys, ["train", bad])
    assert code == 2 and key in line and str(bad) in line, line
    stored = Config().to_dict()  # a checkpoint's config, as `gsag eval`/`predict` rebuild it
    stored[section][name] = value
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(stored, source="best.pt")


def cli_options() -> list[tuple[list[str], argparse.Action]]:
    """(argv prefix of the command, action) for every option of every (sub)command."""
    found = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*prefix, name])
            elif action.option_strings and action.nargs != 0:
                found.append((prefix, action))

    walk(build_parser(), [])
    return found


def option_cases() -> list[tuple[list[str], str]]:
    cases = []
    for prefix, action in cli_options():
        flag, kind = action.option_strings[0], action.type
        if kind is device_type:
            values: list[Any] = ["nosuch", "cuda:x"]
        elif isinstance(kind, Bounded):
            values = ["abc", *_number_cases(kind.rule, kind.kind)]
            values += [1.5] if kind.kind is int else []
        elif action.choices is not None:
            values = ["nosuch"]
        else:
            assert kind is None, (
                f"{' '.join(prefix)} {flag} uses type {kind}; use gsag.commands.bounded or "
                "config_type so that its values are checked"
            )
            continue
        cases += [([*prefix, flag, str(v)], f"{' '.join(prefix)} {flag} {v}") for v in values]
    return cases


OPTION_CASES = option_cases()


def test_every_numeric_option_is_walked():
    walked = {" ".join(argv[:-1]) for argv, _ in OPTION_CASES}
    for needed in ("eval --workers", "eval --threads", "bench --batch", "bench --num-classes"):
        assert needed in walked
    assert len(walked) > 35


@pytest.mark.parametrize(("argv", "name"), OPTION_CASES, ids=[n for _, n in OPTION_CASES])
def test_option_values_are_refused(capsys, no_work, argv, name):
    code, line = one_error_line(capsys, argv)
    assert code == 2 and argv[-2] in line, line


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "optim.lr=-0.01"],
        ["--set", "optim.lr=.nan"],
        ["--set", "optim.lr=.inf"],
        ["--set", "train.num_workers=-1"],
        ["--set", "data.std=[0, 0, 0]"],
        ["--set", "loss.min_kept=-1"],
        ["--set", "loss.thresh=2"],
        ["--set", "model.output_stride=7"],
        ["--set", "data.scale_range=[-1, 2]"],
        ["--set", "data.scale_range=[2, 0.5]"],
        ["--set", "data.base_size=[0, 0]"],
        ["--set", "data.hflip=5"],
        ["--set", "model.kwargs.dropout=.nan"],
        ["--threads", "99999999999"],
    ],
)
def test_the_probes_values_are_refused_by_train(capsys, tmp_path, no_work, args):
    """The values the hostile probe got through (tracebacks or silently accepted)."""
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  iters: 1\n")
    code, line = one_error_line(capsys, ["train", base, *args])
    assert code == 2 and args[1].split("=")[0] in line, line


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "x.pt", "--workers", "-1"],
        ["eval", "x.pt", "--threads", "99999999999"],
        ["predict", "x.pt", "--scales", "inf"],
        ["bench", "--batch", "0"],
        ["bench", "--num-classes", "0"],
        ["bench", "--sizes", "99999"],
        ["bench", "--sizes", "16x16"],
    ],
)
def test_the_probes_options_are_refused(capsys, no_work, argv):
    code, line = one_error_line(capsys, argv)
    assert code == 2 and argv[-2] in line and argv[-1] in line, line


def test_non_utf8_config_is_one_line(capsys, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  iters: 1  # Größe\n".encode("latin-1"))
    code, line = one_error_line(capsys, ["train", path])
    assert code == 2 and f"{path}: not UTF-8 text" in line and "save the config as UTF-8" in line
