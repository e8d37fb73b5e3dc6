"""Learn page: how a computer sees an image, a grid of numbers with three values (R, G, B) per pixel."""

import numpy as np
import streamlit as st

from ui import image_widgets, plots

CHANNELS = ("Red", "Green", "Blue")
ZOOM_RADIUS = 3  # the zoomed grids show 7x7 pixels: numbers large enough for a projector

st.title("How a computer sees an image")
st.markdown(
    "To a computer a picture is only numbers. It is a grid of **pixels**, the smallest dots of "
    "the image, each found by its row and column. A grayscale pixel holds one number; a colour "
    "pixel holds three, one per **channel**: how much **red**, **green** and **blue** light it "
    "has, each from 0 (none) to 255 (full), stored as 8 bits. A CIFAR-10 image is "
    "32 x 32 pixels x 3 channels = 3,072 numbers. Everything a CNN does, it does to these numbers."
)


# A fragment: moving the pixel sliders redraws only the picture and the zoomed numbers (fast on a
# projector's browser); the three whole-channel grids below change only with the image.
@st.fragment
def one_pixel(image: np.ndarray, description: str) -> None:
    """Row/column sliders, the picture with the chosen pixel outlined, and the numbers around it."""
    picker, picture = st.columns([1, 2])
    with picker:
        st.markdown("**Look at one pixel**")
        row = st.slider("Row (y)", 0, image.shape[0] - 1, 16, key="pixels_row")
        column = st.slider("Column (x)", 0, image.shape[1] - 1, 16, key="pixels_column")
        for name, value in zip(CHANNELS, image[row, column]):
            st.markdown(f"{name}: **{value}** = `{value:08b}` in binary")
    with picture:
        st.plotly_chart(
            plots.rgb_image(image, description, highlight=plots.Box(row, column, row, column)), key="pixels_picture"
        )
        st.caption(
            f"{description}, drawn from its 32x32x3 numbers; the outlined square is the pixel "
            f"at row {row}, column {column}. Drag to zoom."
        )

    st.subheader("The numbers around the chosen pixel")
    st.markdown(
        f"A {2 * ZOOM_RADIUS + 1} x {2 * ZOOM_RADIUS + 1} piece of each channel around row {row}, "
        f"column {column}, with every number written in. Move the sliders to walk over the picture."
    )
    for index, (name, zoom_column) in enumerate(zip(CHANNELS, st.columns(3))):
        zoom_column.plotly_chart(
            plots.neighbourhood_heatmap(
                image[..., index],
                row,
                column,
                ZOOM_RADIUS,
                f"{name} around the pixel",
                colorbar_title=f"{name.lower()} (0-255)",
                zmin=0,
                zmax=255,
                colorbar_below=True,
            ),
            key=f"pixels_zoom_{index}",
        )
        zoom_column.caption(
            f"The {name.lower()} values near the outlined pixel (row {row}, column {column}): "
            f"darker cells hold less {name.lower()}."
        )


image, description = image_widgets.sample_image("pixels")
one_pixel(image, description)

st.subheader("Each channel is a whole grid of numbers")
st.markdown(
    "Each channel is its own 32 x 32 grid: too many cells to write every number legibly. Point at a "
    "cell to read its number, or drag over the grid to zoom in; double-click to zoom back out."
)
for index, (tab, name) in enumerate(zip(st.tabs(list(CHANNELS)), CHANNELS)):
    with tab:
        st.plotly_chart(
            plots.heatmap(
                image[..., index], f"{name} channel", colorbar_title=f"{name.lower()} (0-255)", zmin=0, zmax=255
            ),
            key=f"pixels_channel_{index}",
        )
        st.caption(
            f"The {name.lower()} values of {description}: darker cells hold less {name.lower()}; "
            "point at a cell to read its number."
        )
