"""Model specs (cnn.spec): every error with its message, hostile specs that never reach Keras,
the report's models built from specs identical to the zoo's former builders, and a built model's round trip."""

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn import spec as specs
from cnn.errors import UserError
from cnn.spec import REPORT_SPECS, Limits, SpecError, analyze, check_spec, parse_spec_text

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "tests" / "data" / "zoo_report_models.json").read_text())
# Recorded from the zoo's Python builders before the report models became specs (git: the commit
# "Record the report models' layer summaries ..."): class, name, output shape, parameters, settings.
SUMMARY_KEYS = (
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "activation",
    "use_bias",
    "pool_size",
    "rate",
    "units",
    "momentum",
    "epsilon",
    "center",
    "scale",
    "dtype",
    "data_format",
    "dilation_rate",
)


def conv(filters=8, kernel=3, **settings):
    return {"type": "conv2d", "filters": filters, "kernel": kernel, **settings}


def stack(*layers):
    return {"version": 1, "layers": list(layers)}


SMALL = stack(conv(), {"type": "maxpool"}, {"type": "flatten"}, {"type": "dense", "units": 16})


def error_of(spec, limits=None) -> str:
    analysis = analyze(spec, limits or Limits())
    assert not analysis.ok, "the spec was accepted"
    with pytest.raises(SpecError) as raised:
        check_spec(spec, limits or Limits())
    assert str(raised.value) == analysis.error
    return analysis.error


# ---------------------------------------------------------------- shapes, parameters, formulas


def test_base_spec_table_matches_the_report_arithmetic():
    analysis = analyze(REPORT_SPECS["base"])
    assert analysis.ok
    shapes = [row.output_shape for row in analysis.rows]
    assert shapes == [(29, 29, 32), (14, 14, 32), (11, 11, 32), (5, 5, 32), (800,), (256,), (10,)]
    assert analysis.rows[0].parameter_formula == "(4*4*3+1)*32 = 1,568"
    expected = "rows and columns: floor((32 + 2·0 − 1·(4 − 1) − 1) / 1) + 1 = 29; 32 filters"
    assert analysis.rows[0].shape_formula == expected
    assert analysis.rows[1].shape_formula.startswith("rows and columns: floor((29 + 2·0 − 1·(2 − 1) − 1) / 2) + 1 = 14")
    assert analysis.rows[-1].name == "probabilities" and analysis.rows[-1].parameters == 2570
    assert analysis.parameters == REFERENCE["base"]["parameters"] == 225_610
    assert analysis.rows[0].multiply_adds == 29 * 29 * 4 * 4 * 3 * 32


def test_same_padding_stride_and_batchnorm_formulas():
    analysis = analyze(
        stack(conv(4, 3, stride=2, padding="same", use_bias=False), {"type": "batchnorm"}, {"type": "global_avgpool"})
    )
    assert analysis.ok
    assert analysis.rows[0].output_shape == (16, 16, 4)
    assert analysis.rows[0].parameter_formula == "3*3*3*4 = 108 (no bias)"
    assert analysis.rows[1].parameters == 16 and analysis.rows[1].parameter_formula.startswith("4*C = 4*4 = 16")
    assert analysis.rows[2].output_shape == (4,)


def test_canonical_spec_fills_in_the_defaults():
    canonical = check_spec(stack(conv(), {"type": "maxpool"}, {"type": "flatten"}))
    assert canonical["layers"][0] == {
        "type": "conv2d",
        "filters": 8,
        "kernel": 3,
        "stride": 1,
        "padding": "valid",
        "activation": "relu",
        "use_bias": True,
    }
    assert canonical["layers"][1] == {"type": "maxpool", "size": 2}
    assert check_spec(canonical) == canonical


@pytest.mark.parametrize("name", list(REPORT_SPECS))
def test_report_spec_analysis_agrees_with_the_recorded_zoo_model(name):
    analysis = analyze(REPORT_SPECS[name])
    recorded = REFERENCE[name]["layers"][1:]  # without the input layer
    assert [row.name for row in analysis.rows] == [layer["name"] for layer in recorded]
    assert [list(row.output_shape) for row in analysis.rows] == [layer["output_shape"] for layer in recorded]
    assert [row.parameters for row in analysis.rows] == [layer["parameters"] for layer in recorded]


def summary(model) -> dict:
    """The same summary as the recorded reference (tests/data/zoo_report_models.json)."""
    rows = []
    for layer in model.layers:
        config = layer.get_config()
        picked = {key: config[key] for key in SUMMARY_KEYS if key in config}
        if isinstance(picked.get("dtype"), dict):
            picked["dtype"] = picked["dtype"].get("config", {}).get("name")
        rows.append(
            {
                "class": type(layer).__name__,
                "name": layer.name,
                "output_shape": list(layer.output.shape)[1:],
                "parameters": int(layer.count_params()),
                "config": picked,
            }
        )
    return json.loads(
        json.dumps({"name": model.name, "parameters": int(model.count_params()), "layers": rows}, default=list)
    )


@pytest.mark.parametrize("name", list(REPORT_SPECS))
def test_zoo_report_models_are_identical_to_the_former_builders(name):
    from cnn.zoo import ZOO

    assert summary(ZOO[name].build()) == REFERENCE[name]


# ---------------------------------------------------------------- every error, with its message

ERRORS = {
    "not an object": ([], 'A spec is a JSON object like {"version": 1, "layers": [...]}.'),
    "unknown top-level key": (
        {"version": 1, "layers": [], "code": "x"},
        'Unknown top-level key \'code\': a spec has only "version" and "layers".',
    ),
    "wrong version": (
        {"version": 2, "layers": []},
        "Spec version '2' is not supported: this dashboard reads version 1.",
    ),
    "boolean version": (
        {"version": True, "layers": []},
        "Spec version 'True' is not supported: this dashboard reads version 1.",
    ),
    "layers not a list": ({"version": 1, "layers": {}}, '"layers" must be a list of layer objects.'),
    "layer not an object": (stack("conv2d"), 'Layer 1: must be an object like {"type": "conv2d", ...}.'),
    "unknown type": (
        stack({"type": "lambda", "function": "import os"}),
        "Layer 1: unknown layer type 'lambda'; use one of conv2d, maxpool, avgpool, dropout, "
        "batchnorm, relu, flatten, global_avgpool, dense.",
    ),
    "missing type": (
        stack({"filters": 3}),
        "Layer 1: unknown layer type missing; use one of conv2d, maxpool, "
        "avgpool, dropout, batchnorm, relu, flatten, global_avgpool, dense.",
    ),
    "unknown setting": (
        stack(conv(), {"type": "dropout", "rate": 0.2, "code": "x"}),
        "Layer 2 (dropout): unknown setting 'code'; a dropout layer takes rate (and an optional name).",
    ),
    "missing setting": (stack({"type": "conv2d", "kernel": 3}), "Layer 1 (conv2d): the setting 'filters' is missing."),
    "huge filters": (stack(conv(10**9)), "Layer 1 (conv2d): filters must be a whole number 1-512, not 1000000000."),
    "fractional filters": (stack(conv(8.5)), "Layer 1 (conv2d): filters must be a whole number 1-512, not 8.5."),
    "boolean kernel": (stack(conv(8, True)), "Layer 1 (conv2d): kernel must be a whole number 1-11, not True."),
    "bad padding": (stack(conv(padding="full")), "Layer 1 (conv2d): padding must be one of valid, same, not full."),
    "bad activation": (
        stack(conv(activation="eval")),
        "Layer 1 (conv2d): activation must be one of relu, linear, gelu, elu, tanh, sigmoid, not eval.",
    ),
    "bias not a flag": (stack(conv(use_bias="yes")), "Layer 1 (conv2d): use_bias must be true or false, not yes."),
    "dropout rate": (
        stack(conv(), {"type": "dropout", "rate": 1.5}),
        "Layer 2 (dropout): rate must be a number 0-0.9, not 1.5.",
    ),
    "bad layer name": (
        stack(conv(name="../etc")),
        "Layer 1 (conv2d): a layer name starts with a letter and has only "
        "letters, digits and _ (at most 40); or leave it out.",
    ),
    "duplicate name": (
        stack(conv(name="c"), conv(name="c")),
        "Layer 2 (conv2d): the name 'c' is already used by layer 1; names must be unique (or leave the name out).",
    ),
    "reserved name": (
        stack(conv(name="probabilities")),
        "Layer 1 (conv2d): the name 'probabilities' is already used by the model's input or output; "
        "names must be unique (or leave the name out).",
    ),
    "pool shrinks to nothing": (
        stack(conv(8, 3, stride=4), {"type": "maxpool", "size": 8}, {"type": "maxpool"}),
        "Layer 3 (maxpool 2x2): the feature map would shrink to 0x0 (it is 1x1); remove this "
        "pooling layer or use padding='same' in the convolutions before it.",
    ),
    "kernel does not fit": (
        stack(conv(8, 3, stride=4), {"type": "maxpool", "size": 4}, conv(8, 5)),
        "Layer 3 (conv2d 8 filters 5x5): the 5x5 kernel does not fit in the 2x2 feature map; use "
        "a smaller kernel, padding='same', or remove a pooling layer before it.",
    ),
    "dense before flatten": (
        stack(conv(), {"type": "dense", "units": 10}),
        "Layer 2 (dense 10): needs a flat input; add Flatten or GlobalAveragePooling before it.",
    ),
    "conv after flatten": (
        stack(conv(), {"type": "flatten"}, conv()),
        "Layer 3 (conv2d 8 filters 3x3): needs a 2-D feature map but gets a flat vector of 7,200 "
        "values; move it before the Flatten (or GlobalAveragePooling).",
    ),
    "flatten twice": (
        stack(conv(), {"type": "flatten"}, {"type": "flatten"}),
        "Layer 3 (flatten): the input is already flat (7,200 values); remove this layer.",
    ),
    "output needs flat input": (
        stack(conv()),
        "The output layer (dense 10, softmax) needs a flat input; end the stack with Flatten or GlobalAveragePooling.",
    ),
    "no convolution": (
        stack({"type": "flatten"}, {"type": "dense", "units": 8}),
        "The stack has no conv2d layer: a CNN needs at least one; add a conv2d layer first.",
    ),
    "empty stack": (
        stack(),
        "The output layer (dense 10, softmax) needs a flat input; end the stack with Flatten or GlobalAveragePooling.",
    ),
    "too many layers": (stack(*[{"type": "relu"}] * 5000), "The stack has 5,000 layers; at most 60 are allowed."),
    "too many parameters": (
        stack(conv(64, 3, padding="same"), {"type": "flatten"}, {"type": "dense", "units": 64}),
        "Layer 3 (dense 64): brings the parameter count to 4,196,160, over the classroom limit "
        "of 2,000,000; use fewer filters or units, or add pooling (or GlobalAveragePooling) "
        "before Flatten. The teacher can raise the limit (CNN_MAX_PARAMETERS).",
    ),
    "output over the limit": (
        stack(conv(512, 3, padding="same"), {"type": "flatten"}),
        "The output layer (dense 10, softmax): brings the parameter count to 5,257,226, over "
        "the classroom limit of 2,000,000; use fewer filters or units, or add pooling (or "
        "GlobalAveragePooling) before Flatten. The teacher can raise the limit "
        "(CNN_MAX_PARAMETERS).",
    ),
    "too much work": (
        stack(*[conv(256, 1, padding="same", name=f"c{index}") for index in range(3)], {"type": "global_avgpool"}),
        "Layer 3 (conv2d 256 filters 1x1): brings the work per image to 135,004,160 multiply-adds, "
        "over the classroom limit of 100,000,000; use fewer filters, a stride of 2, or pool earlier. "
        "The teacher can raise the limit (CNN_MAX_MULTIPLY_ADDS).",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_every_spec_error_has_its_message(case):
    spec, message = ERRORS[case]
    limits = Limits(max_multiply_adds=100_000_000) if case == "too much work" else Limits()
    assert error_of(spec, limits) == message


def test_deeply_nested_values_in_an_object_get_one_plain_line(keras_never_called):
    """A spec object that did not come through parse_spec_text (a sidecar, a page) may nest deeply too."""
    nested = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(SpecError) as raised:
        specs.build_model(stack(conv(filters=nested)))
    assert str(raised.value) == "Layer 1 (conv2d): filters must be a whole number 1-512, not a list."
    with pytest.raises(SpecError, match="Spec version 'a list' is not supported"):
        specs.build_model({"version": nested, "layers": []})


def test_rows_stop_at_the_first_problem():
    analysis = analyze(stack(conv(), {"type": "maxpool"}, {"type": "dense", "units": 4}))
    assert [row.index for row in analysis.rows] == [1, 2]
    assert analysis.error.startswith("Layer 3 (dense 4): needs a flat input")


def test_raised_limit_accepts_what_the_default_refuses():
    big = ERRORS["too many parameters"][0]
    assert check_spec(big, Limits(max_parameters=5_000_000))["layers"][2]["units"] == 64


# ---------------------------------------------------------------- JSON text: size, depth, hostile content

TEXT_ERRORS = {
    "10 MB": (b" " * 10_000_000, "The spec is 10,000,000 bytes; at most 65,536 are allowed."),
    "deeply nested": (
        "[" * 30_000 + "]" * 30_000,
        "The spec's JSON is nested 30,000 levels deep; a spec needs at most 3.",
    ),
    "nested setting": (
        '{"version": 1, "layers": [{"type": "conv2d", "filters": [[8]]}]}',
        "The spec's JSON is nested 5 levels deep; a spec needs at most 3.",
    ),
    "not JSON": (
        '{"version": 1,',
        "The spec is not valid JSON (line 1, column 15: Expecting property name enclosed in double quotes).",
    ),
    "not UTF-8": (
        b'{"version": 1, "layers": ["\xff"]}',
        "The spec is not UTF-8 text: export it from the Build page, or write it as JSON.",
    ),
    "NaN": (
        '{"version": 1, "layers": [{"type": "dropout", "rate": NaN}]}',
        "The spec is not valid JSON (NaN is not a number a spec may use).",
    ),
    "huge integer": (
        '{"version": 1, "layers": [{"type": "conv2d", "filters": ' + "9" * 50_000 + ', "kernel": 3}]}',
        None,
    ),
}


@pytest.fixture
def keras_never_called(monkeypatch):
    """Fails the test if anything reaches the Keras construction of a spec."""
    calls = []
    monkeypatch.setattr(specs, "_construct", lambda spec, name: calls.append(spec))
    yield calls
    assert calls == [], "a hostile spec reached Keras"


@pytest.mark.parametrize("case", list(TEXT_ERRORS))
def test_hostile_text_gets_one_plain_line(case, keras_never_called):
    text, message = TEXT_ERRORS[case]
    with pytest.raises(SpecError) as raised:
        specs.build_model(parse_spec_text(text))
    assert "\n" not in str(raised.value)
    if message:
        assert str(raised.value) == message
    else:
        assert str(raised.value).startswith("The spec is not valid JSON (Exceeds the limit")


@pytest.mark.parametrize(
    "spec",
    [
        ERRORS["huge filters"][0],
        ERRORS["too many layers"][0],
        ERRORS["unknown type"][0],
        ERRORS["output over the limit"][0],
    ],
    ids=["huge filters", "thousands of layers", "unknown type", "too many parameters"],
)
def test_hostile_specs_never_reach_keras(spec, keras_never_called):
    with pytest.raises(SpecError):
        specs.build_model(spec)


def test_a_valid_spec_does_reach_keras(keras_never_called):
    """The guard of the tests above: the fixture does see a valid spec being built."""
    specs.build_model(SMALL)
    assert len(keras_never_called) == 1
    keras_never_called.clear()


def test_json_depth_skips_brackets_inside_strings():
    assert specs.json_depth('{"layers": [{"name": "[[[[{{{{"}]}') == 3


def test_spec_module_imports_no_tensorflow_and_no_streamlit():
    code = (
        "import sys; from cnn import spec; spec.analyze(spec.REPORT_SPECS['batchnorm']); "
        "print(sorted(m for m in ('keras', 'tensorflow', 'streamlit') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_export_and_import_round_trip():
    canonical = check_spec(REPORT_SPECS["dropout"])
    text = specs.spec_to_text(canonical)
    assert parse_spec_text(text) == canonical
    assert parse_spec_text(text.encode()) == canonical


def test_spec_file_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.json"
    with path.open("wb") as handle:
        handle.truncate(10_000_000)
    with pytest.raises(SpecError, match="big.json is 10,000,000 bytes"):
        specs.read_spec_file(path)
    with pytest.raises(SpecError, match="cannot be read"):
        specs.read_spec_file(tmp_path / "missing.json")


# ---------------------------------------------------------------- names, limits, estimates


@pytest.mark.parametrize(
    "name, message",
    [
        ("base", "'base' is the name of a zoo model or of its Train-page run; choose another name."),
        (
            "base_classroom",
            "'base_classroom' is the name of a zoo model or of its Train-page run; choose another name.",
        ),
        (
            "../x",
            "The model name '../x' may use only letters, digits, _ and - (at most 64 characters, not starting "
            "with _ or -).",
        ),
        (
            "",
            "The model name '' may use only letters, digits, _ and - (at most 64 characters, not starting "
            "with _ or -).",
        ),
    ],
)
def test_model_names_are_checked(name, message):
    with pytest.raises(SpecError) as raised:
        specs.check_model_name(name)
    assert str(raised.value) == message


def test_an_existing_shipped_model_is_never_replaced(models_dir):
    (models_dir / "mine.keras").write_bytes(b"x")
    identity = {"sidecar_version": 1, "sha256": hashlib.sha256(b"x").hexdigest()}
    (models_dir / "mine.json").write_text(json.dumps({**identity, "config": {"model": "fast"}}))
    with pytest.raises(SpecError, match="was not built on the Build page"):
        specs.existing_model("mine")
    (models_dir / "mine.json").write_text(json.dumps({**identity, "config": {"model": "mine", "spec": SMALL}}))
    assert specs.existing_model("mine")["config"]["spec"] == SMALL
    assert specs.existing_model("other") is None


def test_classroom_limits_come_from_the_environment():
    assert specs.classroom_limits({}) == Limits()
    raised = specs.classroom_limits({"CNN_MAX_PARAMETERS": "5_000_000", "CNN_MAX_MULTIPLY_ADDS": "900000000"})
    assert (raised.max_parameters, raised.max_multiply_adds) == (5_000_000, 900_000_000)
    with pytest.raises(UserError, match="CNN_MAX_PARAMETERS must be a whole number"):
        specs.classroom_limits({"CNN_MAX_PARAMETERS": "many"})
    with pytest.raises(UserError, match="CNN_MAX_PARAMETERS must be at least 1"):
        specs.classroom_limits({"CNN_MAX_PARAMETERS": "0"})


def test_estimate_grows_with_work_images_and_batch_normalization():
    base, deeper, batchnorm = (check_spec(REPORT_SPECS[name]) for name in ("base", "deeper_dropout", "batchnorm"))
    small = specs.minutes_per_epoch(base, 3_500_000, 45_000, 5_000)
    assert 0.1 < small < 0.3  # the report's model 1 took 11 s per epoch here
    assert specs.minutes_per_epoch(base, 3_500_000, 5_000, 5_000) < small
    assert specs.minutes_per_epoch(deeper, 39_000_000, 45_000, 5_000) > small
    assert specs.minutes_per_epoch(batchnorm, 39_000_000, 45_000, 5_000) == pytest.approx(
        specs.BATCHNORM_SLOWDOWN * specs.minutes_per_epoch(deeper, 39_000_000, 45_000, 5_000)
    )


# ---------------------------------------------------------------- training configs with a spec


def test_train_config_carries_the_canonical_spec():
    from cnn.training import TrainConfig

    config = TrainConfig.for_model("my_cnn", spec=SMALL, epochs=2)
    assert config.spec == check_spec(SMALL) and config.batch_size == specs.BUILD_RECIPE["batch_size"]
    assert TrainConfig(**json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(model="base"), "'base' is the name of a zoo model"),
        (dict(spec=stack(conv())), "The output layer (dense 10, softmax) needs a flat input"),
    ],
)
def test_train_config_refuses_bad_built_models(overrides, message):
    from cnn.training import TrainConfig

    settings = {"model": "my_cnn", "spec": SMALL, **overrides}
    with pytest.raises(UserError) as raised:
        TrainConfig(**settings)
    assert message in str(raised.value)


def test_the_command_line_is_not_held_to_the_classroom_epoch_limit():
    from cnn.classroom import STUDENT_LIMITS
    from cnn.training import TrainConfig

    epochs = STUDENT_LIMITS.max_epochs + 20
    assert TrainConfig(model="my_cnn", spec=SMALL, epochs=epochs).epochs == epochs


def test_the_spec_travels_to_the_worker_in_the_runs_config(tmp_path):
    from cnn.runs import RunFiles, RunRequest
    from cnn.training import TrainConfig

    config = TrainConfig.for_model("my_cnn", spec=SMALL, epochs=1, subset=20)
    files = RunFiles(tmp_path / "run")
    RunRequest(config=config.to_dict(), out_path=str(tmp_path / "my_cnn.keras")).write(files)
    assert TrainConfig(**RunRequest.read(files).config) == config  # what `train --job` trains


# ---------------------------------------------------------------- a built model, end to end


@pytest.mark.slow
def test_built_model_trains_saves_and_loads_everywhere(synthetic_cifar, models_dir, tmp_path, capsys):
    """`python -m cnn train --spec` -> sidecar with the spec -> safe-mode load -> evaluate/predict/inspect."""
    from cnn.__main__ import main
    from cnn.artifacts import load_model
    from cnn.explain import grad_cam, layer_table

    spec = copy.deepcopy(SMALL)
    spec["layers"].insert(2, {"type": "dropout", "rate": 0.25})
    spec_file = tmp_path / "mine.json"
    spec_file.write_text(json.dumps(spec))
    assert (
        main(
            [
                "train",
                "--model",
                "mine",
                "--spec",
                str(spec_file),
                "--epochs",
                "1",
                "--subset",
                "40",
                "--val-size",
                "20",
                "--data-dir",
                str(synthetic_cifar),
                "--run-dir",
                str(tmp_path / "run"),
                "--out",
                str(models_dir / "mine.keras"),
            ]
        )
        == 0
    )
    model, record = load_model("mine")
    assert specs.spec_of(record) == check_spec(spec)
    assert record["description"].startswith("Built on the Build page: 5 layers")
    assert record["metrics"]["test_clean_images"] == 50 and record["parameters"] == analyze(spec).parameters
    assert [row.name for row in layer_table(model)][1:] == [row.name for row in analyze(spec).rows]
    cam = grad_cam(model, np.zeros((32, 32, 3), np.uint8))
    assert cam.heatmap.shape == (32, 32)
    capsys.readouterr()
    assert main(["evaluate", "mine", "--data-dir", str(synthetic_cifar), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 50


def test_output_stays_float32_in_mixed_precision():
    """Mixed-precision training computes in bf16, but the probabilities (and the loss) stay float32."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = specs.build_model(SMALL)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.layers[1].dtype_policy.name == "mixed_bfloat16"
    assert model.layers[-1].dtype_policy.name == "float32" and model.output.dtype == "float32"
