"""Data page: the CIFAR-10 classes, random images, shapes, pixel statistics, normalization,
one-hot labels, class balance and the training augmentation."""

import streamlit as st

from cnn import CLASS_NAMES, data, explore
from cnn.errors import DataError
from cnn.inference import preprocess
from ui import dataset_views, resources

st.title("The CIFAR-10 dataset")
st.markdown(
    "CIFAR-10 holds **60,000 colour images of 32x32 pixels in 10 classes**, 6,000 per class: "
    "50,000 for training and 10,000 for testing. The test batch has exactly 1,000 images of each "
    "class; the five training batches together have exactly 5,000 of each. We keep the last 5,000 "
    "training images apart as a **validation** split to choose settings on, so the test set is "
    "used only once, at the end."
)

# --- Which data: the full dataset when found, else the bundled sample (with a download offer).
dataset = resources.get_dataset()
if dataset is None:
    split = resources.get_sample()
    source_name = "the bundled sample (exact test images 0-999)"
    st.info(
        "The full CIFAR-10 was not found (looked in `CIFAR10_DIR` and Keras's cache "
        f"`{data.KERAS_CACHE}`), so this page shows the **bundled sample: the exact test images 0-999**."
    )
    if st.button("Download CIFAR-10 (about 170 MB)", icon=":material/download:", key="dataset_download"):
        bar = st.progress(0.0, text="Connecting to www.cs.toronto.edu...")
        try:
            data.download_cifar10(progress=dataset_views.progress_reporter(bar))
        except DataError as error:
            resources.show_user_error(error)
        else:
            resources.get_dataset.clear()
            st.rerun()
else:
    part = st.radio(
        "Part of the dataset",
        ["train", "val", "test"],
        horizontal=True,
        key="dataset_part",
        format_func=dataset_views.part_labels(dataset).get,
    )
    split = dataset.split(part)
    source_name = data.describe_test_part(split) if part == "test" else f"the {split.name} split"
    st.caption(f"Full CIFAR-10 from `{dataset.source}`.")

# --- The classes, with random images of each.
st.header("The 10 classes")
per_class = st.slider("Images per class", 4, 12, 10, key="dataset_per_class")
seed = dataset_views.redraw_button("Draw other images", ":material/shuffle:", key="dataset_redraw")
picks = explore.random_per_class(split.labels, per_class, seed=seed)
st.plotly_chart(
    dataset_views.image_grid(
        split.images,
        picks,
        CLASS_NAMES,
        [str(n + 1) for n in range(per_class)],
        f"{per_class} random images of each class",
        x_title="random image",
        y_title="class",
    ),
    key="dataset_grid",
)
st.caption(
    f"Each row shows {per_class} images of one class drawn at random from {source_name}; "
    "press “Draw other images” for new ones. Each image is only 32x32 pixels, which is why they look blurry."
)

# --- Shapes and dtypes.
st.header("Shapes and data types")
data_key = dataset.source if dataset else "sample"  # names the data for the cached tables
parts = [split] if dataset is None else [dataset.train, dataset.val, dataset.test]
st.dataframe(dataset_views.shapes_table(data_key, parts), hide_index=True)
st.caption(
    "Images are (number of images, height, width, channels) arrays of unsigned 8-bit integers (0-255); "
    "labels are one integer 0-9 per image (Keras's `cifar10.load_data` gives them as (N, 1))."
)

# --- Pixel histograms, raw and normalized.
st.header("Pixel values and normalization")
st.markdown(
    "Pixel values are integers from 0 to 255. As in the report, we **divide every value by 255** so "
    "that the network gets numbers between 0 and 1 (`x_train = x_train / 255`); large raw inputs make "
    "training slower and less stable."
)
left, right = st.columns(2)
grouping = left.radio("Histogram of", ["each colour channel", "all values together"], key="dataset_hist_channels")
scale = right.radio("Scale", ["raw (0-255)", "normalized (÷255, 0-1)"], key="dataset_hist_scale")
histogram = dataset_views.cached_histogram(f"{split.name}@{data_key}", split.images, grouping == "each colour channel")
st.plotly_chart(
    dataset_views.histogram_figure(
        histogram, scale.startswith("normalized"), f"Pixel values of {split.name} ({len(split):,} images)"
    ),
    key="dataset_histogram",
)
st.caption(
    f"How often each pixel value occurs in {source_name}, per channel (red solid, green dashed, "
    "blue dotted) or pooled. Dividing by 255 changes only the numbers on the x axis, not the shape."
)
st.dataframe(dataset_views.channel_stats_table(histogram), hide_index=True)

first = preprocess(split.images[0])
before, after = st.columns(2)
before.markdown(f"**Before**: image 0, row 0, first 3 pixels (R, G, B), `{split.images.dtype}`")
before.code(dataset_views.pixel_rows(split.images[0]), language=None)
after.markdown(f"**After ÷255**: the same pixels, `{first.dtype}`")
after.code(dataset_views.pixel_rows(first[0]), language=None)

# --- One-hot encoding.
st.header("One-hot encoding of the labels")
st.markdown(
    "The network ends with 10 outputs, one per class, so each label becomes a vector of ten numbers: "
    "1 for its class and 0 elsewhere (`to_categorical(y_train, 10)`)."
)
st.dataframe(dataset_views.one_hot_table(split.labels[:8], data.one_hot(split.labels[:8])), hide_index=True)
st.caption(f"The first 8 labels of {split.name}: the integer label, its class and its one-hot vector.")

# --- Class balance.
st.header("Class balance")
counts = explore.class_counts(split.labels)
st.plotly_chart(
    dataset_views.class_balance_figure(counts, CLASS_NAMES, f"Images per class in {split.name}"), key="dataset_balance"
)
st.caption(
    f"Number of images of each class in {source_name} (value above each bar): from {counts.min():,} "
    f"to {counts.max():,}. A balanced set means accuracy is not inflated by guessing a frequent class."
)

# --- Augmentation preview (TensorFlow is imported only when this is switched on).
st.header("Augmentation: what training really sees")
st.markdown(
    "The report's best model trains on **randomly changed copies** of the images: our zoo flips each "
    f"image left-right with probability 1/2 and shifts it by up to {dataset_views.MAX_SHIFT} pixels, "
    "filling the border by reflection. The label stays the same, so the model learns that a "
    "shifted or mirrored cat is still a cat."
)
if st.toggle("Show the augmentation preview (loads TensorFlow: a few seconds the first time)", key="dataset_augment"):
    copies = st.slider("Augmented copies per image", 2, 10, 6, key="dataset_augment_copies")
    augment_seed = dataset_views.redraw_button(
        "New random augmentation", ":material/casino:", key="dataset_augment_redraw"
    )
    originals = split.images[[row[0] for row in picks if len(row)][:5]]
    st.plotly_chart(dataset_views.augmentation_grid(originals, copies, augment_seed), key="dataset_augment_grid")
    st.caption(
        "First column: one image of each of the first five classes in the grid above. The other columns: "
        "copies made by the same augmentation function that training uses (cnn.augment)."
    )
