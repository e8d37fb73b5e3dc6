"""The Build page end to end in headless Debian chromium: add a layer, see the parameter count change,
start a short training of the built model on a tiny subset and see its loss chart gain a point.

The session's `training_server` (browser_support): synthetic CIFAR-10 and empty runs and models folders
(nothing of the developer's is read or replaced). Screenshots land in the test's tmp_path.
"""

from __future__ import annotations

import json
import time

import pytest
from browser_support import BROWSER_MARKS, LIVE_LOSS_POINTS, open_path, screenshot_whole_page, wait_for_app_run

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

TRAINING_TIMEOUT_S = 240  # the worker imports TensorFlow first: slow on a busy 2-core machine


def parameters_shown(page) -> str:
    metric = page.locator("[data-testid=stMetric]").filter(has_text="Parameters")
    return metric.locator("[data-testid=stMetricValue]").inner_text().strip()


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")
    wait_for_app_run(page)


def test_add_a_layer_and_train_the_built_model(training_server, page, tmp_path):
    open_path(page, training_server, "build")
    assert parameters_shown(page) == "225,610"  # the report's model 1, loaded at the start

    chooser = page.get_by_role("combobox", name="Layer type to add")
    chooser.click()
    chooser.fill("Dense")  # the selectbox filters its options as one types
    chooser.press("Enter")
    wait_for_app_run(page)
    assert chooser.input_value() == "Dense (fully connected)", chooser.input_value()
    page.locator("[data-testid=stButton] button").filter(has_text="Add").first.click()
    wait_for_app_run(page)
    page.get_by_text("7. Dense (fully connected)").wait_for()
    # 225,610 - (256+1)*10 + (256+1)*128 + (128+1)*10
    assert parameters_shown(page) == "257,226"
    screenshot_whole_page(page, tmp_path / "build_added_dense.png")

    page.get_by_label("Model name (letters, digits, _ and -)").fill("browser_cnn")
    page.get_by_label("Model name (letters, digits, _ and -)").press("Tab")
    wait_for_app_run(page)
    set_number(page, "Epochs", 2)
    set_number(page, "Training images (first N)", 200)
    page.get_by_text("Validation images", exact=True).click()
    set_number(page, "Validation images (the last N training images)", 50)
    assert page.get_by_text("Estimate on this machine: about").count() == 1
    page.get_by_role("button", name="Start training").click()

    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while page.evaluate(LIVE_LOSS_POINTS) < 1:
        failure = page.locator("[data-testid=stAlertContentError]")
        assert failure.count() == 0, failure.all_inner_texts()
        assert time.monotonic() < deadline, f"no chart point after {TRAINING_TIMEOUT_S} s\n{training_server.log_tail()}"
        page.wait_for_timeout(500)
    screenshot_whole_page(page, tmp_path / "build_training.png")
    page.get_by_text("Finished 2 epochs").wait_for(timeout=TRAINING_TIMEOUT_S * 1000)
    wait_for_app_run(page)
    sidecar = json.loads((training_server.models_dir / "browser_cnn.json").read_text())
    assert [layer["type"] for layer in sidecar["config"]["spec"]["layers"]][-2:] == ["dense", "dense"]
    assert page.js_errors == []
