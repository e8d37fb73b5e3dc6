"""AppTest of the Build page: edit the stack and see the counts change, load a report model, see errors,
train a built model through the Train page's worker and see it on the leaderboard."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnn import jobs, runs
from cnn.runs import RunFiles, RunRequest
from cnn.spec import REPORT_SPECS, analyze
from tests.test_classroom import fake_model
from tests.test_train_page import page_env  # noqa: F401 - synthetic data, own runs and models folders
from ui import build_views

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "build.py")


def open_page() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert_fine(app)
    return app


def assert_fine(app: AppTest) -> None:
    assert not app.exception, [exception.value for exception in app.exception]


def parameters(app: AppTest) -> str:
    return next(metric.value for metric in app.metric if metric.label == "Parameters")


def layer_labels(app: AppTest) -> list[str]:
    return app.dataframe[0].value["Layer"].tolist()


def test_opens_with_report_model_1_and_adding_a_layer_changes_the_count(page_env):
    app = open_page()
    assert parameters(app) == "225,610"
    app.selectbox(key="build_add_type").set_value("dense")
    app.number_input(key="build_add_after_6").set_value(6)  # after the Dense 256
    app.button(key="build_add").click().run()
    assert_fine(app)
    expected = analyze(
        {"version": 1, "layers": REPORT_SPECS["base"]["layers"] + [{"type": "dense", "units": 128}]}
    ).parameters
    assert parameters(app) == f"{expected:,}" != "225,610"
    assert layer_labels(app)[7] == "dense 128 (dense_7)"

    app.number_input(key="build_layer_6_units").set_value(64).run()  # the new layer's uid is 6
    assert_fine(app)
    assert layer_labels(app)[7] == "dense 64 (dense_7)"


def test_load_report_model_and_edit_up_down_duplicate_remove(page_env):
    app = open_page()
    labels = [option for option in app.selectbox(key="build_start").options if option.startswith("Report model 3")]
    app.selectbox(key="build_start").set_value(labels[0])
    app.button(key="build_load").click().run()
    assert_fine(app)
    assert parameters(app) == "814,122"
    assert "Loaded Report model 3: deeper" in app.success[0].value

    base = next(option for option in app.selectbox(key="build_start").options if option.startswith("Report model 1"))
    app.selectbox(key="build_start").set_value(base)
    app.button(key="build_load").click().run()
    assert parameters(app) == "225,610"
    uids = [layer["uid"] for layer in app.session_state[build_views.STACK]]

    app.button(key=f"build_copy_{uids[1]}").click().run()  # duplicate pool1
    assert layer_labels(app)[1:4] == ["conv2d 32 filters 4x4 (conv1)", "maxpool 2x2 (pool1)", "maxpool 2x2 (maxpool_3)"]
    app.button(key=f"build_down_{uids[0]}").click().run()  # conv1 below pool1
    assert layer_labels(app)[1:3] == ["maxpool 2x2 (pool1)", "conv2d 32 filters 4x4 (conv1)"]
    app.button(key=f"build_up_{uids[0]}").click().run()
    assert layer_labels(app)[1] == "conv2d 32 filters 4x4 (conv1)"


def test_invalid_stack_shows_the_error_naming_the_layer(page_env):
    app = open_page()
    flatten = app.session_state[build_views.STACK][4]
    assert flatten["type"] == "flatten"
    app.button(key=f"build_remove_{flatten['uid']}").click().run()
    assert_fine(app)
    assert app.error[0].value == (
        "Layer 5 (dense 256): needs a flat input; add Flatten or GlobalAveragePooling before it."
    )
    assert app.button(key="build_start_training").disabled
    assert len(layer_labels(app)) == 5, "the table still shows the layers before the problem"


def test_import_a_spec_file_and_refuse_a_hostile_one(page_env):
    from cnn.spec import spec_to_text

    app = open_page()
    text = spec_to_text(REPORT_SPECS["deeper"]).encode()
    app.file_uploader(key="build_upload").set_value(("deeper.json", text, "application/json")).run()
    assert_fine(app)
    assert parameters(app) == "814,122" and "Imported deeper.json" in app.success[0].value

    hostile = json.dumps({"version": 1, "layers": [{"type": "lambda", "function": "__import__('os')"}]}).encode()
    app.file_uploader(key="build_upload").set_value(("evil.json", hostile, "application/json")).run()
    assert_fine(app)
    assert app.error[0].value.startswith("evil.json was not loaded: Layer 1: unknown layer type 'lambda'")
    assert parameters(app) == "814,122", "the stack is kept"


def test_model_name_is_validated(page_env):
    app = open_page()
    app.text_input(key="build_name").set_value("base").run()
    assert "'base' is the name of a zoo model" in app.error[0].value
    assert app.button(key="build_start_training").disabled
    app.text_input(key="build_name").set_value("mine").run()
    assert not app.error and not app.button(key="build_start_training").disabled
    assert "per epoch" in " ".join(caption.value for caption in app.caption)


def poll(app: AppTest, run_dir: Path, until, timeout_s: float = 180):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.run()
        assert_fine(app)
        state = jobs.run_state(run_dir)
        if until(state):
            return state
        time.sleep(0.5)
    raise AssertionError(f"timed out: {jobs.run_state(run_dir)}\n{jobs.log_tail(run_dir)}")


@pytest.mark.slow
def test_train_a_built_model_and_race_it(page_env):
    app = open_page()
    app.selectbox(key="build_add_type").set_value("dropout")
    app.number_input(key="build_add_after_6").set_value(2)
    app.button(key="build_add").click().run()
    app.text_input(key="build_name").set_value("mine")
    app.number_input(key="build_epochs").set_value(1)
    app.number_input(key="build_subset").set_value(100)
    app.number_input(key="build_val").set_value(20)
    app.button(key="build_start_training").click().run()
    assert_fine(app)
    run_dir = runs.run_dir_for("mine")
    assert jobs.run_state(run_dir).config["spec"]["layers"][2]["type"] == "dropout"
    final = poll(app, run_dir, lambda state: not state.active)
    assert final.state == "finished", jobs.log_tail(run_dir)
    assert len(final.history) == 1
    app.run()
    sidecar = json.loads((page_env / "mine.json").read_text())
    assert sidecar["config"]["spec"]["layers"][2] == {"type": "dropout", "rate": 0.25}
    board = app.dataframe[1].value  # the shape table, then the leaderboard
    assert board["Model"].tolist() == ["mine"] and board["Kind"].tolist() == ["built here"]
    assert board["Layers"].tolist() == [8]
    assert "Built here: mine" in app.selectbox(key="build_start").options
    # A second model of the same name needs the replace box; a finished run offers no Resume.
    assert app.checkbox(key="build_replace").value is False
    assert not [button for button in app.button if button.key == "build_resume"]
    assert RunRequest.read(RunFiles(run_dir)).config["spec"]["layers"][2]["type"] == "dropout"  # what ran


@pytest.mark.slow
def test_a_built_model_works_on_evaluate_inspect_and_predict(models_dir):
    """A model built from a spec (GlobalAveragePooling, BatchNorm, an avgpool: layers the zoo does not use)
    is saved like a trained one and used by the other pages."""
    from cnn.artifacts import save_model
    from cnn.spec import build_model

    spec = {
        "version": 1,
        "layers": [
            {"type": "conv2d", "filters": 8, "kernel": 3, "padding": "same", "activation": "linear", "use_bias": False},
            {"type": "batchnorm"},
            {"type": "relu"},
            {"type": "avgpool", "size": 2},
            {"type": "conv2d", "filters": 16, "kernel": 3, "stride": 2},
            {"type": "global_avgpool"},
            {"type": "dropout", "rate": 0.2},
            {"type": "dense", "units": 32},
        ],
    }
    save_model(
        build_model(spec, name="mine"),
        models_dir / "mine.keras",
        {"model": "mine", "config": {"model": "mine", "spec": spec}, "metrics": {"val_accuracy": 0.1}},
    )
    for page, key, checks in (
        ("inspect.py", "inspect_model", ("Grad-CAM",)),
        ("evaluate.py", "eval_model", ("Accuracy",)),
        ("predict.py", "predict_model", ()),
    ):
        app = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=120).run()
        assert_fine(app)
        assert app.selectbox(key=key).value == "mine", page
        text = " ".join(element.value for element in [*app.caption, *app.markdown]) + " ".join(
            metric.label for metric in app.metric
        )
        assert all(check in text for check in checks), (page, text[:500])
    inspect = AppTest.from_file(str(ROOT / "pages" / "inspect.py"), default_timeout=120).run()
    layers = inspect.dataframe[0].value["Layer"].tolist()
    assert layers[1:] == [row.name for row in analyze(spec).rows]


def test_the_teachers_limits_apply_and_a_bad_one_is_reported(page_env, monkeypatch):
    monkeypatch.setenv("CNN_MAX_PARAMETERS", "100000")
    app = open_page()
    assert app.error[0].value.startswith(
        "Layer 6 (dense 256): brings the parameter count to 223,040, over the classroom limit of 100,000"
    )
    monkeypatch.setenv("CNN_MAX_PARAMETERS", "lots")
    app = open_page()
    assert app.error[0].value == (
        "The classroom limits are misconfigured: CNN_MAX_PARAMETERS must be a whole number, not 'lots'."
    )


def test_the_epoch_limit_is_the_train_pages(page_env):
    from cnn import classroom

    app = open_page()
    assert app.number_input(key="build_epochs").proto.max == classroom.STUDENT_LIMITS.max_epochs


def test_the_race_caption_names_the_reference_models_of_the_zoo(page_env):
    from cnn.zoo import our_models, report_figures_text

    fake_model(page_env, "fast", model="fast")  # a reference model: the race shows it and its caption
    app = open_page()
    assert app.dataframe[1].value["Model"].tolist() == ["fast"]
    (caption,) = [caption.value for caption in app.caption if caption.value.startswith("Models built on this page")]
    assert f"({report_figures_text()})" in caption and "augmented 90.0%" in caption
    assert "ours (" + ", ".join(entry.name for entry in our_models()) + ")" in caption and "best" in caption


def test_a_refused_start_is_reported_as_every_user_error_is(page_env, monkeypatch):
    from ui import resources

    fake_model(page_env, "cats", config={"model": "cats", "spec": REPORT_SPECS["base"]}, made_by="another session")
    shown = []
    real_show = resources.show_user_error
    monkeypatch.setattr(resources, "show_user_error", lambda error: shown.append(str(error)) or real_show(error))
    app = open_page()
    app.text_input(key="build_name").set_value("cats").run()
    app.checkbox(key="build_replace").check()
    app.button(key="build_start_training").click().run()
    assert_fine(app)
    message = (
        "cats.keras was made by someone else: choose another name for your model (only the teacher may replace it)."
    )
    assert [error.value for error in app.error] == [message] and shown == [message]
    assert not runs.run_dir_for("cats").exists()
