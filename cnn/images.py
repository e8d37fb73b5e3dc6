"""Safe decoding of untrusted image bytes (uploads, fetched URLs) into RGB.

Every byte string is hostile until Pillow has decoded it under these rules
(see shared/research/security.md, section 2):

1. cap the byte size before Pillow sees anything;
2. open with a format allowlist, so a file named `.png` that is really EPS
   (Ghostscript), TIFF, PSD or JPEG 2000 never reaches those decoders;
3. cap the pixel count right after `open()` (which reads only the header)
   and before `load()` (which allocates and decodes);
4. load frame 0 only: `n_frames` is never asked for, since counting the
   frames of a hostile GIF or WebP means decoding all of them;
5. apply the EXIF orientation, ignoring broken EXIF;
6. normalise every mode to 8-bit RGB (transparency onto white, 16-bit
   scaled down rather than clipped).

Every failure becomes a `cnn.errors.ImageError` whose message can be shown
to a user as is. Pillow's process-wide settings are set once, here, at
import and never toggled per call: `LOAD_TRUNCATED_IMAGES` stays False and
`MAX_IMAGE_PIXELS` stays at its default.
"""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from cnn import IMAGE_SIZE
from cnn.errors import ImageError

# The formats Pillow may even try: what people photograph and share.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")

MAX_BYTES = 20_000_000
# Above what common cameras save by default, and keeps one decoded RGB
# frame near 120 MB.
MAX_PIXELS = 40_000_000

# How a picture of any shape becomes the square the model expects.
RESIZE_POLICIES = {
    "squash": "Resize the whole picture to a square: nothing is cut off, "
    "but a picture that is not square gets stretched.",
    "center_crop": "Cut the largest square from the middle, then resize it: "
    "shapes keep their proportions, but the edges are lost.",
}

MESSAGE_EMPTY = "The file is empty."
MESSAGE_UNSUPPORTED = (
    "This file is not a supported image (PNG, JPEG, WebP, BMP or GIF)."
)
MESSAGE_CORRUPT = "The image is corrupt or truncated."

# Exactly the exceptions Pillow's own fuzzers accept from hostile files
# (Tests/oss-fuzz/test_fuzzers.py); anything else is a bug worth seeing.
# UnidentifiedImageError is an OSError and DecompressionBombWarning is only
# raised, not warned, because of the filter below.
PILLOW_FAILURES = (
    OSError,
    SyntaxError,
    MemoryError,
    ValueError,
    NotImplementedError,
    OverflowError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

# Pillow only *warns* between 1x and 2x MAX_IMAGE_PIXELS; make that an error.
# Set once: `warnings.catch_warnings()` per call is not thread-safe. The
# pixel check in `decode_image` does not rely on this filter.
warnings.simplefilter("error", Image.DecompressionBombWarning)

_HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_MODES_WITH_ALPHA = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_WHITE = (255, 255, 255)


def decode_image(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Decode untrusted bytes into an upright 8-bit RGB image.

    Args:
        data: the raw bytes of an upload or a download.
        max_bytes: larger inputs are refused before decoding.
        max_pixels: images with more pixels (width x height) are refused
            before their pixel data is decoded.

    Returns:
        A new RGB `PIL.Image.Image`, frame 0 for animated files, rotated as
        its EXIF orientation says, transparency composited onto white.

    Raises:
        ImageError: for every way the bytes can fail, with a plain message.
        TypeError: if `data` is not bytes-like (a programming error).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_image expects bytes, not {type(data).__name__}")
    _check_byte_size(len(data), max_bytes)
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            _check_pixel_count(image.width, image.height, max_pixels)
            image.load()  # frame 0 only
            return _to_rgb(_upright(image))
    except ImageError:
        raise
    except Image.UnidentifiedImageError as error:
        raise ImageError(MESSAGE_UNSUPPORTED) from error
    except (
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        MemoryError,
    ) as error:
        raise ImageError(_too_many_pixels_message(None, max_pixels)) from error
    except PILLOW_FAILURES as error:
        raise ImageError(MESSAGE_CORRUPT) from error


def to_model_size(
    image: Image.Image, policy: str = "squash", size: int = IMAGE_SIZE
) -> np.ndarray:
    """Resize an RGB image to the model's square input.

    Args:
        image: an RGB image, as `decode_image` returns.
        policy: a key of `RESIZE_POLICIES`.
        size: the side of the square in pixels (32 for CIFAR-10).

    Returns:
        A `uint8` array of shape `(size, size, 3)`.

    Raises:
        ValueError: for an unknown policy, a size below 1 or a non-RGB image.
    """
    if policy not in RESIZE_POLICIES:
        known = ", ".join(RESIZE_POLICIES)
        raise ValueError(f"Unknown resize policy {policy!r}; use one of: {known}.")
    if size < 1:
        raise ValueError(f"The target size must be at least 1 pixel, not {size}.")
    if image.mode != "RGB":
        raise ValueError(
            f"to_model_size expects an RGB image, not mode {image.mode!r}; "
            "decode it with decode_image first."
        )
    if policy == "center_crop":
        # Crop first: resizing with a box would let the kernel blend in
        # pixels from just outside the square.
        image = image.crop(_center_square(image.size))
    # Pillow's BICUBIC widens its kernel when shrinking, so this is an
    # antialiased resize; reducing_gap first shrinks huge images cheaply
    # by whole factors, which costs no visible quality at 32x32.
    resized = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(resized, dtype=np.uint8).copy()


def _check_byte_size(num_bytes: int, max_bytes: int) -> None:
    if num_bytes == 0:
        raise ImageError(MESSAGE_EMPTY)
    if num_bytes > max_bytes:
        raise ImageError(
            f"The file is too large ({_megabytes(num_bytes)} MB; "
            f"the limit is {_megabytes(max_bytes)} MB)."
        )


def _check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(_too_many_pixels_message(width * height, max_pixels))


def _too_many_pixels_message(pixels: int | None, max_pixels: int) -> str:
    limit = _megapixels(max_pixels)
    if pixels is None:
        return f"The image is too large (the limit is {limit} megapixels)."
    return (
        f"The image is too large ({_megapixels(pixels)} megapixels; "
        f"the limit is {limit})."
    )


def _megabytes(num_bytes: int) -> str:
    return f"{num_bytes / 1_000_000:.3g}"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.3g}"


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; broken EXIF is metadata, so ignore it."""
    try:
        return ImageOps.exif_transpose(image)
    except PILLOW_FAILURES:
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB, always as a new image."""
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        # A plain convert() clips 16-bit values at 255 (Pillow #2574, #5991),
        # turning most of the picture white; scale the range down instead.
        image = _sixteen_bit_to_grayscale(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _MODES_WITH_ALPHA:
        return _composite_onto_white(image.convert("RGBA"))
    return image.convert("RGB")


def _sixteen_bit_to_grayscale(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    scaled = np.clip(values, 0, 65535) / 257.0  # 65535 / 257 == 255
    return Image.fromarray(np.round(scaled).astype(np.uint8))  # mode L


def _composite_onto_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, _WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _center_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of the largest central square."""
    width, height = size
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return (left, top, left + side, top + side)
