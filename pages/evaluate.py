"""Evaluate page: one model's per-class metrics, confusion matrix and mistakes; then every saved model compared."""

import streamlit as st

from cnn import zoo
from cnn.errors import UserError
from ui import evaluation_views as views
from ui import resources

st.title("Evaluate a model")
st.markdown(
    "How good is a trained model on images it never saw? Accuracy alone hides *which* classes it "
    "confuses: the classification report, the confusion matrix and the misclassified images show it. "
    "The models that ship with the dashboard carry their predictions with them, so their results appear at once."
)

model_tab, compare_tab = st.tabs(["One model", "Compare models"])

with model_tab:
    name = resources.model_picker("Model to evaluate", key="eval_model")
    evaluation = None
    if name:
        try:
            evaluation = views.stored_evaluation(name)
        except UserError as error:  # stale or damaged stored predictions: never shown, measured instead
            resources.show_user_error(error)
        try:
            evaluation = evaluation or views.evaluation_measured_here(name)
        except UserError as error:
            resources.show_user_error(error)
    if evaluation:
        st.caption(f"Test data: {evaluation.data_description}.")
        clean_column, whole_column, loss_column = st.columns(3)
        clean_column.metric(f"Accuracy, {evaluation.clean.split}", f"{evaluation.clean.accuracy:.1%}")
        if evaluation.whole:
            whole_column.metric(f"Accuracy, {evaluation.whole.split}", f"{evaluation.whole.accuracy:.1%}")
        loss_column.metric("Mean cross-entropy loss", f"{evaluation.main.loss:.3f}")
        details = evaluation.main
        if evaluation.whole:
            part = st.radio("Details for", [views.WHOLE_LABEL, views.CLEAN_LABEL], horizontal=True, key="eval_part")
            details = evaluation.clean if part == views.CLEAN_LABEL else evaluation.whole

        st.subheader("Classification report")
        table = views.class_metrics_table(details)
        st.dataframe(
            table,
            height=views.table_height(len(table)),
            column_config={
                column: st.column_config.NumberColumn(column, format="%.2f")
                for column in ("precision", "recall", "f1-score")
            },
        )
        st.caption(
            f"scikit-learn's classification report on the {details.split} ({details.n:,} images): precision "
            "= share of the predictions of a class that are right; recall = share of the class's images "
            "found; f1 = their harmonic mean; support = images of the class."
        )

        st.subheader("Confusion matrix")
        mode = (
            st.segmented_control(
                "Cells show", ["counts", "row-normalized"], default="counts", key="eval_confusion_mode"
            )
            or "counts"
        )
        views.confusion_matrix(details, normalized=mode == "row-normalized")
        true_label, predicted_label = views.pair_picker(details)
        views.mistakes_gallery(details, true_label, predicted_label)

        st.subheader("Per class")
        bars, pairs = st.columns([3, 2])
        bars.plotly_chart(views.per_class_figure(details), key="eval_per_class")
        bars.caption(
            "Each bar is the share of one class's test images that the model classified correctly; "
            "the value is written at its end."
        )
        pairs.markdown("**Most confused pairs**")
        pairs.dataframe(
            views.confused_pairs_table(details),
            hide_index=True,
            column_config={views.PAIR_SHARE: st.column_config.NumberColumn(format="%.1f")},
        )

with compare_tab:
    records = resources.shipped_models()
    if not records:
        st.info("No saved model yet: train one on the Train page.", icon=":material/info:")
    else:
        measured = st.session_state.setdefault("eval_measured", {})
        if st.button("Measure the test accuracy of models whose sidecar has none", key="eval_measure_all"):
            for record in records:
                if record.get("metrics", {}).get("test_clean_accuracy") is None:
                    try:
                        measured[record["name"]] = views.cached_accuracies(record["name"])
                    except UserError as error:
                        resources.show_user_error(error)
        table = views.comparison_table(records, measured)
        st.dataframe(table, hide_index=True, column_config=views.comparison_column_config())
        st.caption(
            "Every saved model. Test accuracy on images 0-999 is on exact CIFAR-10 images; the whole-set figure "
            "includes test images 1000-9999, which are JPEG-derived in the shared copy. The report's figure is "
            f"the accuracy the report states ({zoo.report_figures_text()}); 'figures from' says "
            "whether the test figures were recorded with the model (sidecar) or measured in this session. "
            "Every accuracy is in percent, with one decimal."
        )
        st.plotly_chart(views.story_figure(table), key="eval_story")
        st.caption(
            "Blue bars: our models on the exact test images 0-999; orange hatched bars: the report's "
            f"figures. {zoo.report_progression_text()}"
        )
