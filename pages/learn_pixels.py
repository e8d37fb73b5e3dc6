"""Learn page: how a computer sees an image, a grid of numbers with three values (R, G, B) per pixel."""

import streamlit as st

from ui import learn_widgets, plots

CHANNELS = ("Red", "Green", "Blue")

st.title("How a computer sees an image")
st.markdown(
    "To a computer a picture is only numbers. It is a grid of **pixels**, the smallest dots of "
    "the image, each found by its row and column. A grayscale pixel holds one number; a colour "
    "pixel holds three, one per **channel**: how much **red**, **green** and **blue** light it "
    "has, each from 0 (none) to 255 (full), stored as 8 bits. A CIFAR-10 image is "
    "32 x 32 pixels x 3 channels = 3,072 numbers. Everything a CNN does, it does to these numbers."
)

picker, picture = st.columns([1, 2])
with picker:
    image, description = learn_widgets.cifar_image("pixels")
    st.markdown("**Look at one pixel**")
    row = st.slider("Row (y)", 0, image.shape[0] - 1, 16, key="pixels_row")
    column = st.slider("Column (x)", 0, image.shape[1] - 1, 16, key="pixels_column")
    for name, value in zip(CHANNELS, image[row, column]):
        st.markdown(f"{name}: **{value}** = `{value:08b}` in binary")

with picture:
    st.plotly_chart(
        plots.rgb_image(image, description, highlight=plots.Box(row, column, row, column)),
        key="pixels_picture",
    )
    st.caption(f"{description}, drawn from its 32x32x3 numbers; the outlined square is the pixel "
               f"at row {row}, column {column}. Drag to zoom.")

st.subheader("The three channels, as numbers")
st.markdown("Each channel is its own 32 x 32 grid. Drag over a grid to zoom in and read the values; "
            "double-click to zoom back out.")
for index, (tab, name) in enumerate(zip(st.tabs(list(CHANNELS)), CHANNELS)):
    with tab:
        st.plotly_chart(
            plots.heatmap(image[..., index], f"{name} channel", colorbar_title=f"{name.lower()} (0-255)",
                          highlight=plots.Box(row, column, row, column), zmin=0, zmax=255),
            key=f"pixels_channel_{index}",
        )
        st.caption(f"The {name.lower()} values of {description}: darker cells hold less {name.lower()}, "
                   "and each cell shows its number.")
