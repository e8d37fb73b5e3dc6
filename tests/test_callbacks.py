"""cnn.callbacks: lookahead's averaging against the same steps computed by hand in numpy."""

import numpy as np
import pytest

IMAGES, FEATURES = 4, 3  # a linear model y = x @ w on 4 rows: its gradient is easy to write down
BATCH, EPOCHS = 2, 6  # 2 steps an epoch, 12 in all: averages at steps 5 and 10, then 2 steps that are dropped
LEARNING_RATE = 0.1


def lookahead_by_hand(x, y, w, every, total_steps):
    """The weights after each step and at the end: plain SGD on the mean squared error, and every
    `every` steps the fast weights pulled back 0.95**5 * (step / total_steps)**3 of the way to the slow ones."""
    slow, after_each_step = w.copy(), []
    for step in range(1, total_steps + 1):
        rows = slice((step - 1) % 2 * BATCH, (step - 1) % 2 * BATCH + BATCH)  # unshuffled batches
        gradient = 2 / BATCH * x[rows].T @ (x[rows] @ w - y[rows])
        w = w - LEARNING_RATE * gradient
        if step % every == 0:
            keep = 0.95**5 * (step / total_steps) ** 3
            pulled_back = w - keep * (w - slow)  # keep of the way back to the slow weights
            slow = w = pulled_back  # the new slow weights, and training continues from them
        after_each_step.append(w)
    return after_each_step, slow  # the finished model is the slow copy


def test_lookahead_pulls_the_weights_back_by_the_documented_fraction():
    import keras

    from cnn.callbacks import LOOKAHEAD_EVERY, Lookahead

    rng = np.random.default_rng(0)
    x = rng.normal(size=(IMAGES, FEATURES))
    y = rng.normal(size=(IMAGES, 1))
    start = rng.normal(size=(FEATURES, 1))
    total_steps = IMAGES // BATCH * EPOCHS

    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(start)),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    seen = []

    class WeightsAfterEachStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(self.model.get_weights()[0].astype(np.float64))

    model.fit(
        x.astype(np.float32),
        y.astype(np.float32),
        batch_size=BATCH,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=[Lookahead(total_steps, EPOCHS, every=LOOKAHEAD_EVERY), WeightsAfterEachStep()],
    )

    expected_steps, expected_final = lookahead_by_hand(x, y, start, LOOKAHEAD_EVERY, total_steps)
    assert LOOKAHEAD_EVERY == 5 and len(seen) == total_steps == 12
    for step, (got, expected) in enumerate(zip(seen, expected_steps), start=1):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=f"after step {step}")
    np.testing.assert_allclose(model.get_weights()[0], expected_final, rtol=1e-5, atol=1e-6)
    # The oracle is not trivial: the averages moved the weights, and the last two steps were dropped.
    plain_step_5 = expected_steps[3] - LEARNING_RATE * 2 / BATCH * x[:2].T @ (x[:2] @ expected_steps[3] - y[:2])
    assert np.abs(plain_step_5 - expected_steps[4]).max() > 1e-3
    assert np.abs(expected_steps[-1] - expected_final).max() > 1e-3


def test_lookahead_schedule_keeps_nothing_at_the_start_and_0_95_to_the_5th_at_the_end():
    from cnn.callbacks import lookahead_decay

    assert lookahead_decay(0, 100) == 0.0 and lookahead_decay(100, 100) == pytest.approx(0.95**5)
    assert lookahead_decay(50, 100) == pytest.approx(0.95**5 / 8)
    assert lookahead_decay(150, 100) == pytest.approx(0.95**5)  # past the end: held at the end's value
