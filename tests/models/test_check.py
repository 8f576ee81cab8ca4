"""One source of truth for model arguments: `check_model_args` decides for create_model, the
engine's config check, `gsag ablate` and `gsag models` alike; every model list is list_models()."""

from __future__ import annotations

import pytest
import torch

import gsag
from gsag import ablate
from gsag.config import ConfigError, load_config
from gsag.engine.checks import check_model_config
from gsag.models import ModelArgError, check_model_args, head_defaults

BACKBONE = "test_resnet"
SMALL = {"head_channels": 16, "key_channels": 8, "num_heads": 2, "fuse_channels": 16}


def config(name: str, kwargs: str):
    return load_config(
        None, [f"model.name={name}", f"model.backbone={BACKBONE}", f"model.kwargs={kwargs}"]
    )


@pytest.mark.parametrize("name", ["deeplabv3", "fcn"])
def test_output_stride_among_head_options_fails_the_same_everywhere(name):
    # it used to pass for deeplabv3 as a head option (ablate kept it) and crash in training
    assert "output_stride" not in head_defaults(name)
    with pytest.raises(ModelArgError, match="model setting") as err:
        check_model_args(name, BACKBONE, {"output_stride": 16})
    assert err.value.key == "kwargs.output_stride" and err.value.fix == ("output_stride", 16)
    with pytest.raises(ConfigError, match=r"model.kwargs.output_stride .*model.output_stride=16"):
        check_model_config(config(name, "{output_stride: 16}"))
    kept, dropped = ablate.model_kwargs_for(name, {"output_stride": 16})
    assert kept == {"output_stride": 16} and not dropped  # the engine refuses it as in train


def test_levels_work_the_same_everywhere():
    # it used to be accepted by train and silently dropped by ablate
    for name in gsag.list_models():
        kwargs = {"levels": [3, 4], **{k: v for k, v in SMALL.items() if k in head_defaults(name)}}
        check_model_args(name, BACKBONE, kwargs, aux=True)
        kept, dropped = ablate.model_kwargs_for(name, kwargs)
        assert kept == kwargs and not dropped
        model = gsag.create_model(name, 3, backbone=BACKBONE, **kept)
        assert model.model_args["levels"] == [3, 4] and len(model.backbone.channels) == 2
    check_model_config(config("gsag_hybrid", "{levels: [3, 4]}"))


def test_too_few_levels_for_the_aux_head_fail_the_same_everywhere():
    with pytest.raises(ModelArgError, match="at least two levels") as err:
        gsag.create_model("fcn", 3, backbone=BACKBONE, levels=[4])
    assert err.value.key == "kwargs.levels"
    with pytest.raises(ConfigError, match=r"model.kwargs.levels is \[4\]"):
        check_model_config(config("fcn", "{levels: [4]}"))
    gsag.create_model("fcn", 3, backbone=BACKBONE, levels=[4], aux=False)


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        (("gsag_hybird", BACKBONE, {}), "name", "did you mean gsag_hybrid?"),
        (("fcn", "resnet5O", {}), "backbone", "did you mean resnet50?"),
        (("gsag_hybrid", BACKBONE, {"num_head": 2}), "kwargs.num_head", "did you mean num_heads?"),
        (("fcn", BACKBONE, {"dropout": "high"}), "kwargs.dropout", "expected float"),
        (("gsag_hybrid", BACKBONE, {**SMALL, "num_heads": 3}), "kwargs", "divisible"),
    ],
)
def test_errors_name_the_argument_and_the_engine_maps_it(args, key, message):
    with pytest.raises(ModelArgError, match=message) as err:
        check_model_args(*args)
    assert err.value.key == key
    name, backbone, kwargs = args
    with pytest.raises(ModelArgError, match=message):
        gsag.create_model(name, 3, backbone=backbone, **kwargs)
    cfg = load_config(None, [f"model.name={name}", f"model.backbone={backbone}"])
    cfg.model.kwargs = kwargs
    with pytest.raises(ConfigError, match=f"^model.{key} .*{message}"):
        check_model_config(cfg)


def test_unknown_or_mistyped_head_options_are_type_errors():
    for kwargs in ({"num_heads": 4}, {"dropout": "high"}):
        with pytest.raises(TypeError):
            gsag.create_model("fcn", 3, backbone=BACKBONE, **kwargs)


def test_the_check_draws_no_random_numbers():
    state = torch.get_rng_state()
    for name in gsag.list_models():
        check_model_args(name, BACKBONE, {})
    assert torch.equal(state, torch.get_rng_state())


def test_head_defaults_are_the_signature_defaults():
    assert head_defaults("fcn") == {"dropout": 0.1, "head_channels": None}
    hybrid = head_defaults("gsag_hybrid")
    assert hybrid["head_channels"] is None and hybrid["num_heads"] is None  # by the width rule
    assert hybrid["kernel_size"] == 7 and hybrid["gate"] is True
    assert "variant" not in hybrid  # fixed by the model name


def test_default_model_lists_come_from_list_models():
    from gsag import bench
    from gsag.cli import build_parser

    assert [*bench.default_models(), bench.BASELINE] == [
        n for n in gsag.list_models() if n != bench.BASELINE
    ] + [bench.BASELINE]
    assert build_parser().parse_args(["ablate", "c.yaml", "--out", "o"]).models is None
    assert build_parser().parse_args(["bench"]).models is None


def test_models_command_shows_a_heads_options_with_defaults(capsys):
    from gsag.cli import main

    assert main(["models", "gsag_hybrid", "--backbone", BACKBONE, "--num-classes", "3"]) == 0
    out = capsys.readouterr().out
    for option, default in head_defaults("gsag_hybrid").items():
        assert option in out and repr(default) in out
    model = gsag.create_model("gsag_hybrid", 3, backbone=BACKBONE)
    assert model.params_line() in out


def test_models_command_shows_a_configs_model_with_and_without_aux(capsys):
    from gsag.cli import main

    argv = ["models", "--config", "configs/demo.yaml", "--set", f"model.backbone={BACKBONE}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    cfg = load_config("configs/demo.yaml", [f"model.backbone={BACKBONE}"])
    model = gsag.create_model("gsag_hybrid", 8, backbone=BACKBONE, **cfg.model.kwargs)
    line = model.params_line()
    assert line in out and "without the training-only aux head" in line
    # num_heads set by the config (its 128 / 64 widths are the rule's on test_resnet: no star)
    assert "4 *" in out and "128 *" not in out and "8 classes" in out


def test_params_line_counts_the_aux_head_apart():
    model = gsag.create_model("fcn", 3, backbone=BACKBONE)
    total = sum(p.numel() for p in model.parameters())
    aux = sum(p.numel() for p in model.aux_head.parameters())
    assert model.params_line() == (
        f"{total / 1e6:.2f} M parameters ({(total - aux) / 1e6:.2f} M without the training-only "
        "aux head)"
    )
    plain = gsag.create_model("fcn", 3, backbone=BACKBONE, aux=False)
    assert plain.params_line() == f"{(total - aux) / 1e6:.2f} M parameters (no aux head)"
