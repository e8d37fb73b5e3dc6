"""cnn.inference: the one path from an image to a model input, the shared constants, one lock per model.

(That training, evaluation and prediction agree on `preprocess()` is proved
end to end in tests/test_cli.py::test_preprocess_agrees_across_training_evaluation_and_prediction.)
"""

import threading

import numpy as np
import pytest
from PIL import Image

from cnn import CLASS_NAMES, IMAGE_SIZE, INPUT_SHAPE, NUM_CLASSES
from cnn.errors import UserError
from cnn.images import to_model_size
from cnn.inference import Predictor, model_lock, predict_proba, preprocess, to_model_input, top_k

# Long enough for a warmed-up call of a tiny model to finish on a very loaded machine,
# so a call that did not finish was blocked.
BLOCKED_WAIT_S = 2.0


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_constants_describe_cifar10():
    assert (IMAGE_SIZE, NUM_CLASSES) == (32, 10)
    assert INPUT_SHAPE == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert NUM_CLASSES == len(CLASS_NAMES)


def test_a_model_sized_array_is_the_model_input_as_is():
    image = picture(IMAGE_SIZE, IMAGE_SIZE)
    assert to_model_input(image) is image


@pytest.mark.parametrize("policy", ["squash", "center_crop"])
def test_other_sizes_are_resized_by_the_images_module(policy):
    image = picture(45, 70, seed=1)
    expected = to_model_size(Image.fromarray(image), policy=policy)
    for given in (image, Image.fromarray(image)):
        result = to_model_input(given, policy)
        assert result.shape == INPUT_SHAPE and result.dtype == np.uint8
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("policy", ["squash", "center_crop"])
def test_preprocess_makes_its_inputs_with_to_model_input(policy):
    images = [picture(45, 70, seed=2), picture(IMAGE_SIZE, IMAGE_SIZE, seed=3), picture(90, 33, seed=4)]
    expected = np.stack([to_model_input(image, policy) for image in images]).astype(np.float32) / 255
    np.testing.assert_array_equal(preprocess(images, policy=policy), expected)


@pytest.mark.parametrize(
    "bad", [np.zeros((40, 40, 3), np.float32), np.zeros((40, 40), np.uint8), np.zeros((40, 40, 4), np.uint8)]
)
def test_to_model_input_refuses_what_is_not_rgb_pixels(bad):
    with pytest.raises(UserError, match="RGB uint8"):
        to_model_input(bad)


def test_the_zoo_takes_and_gives_the_shared_shapes():
    from cnn.zoo import ZOO

    model = ZOO["base"].build()
    assert tuple(model.input_shape[1:]) == INPUT_SHAPE
    assert model.output_shape[-1] == NUM_CLASSES


# ---------------------------------------------------------------- one lock per loaded model


@pytest.fixture(scope="module")
def model():
    from cnn.zoo import ZOO

    return ZOO["base"].build()


def test_the_predictor_speaks_scikit_learn_and_agrees_with_the_batch_path(model):
    """predict_proba as model.predict gives it, predict its argmax, top the same probabilities ranked."""
    images = [picture(32, 32), picture(40, 24)]
    predictor = Predictor(model)
    probabilities = predictor.predict_proba(images)
    assert probabilities.shape == (2, NUM_CLASSES)
    np.testing.assert_allclose(probabilities, predict_proba(model, images), atol=1e-5)
    np.testing.assert_array_equal(predictor.predict(images), probabilities.argmax(axis=1))
    assert predictor.top(images, k=2) == [top_k(row, 2) for row in probabilities]


def test_a_model_has_one_lock_and_another_model_its_own(model):
    from cnn.zoo import ZOO

    assert model_lock(model) is model_lock(model)
    assert Predictor(model).lock is model_lock(model)
    assert model_lock(ZOO["base"].build()) is not model_lock(model)


def finishes_only_after_release(model, action) -> None:
    """Hold the model's lock while `action` runs in another thread: it must wait for the release."""
    action()  # warm up (tracing), so the timed call is quick when nothing blocks it
    done = threading.Event()
    errors = []

    def run():
        try:
            action()
        except Exception as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)
        done.set()

    with model_lock(model):
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        assert not done.wait(BLOCKED_WAIT_S), "the call did not wait for the model's lock"
    assert done.wait(120), "the call never finished after the lock was released"
    worker.join()
    assert not errors, errors


def test_prediction_holds_the_model_lock(model):
    predictor = Predictor(model)
    finishes_only_after_release(model, lambda: predictor.predict_proba(picture(40, 40)))


def test_feature_maps_hold_the_same_lock(model):
    from cnn import explain

    layer = explain.conv_layer_names(model)[0]
    finishes_only_after_release(model, lambda: explain.feature_maps(model, picture(40, 40), layer))


def test_grad_cam_holds_the_same_lock(model):
    from cnn import explain

    finishes_only_after_release(model, lambda: explain.grad_cam(model, picture(40, 40)))


def test_the_quick_enough_model_is_the_first_with_a_recorded_figure_within_budget():
    from cnn.inference import quick_enough_model

    records = [
        {"name": "wide", "metrics": {"latency_p50_ms": 18.0}},
        {"name": "unmeasured", "metrics": {}},
        {"name": "quick", "metrics": {"latency_p50_ms": 9.5}},
        {"name": "quicker", "metrics": {"latency_p50_ms": 1.0}},
    ]
    assert quick_enough_model(records) == "quick"
    assert quick_enough_model(records, budget_ms=20) == "wide"
    assert quick_enough_model(records[:2]) is None


def test_single_image_latency_times_the_predictor(model):
    from cnn.inference import single_image_latency

    latency = single_image_latency(Predictor(model), runs=7, warmup=1)
    assert latency.runs == 7 and 0 < latency.p50_ms <= latency.p95_ms
