"""End-to-end flows that change state, in headless Debian chromium: a short training run started
from the Train page, watched until its loss chart has a point for every epoch.

The server is the session's `training_server` (browser_support): a synthetic CIFAR-10 folder as data
(2,000 training images), and empty temporary runs and models folders, so nothing of the developer's
is read or replaced.
Screenshots land in the test's tmp_path (pytest prints where with -rA; or pass --basetemp).
"""

from __future__ import annotations

import time

import pytest
from browser_support import (
    BROWSER_MARKS,
    LIVE_LOSS_MARKERS,
    LIVE_LOSS_POINTS,
    TRAINING_SYNTHETIC_PER_BATCH,
    open_path,
    screenshot_whole_page,
    wait_for_app_run,
)

pytestmark = [*BROWSER_MARKS, pytest.mark.slow]

EPOCHS = 6
# Small batches of many images, so that each epoch lasts seconds and the panel's 1 s polls see it:
# 176 images (22 steps) once made six epochs of `base` last under a second on a quick CI machine.
BATCH_SIZE = 8
TRAIN_IMAGES = 1800  # the first 1,800 train (225 steps an epoch) ...
VALIDATION_IMAGES = 200  # ... and the last 200 validate
assert TRAIN_IMAGES + VALIDATION_IMAGES == 5 * TRAINING_SYNTHETIC_PER_BATCH
TRAINING_TIMEOUT_S = 180  # the worker imports TensorFlow first: slow on a busy 2-core machine


def set_number(page, label: str, value: int) -> None:
    """Type into a number input and leave it (a form keeps the value until submit)."""
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")


def test_short_training_chart_gains_points(training_server, page, tmp_path):
    """A browser test that starts a short training and watches the chart gain points."""
    # Through the dataset page and then the menu, as a class would: the browser has plotly's code
    # loaded before the first epoch ends. (Loaded only when the first chart appears, it takes
    # seconds on a busy machine, and epochs of a tiny run last about one second each.)
    open_path(page, training_server, "dataset")  # through the router (see open_path)
    page.locator("[data-testid=stPlotlyChart] .js-plotly-plot").first.wait_for()
    page.locator("[data-testid=stSidebarNavLink]").filter(has_text="Train").click()
    page.wait_for_url("**/train")
    wait_for_app_run(page)
    assert page.locator("[data-testid=stSidebarNavLink]").filter(has_text="Train").count() == 1, "not the router's menu"
    assert page.get_by_text("No run of this model yet").count() == 1

    # Model `base` (the report's model 1).
    model = page.get_by_role("combobox", name="Model", exact=True)
    model.click()
    page.get_by_role("option", name="base:").first.click()
    wait_for_app_run(page)
    assert model.input_value().startswith("base:"), model.input_value()

    set_number(page, "Epochs (passes over the images)", EPOCHS)
    set_number(page, "Training images (first N of the training set)", TRAIN_IMAGES)
    slider = page.get_by_role("slider", name="Batch size (images per step)")
    slider.focus()
    slider.press("Home")  # the smallest size, 8
    for _ in range(8):  # one size up per key
        if slider.get_attribute("aria-valuetext") == str(BATCH_SIZE):
            break
        slider.press("ArrowRight")
    assert slider.get_attribute("aria-valuetext") == str(BATCH_SIZE)
    page.get_by_text("Validation and saving").click()
    set_number(page, "Validation images (the last N training images)", VALIDATION_IMAGES)
    screenshot_whole_page(page, tmp_path / "train_settings.png")

    page.get_by_role("button", name="Start training").click()
    page.get_by_text(f"base: {EPOCHS} epochs, batch {BATCH_SIZE}").first.wait_for()  # the run's settings line
    assert page.get_by_text(f"{TRAIN_IMAGES:,} images, {VALIDATION_IMAGES:,} validation images").count() >= 1

    seen: list[int] = []  # each different point count, in the order they appeared
    watched: list[tuple[float, int, str]] = []  # (seconds, points, status line): the message when it fails
    started = time.monotonic()
    finished = page.get_by_text(f"Finished {EPOCHS} epochs")
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while True:
        points = page.evaluate(LIVE_LOSS_POINTS)
        progress = page.evaluate("() => document.querySelector('[data-testid=stProgress]')?.innerText || ''")
        watched.append((round(time.monotonic() - started, 1), points, progress))  # read without waiting
        if points > 0 and (not seen or seen[-1] != points):
            seen.append(points)
            if len(seen) == 1:
                screenshot_whole_page(page, tmp_path / "train_first_points.png")
        if finished.count():
            break
        failure = page.locator("[data-testid=stAlertContentError], [data-testid=stAlertContentWarning]")
        assert failure.count() == 0, f"the run did not finish: {failure.all_inner_texts()}"
        assert time.monotonic() < deadline, (
            f"no 'Finished' after {TRAINING_TIMEOUT_S} s; point counts seen {seen}\n{training_server.log_tail()}"
        )
        page.wait_for_timeout(250)
    wait_for_app_run(page)
    final = page.evaluate(LIVE_LOSS_POINTS)
    if final != (seen[-1] if seen else None):
        seen.append(final)
    screenshot_whole_page(page, tmp_path / "train_finished.png")

    assert seen == sorted(seen) and len(set(seen)) == len(seen), f"the point count went down: {seen}"
    assert len(seen) >= 2, f"the chart never gained a point while watched: {watched}"
    assert seen[-1] == EPOCHS, seen
    assert page.evaluate(LIVE_LOSS_MARKERS) == EPOCHS
    assert page.get_by_text(f"{EPOCHS} finished epoch(s) of {EPOCHS}").count() == 1
    assert page.get_by_role("button", name="Start training").is_enabled()
    assert len(list(training_server.models_dir.glob("base_*.keras"))) == 1  # saved under the session's own name
    assert page.js_errors == []
