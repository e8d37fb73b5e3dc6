"""The Train page's learning-curve figures: end-of-line labels fit, partial epochs look partial."""

from ui.training_views import learning_curve, partial_note

FULL = [
    {"epoch": 1, "loss": 2.0, "val_loss": 2.1, "accuracy": 0.2, "val_accuracy": 0.18},
    {"epoch": 2, "loss": 1.6, "val_loss": 1.9, "accuracy": 0.4, "val_accuracy": 0.33},
]
PARTIAL = {"epoch": 3, "loss": 1.5, "accuracy": 0.45, "partial_batches": 5, "batches_per_epoch": 20}


def test_end_of_line_labels_have_room_past_the_last_epoch():
    for metric in ("loss", "accuracy"):
        figure = learning_curve({"run": FULL}, metric)
        low, high = figure.layout.xaxis.range
        assert low == 0 and high >= 2 + 0.5, "the x-axis reaches past the last epoch, so its label shows"
        assert all(trace.cliponaxis is False for trace in figure.data), "labels may draw past the plot area"
        assert [trace.text[-1] for trace in figure.data] == (
            ["1.600", "1.900"] if metric == "loss" else ["40.0%", "33.0%"]
        )
        assert figure.layout.xaxis.title.text == "epoch" and figure.layout.yaxis.title.text


def test_a_partial_last_epoch_is_drawn_as_partial_not_as_a_full_epoch():
    figure = learning_curve({"run": [*FULL, PARTIAL]}, "loss")
    names = [trace.name for trace in figure.data]
    assert names == ["run: training", "run: training, partial epoch (5 of 20 batches)", "run: validation"]
    full, partial, _ = figure.data
    assert list(full.x) == [1, 2], "the stopped epoch is not drawn as a full one"
    assert list(partial.x) == [2, 2.25], "the partial point sits at the share of the epoch that was done"
    assert partial.line.dash == "dot" and full.line.dash == "solid"
    assert partial.marker.symbol[-1] == "circle-open", "an open marker: partial shown by shape, not colour alone"
    assert partial.text[-1] == "1.500 (partial)" and full.text[-1] == "", "one end label, saying partial"
    assert "partial epoch (5 of 20 batches)" in partial.customdata[-1]
    assert "%{customdata}" in partial.hovertemplate


def test_partial_note_without_the_epoch_size():
    assert partial_note({"epoch": 1, "partial_batches": 3}) == "partial epoch (3 batches)"
    assert partial_note(FULL[0]) == ""
