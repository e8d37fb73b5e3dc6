"""Safe decoding of untrusted image bytes (uploads, fetched URLs) into RGB.

Every byte string is hostile until Pillow has decoded it under these rules
(see shared/research/security.md, section 2):

1. cap the byte size before Pillow sees anything;
2. open with a format allowlist, so a file named `.png` that is really EPS
   (Ghostscript), TIFF, PSD or JPEG 2000 never reaches those decoders;
3. cap the pixel count right after `open()` (which reads only the header)
   and before `load()` (which allocates and decodes);
4. refuse JPEGs whose scans would make the decoder re-read the picture an
   unreasonable number of times, or whose whole-image coefficient buffer
   would be too large (both read from the markers, before decoding): a
   progressive JPEG of under 1 MB can otherwise cost minutes of CPU;
5. load frame 0 only: `n_frames` is never asked for, since counting the
   frames of a hostile GIF or WebP means decoding all of them;
6. decode at most `MAX_CONCURRENT_DECODES` images at once in this process;
7. shrink by whole factors while decoding (JPEG: libjpeg's DCT scaling) and
   convert to RGB a band of rows at a time, so no full-size converted copy
   or float temporary ever exists: the model needs 32x32 pixels and a page
   shows at most a few hundred, so the result keeps its shorter side at
   `WORKING_SIDE` pixels or more and has at most about `WORKING_PIXELS`;
8. apply the EXIF orientation, ignoring broken EXIF;
9. normalise every mode to 8-bit RGB (transparency onto white, 16-bit
   scaled down rather than clipped, in integers).

Every failure becomes a `cnn.errors.ImageError` whose message can be shown
to a user as is. Pillow's process-wide settings are set once, here, at
import and never toggled per call: `LOAD_TRUNCATED_IMAGES` stays False and
`MAX_IMAGE_PIXELS` stays at its default.
"""

import io
import math
import re
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cnn import IMAGE_SIZE
from cnn.errors import ImageError


class DecodeBusyError(ImageError):
    """No decode slot came free in time: unlike other ImageErrors, worth trying again."""


@dataclass(frozen=True)
class ImageFormat:
    """One image format an upload may have."""

    pillow_name: str  # what `Image.open(formats=...)` takes
    shown_name: str  # how people write it
    extensions: tuple[str, ...]  # the file-name endings an upload widget accepts


# The formats Pillow may even try: what people photograph and share.
IMAGE_FORMATS = (
    ImageFormat("PNG", "PNG", ("png",)),
    ImageFormat("JPEG", "JPEG", ("jpg", "jpeg")),
    ImageFormat("WEBP", "WebP", ("webp",)),
    ImageFormat("BMP", "BMP", ("bmp",)),
    ImageFormat("GIF", "GIF", ("gif",)),
)
ALLOWED_FORMATS = tuple(image_format.pillow_name for image_format in IMAGE_FORMATS)
UPLOAD_EXTENSIONS = [extension for image_format in IMAGE_FORMATS for extension in image_format.extensions]
FORMATS_IN_WORDS = (
    ", ".join(image_format.shown_name for image_format in IMAGE_FORMATS[:-1]) + f" or {IMAGE_FORMATS[-1].shown_name}"
)  # "PNG, JPEG, WebP, BMP or GIF"

MAX_BYTES = 20_000_000
# Above what common cameras save by default, and keeps one decoded RGB
# frame near 120 MB.
MAX_PIXELS = 40_000_000

# Decoding shrinks an image by the largest whole factor that keeps its
# shorter side at least WORKING_SIDE pixels (so pictures up to 1023 pixels
# on the shorter side come back exactly as stored), and by more if it would
# still have over WORKING_PIXELS pixels (a 40000x1000 strip). A 40-megapixel
# photo comes back at about 900x550: ample for the 32x32 model input (whose
# resize wants 3x its size) and for the 384 pixels a page draws at most.
WORKING_SIDE = 512
WORKING_PIXELS = 2_000_000
# Pixels converted to RGB at once while shrinking: a band of 4 MB or so.
BAND_PIXELS = 1_000_000

# A decode of the largest accepted image briefly holds 200-300 MB (see
# benchmarks/decode_memory.py); two at a time bound a shared server's extra
# memory to well under 1 GB while a third upload waits.
MAX_CONCURRENT_DECODES = 2
DECODE_WAIT_S = 60.0

# A JPEG decoder goes over every 8x8 block of a component once per scan that
# names it, even when the scan holds only an end-of-band run of a few bytes:
# 2,000 such scans of one 6000x6000 component cost a minute of CPU. Count a
# "pass" as one scan over blocks equal to the whole image (a scan of one
# 4:2:0 chroma component is 1/6 of a pass). libjpeg's default progression
# (Pillow, GIMP, cjpeg, jpegtran -progressive) makes 6 passes at most (10
# scans for colour, 6 for grey, 18 for CMYK). Twelve passes is twice that,
# so the worst accepted JPEG costs about twice a normal progressive one of
# the same kind and pixel count (benchmarks/decode_memory.py measures it).
# Separately, more than 40 scans of any size is refused outright: that many
# scans exist only to burn the decoder's work per scan.
MAX_JPEG_PASSES = 12.0
MAX_JPEG_SCANS = 40
# The coefficient buffer of a multi-scan JPEG: 240 MB for a 40-megapixel
# colour photo without chroma subsampling, 320 MB for CMYK; allowing 256 MB
# takes every colour JPEG up to the pixel cap and CMYK up to 32 megapixels,
# and keeps `python -m cnn predict` (TensorFlow alone: about 0.9 GB) under 1.2 GB.
MAX_JPEG_COEFFICIENT_BYTES = 256_000_000
# Pillow decodes WebP through libwebp's animation decoder, which holds about
# 16 bytes per pixel at its peak (two canvases, the frame handed to Python,
# the image): 16 megapixels is about 260 MB, as much as the largest PNG.
MAX_WEBP_PIXELS = 16_000_000

# How a picture of any shape becomes the square the model expects.
RESIZE_POLICIES = {
    "squash": "Resize the whole picture to a square: nothing is cut off, "
    "but a picture that is not square gets stretched.",
    "center_crop": "Cut the largest square from the middle, then resize it: "
    "shapes keep their proportions, but the edges are lost.",
}

MESSAGE_EMPTY = "The file is empty."
MESSAGE_UNSUPPORTED = f"This file is not a supported image ({FORMATS_IN_WORDS})."
MESSAGE_CORRUPT = "The image is corrupt or truncated."
MESSAGE_TOO_MANY_SCANS = (
    "This JPEG is split into far more progressive scans than any camera or "
    "editor writes, which would take too long to decode; save it again as an "
    "ordinary JPEG or PNG."
)
MESSAGE_BUSY = "The server is busy decoding other images; try again in a moment."
# `decode_image` records the upright size of the stored picture here in the
# returned image's `info`, since the image itself may have been shrunk.
ORIGINAL_SIZE_KEY = "original_size"

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
# 16-bit value -> 8-bit value, rounded: v / 257 maps 65535 onto 255. A table
# lookup keeps the conversion in integers (no float64 copy of the image).
_SIXTEEN_TO_EIGHT_BITS = np.round(np.arange(65536) / 257.0).astype(np.uint8)
# EXIF orientation -> the transpose that makes the picture upright (the
# table of `ImageOps.exif_transpose`, applied here to the shrunk image).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112
_DECODE_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)


def decode_image(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Decode untrusted bytes into an upright 8-bit RGB image of bounded size.

    Args:
        data: the raw bytes of an upload or a download.
        max_bytes: larger inputs are refused before decoding.
        max_pixels: images with more pixels (width x height) are refused
            before their pixel data is decoded.

    Returns:
        A new RGB `PIL.Image.Image`, frame 0 for animated files, rotated as
        its EXIF orientation says, transparency composited onto white,
        shrunk by a whole factor as `WORKING_SIDE` and `WORKING_PIXELS`
        say; `info[ORIGINAL_SIZE_KEY]` is the upright size as stored.

    Raises:
        ImageError: for every way the bytes can fail, with a plain message;
            `DecodeBusyError` when other decodes held every slot too long.
        TypeError: if `data` is not bytes-like (a programming error).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_image expects bytes, not {type(data).__name__}")
    _check_byte_size(len(data), max_bytes)
    data = bytes(data)  # the marker walk wants bytes; free for bytes already
    if not _DECODE_SLOTS.acquire(timeout=DECODE_WAIT_S):
        raise DecodeBusyError(MESSAGE_BUSY)
    try:
        return _decode_bounded(data, max_pixels)
    finally:
        _DECODE_SLOTS.release()


def _decode_bounded(data: bytes, max_pixels: int) -> Image.Image:
    """`decode_image`'s work once a decode slot is held: every bound but the byte cap."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            _check_pixel_count(image.width, image.height, max_pixels)
            stored_size = image.size
            if image.format == "WEBP":
                _check_webp_pixels(image.width, image.height)
            if image.format in ("JPEG", "MPO"):
                _check_jpeg_load(data)
                _draft_at_most(image, shrink_factor(stored_size))
            orientation = _exif_orientation(image)
            image.load()  # frame 0 only
            # A draft may have shrunk it already; shrink what remains.
            rgb = _shrunk_to_rgb(image, shrink_factor(image.size))
        upright = rgb.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else rgb
        upright.info[ORIGINAL_SIZE_KEY] = stored_size[::-1] if orientation in (5, 6, 7, 8) else stored_size
        return upright
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


def shrink_factor(size: tuple[int, int]) -> int:
    """The whole factor by which `decode_image` shrinks an image of `size` (width, height).

    The largest factor that keeps the shorter side at least `WORKING_SIDE`,
    or the smallest that brings the image to `WORKING_PIXELS` if that is
    larger; 1 for anything already small.
    """
    width, height = size
    keeps_side = min(width, height) // WORKING_SIDE
    fits_pixels = math.ceil(math.sqrt(width * height / WORKING_PIXELS))
    return max(1, keeps_side, fits_pixels)


@dataclass(frozen=True)
class JpegLoad:
    """What decoding a JPEG will cost, read from its markers (see `jpeg_load`)."""

    scans: int  # start-of-scan markers
    passes: float  # scans weighted by their share of the image's 8x8 blocks
    coefficient_bytes: int  # the whole-image buffer libjpeg keeps for a multi-scan file


def jpeg_load(data: bytes) -> JpegLoad:
    """Count a JPEG's scans, passes and buffer from its markers, without decoding.

    A pass is a scan's share of the image's 8x8 blocks (see
    `MAX_JPEG_PASSES`). A file with more than one scan (progressive, or
    sequential with a scan per component) makes libjpeg keep every block's
    64 coefficients, 2 bytes each, until the last scan. Walks the segments
    from SOI to the first EOI, or to wherever the structure breaks, leaving
    broken files for Pillow to refuse.
    """
    scans, passes = 0, 0.0
    frame = _Frame({}, 0)
    for marker, start, end in _jpeg_segments(data):
        if marker in _FRAME_MARKERS:
            frame = _read_frame(data[start:end])
        elif marker == _SOS:
            scans += 1
            component_ids = data[start + 1 : min(end, start + 1 + 2 * data[start]) : 2] if end > start else b""
            # An id not declared by the frame weighs a whole pass, to be safe.
            passes += sum(frame.weights.get(component, 1.0) for component in component_ids)
    return JpegLoad(scans, passes, 64 * 2 * frame.blocks if scans > 1 else 0)


def to_model_size(image: Image.Image, policy: str = "squash", size: int = IMAGE_SIZE) -> np.ndarray:
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
            f"to_model_size expects an RGB image, not mode {image.mode!r}; decode it with decode_image first."
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
            f"The file is too large ({_megabytes(num_bytes)} MB; the limit is {_megabytes(max_bytes)} MB)."
        )


def _check_webp_pixels(width: int, height: int) -> None:
    if width * height > MAX_WEBP_PIXELS:
        raise ImageError(
            f"WebP images are accepted up to {_megapixels(MAX_WEBP_PIXELS)} "
            f"megapixels and this one has {_megapixels(width * height)}; save "
            "it as PNG or JPEG, or smaller."
        )


def _check_jpeg_load(data: bytes) -> None:
    load = jpeg_load(data)
    if load.scans > MAX_JPEG_SCANS or load.passes > MAX_JPEG_PASSES:
        raise ImageError(MESSAGE_TOO_MANY_SCANS)
    if load.coefficient_bytes > MAX_JPEG_COEFFICIENT_BYTES:
        raise ImageError(
            f"This progressive JPEG needs too much memory to decode "
            f"({_megabytes(load.coefficient_bytes)} MB; the limit is "
            f"{_megabytes(MAX_JPEG_COEFFICIENT_BYTES)} MB); save it again as "
            "an ordinary JPEG, or smaller."
        )


# Start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC), and start of scan.
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS = 0xDA
_EOI = 0xD9
# Markers that stand alone, without a length: TEM, RST0-7, SOI.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})
# In entropy-coded data, 0xFF is followed by 0x00 (a stuffed byte), a
# restart marker or more 0xFF fill bytes; anything else ends the scan.
_END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_segments(data: bytes):
    """Yield (marker, payload start, payload end) for each segment with a length, SOI to EOI."""
    position = 2  # after SOI
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        if marker == _EOI:
            return
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if length < 2:
            return
        start, end = position + 4, min(len(data), position + 2 + length)
        yield marker, start, end
        position = end
        if marker == _SOS:
            found = _END_OF_SCAN.search(data, position)
            if found is None:
                return
            position = found.start()


@dataclass(frozen=True)
class _Frame:
    weights: dict[int, float]  # component id -> its share of the image's blocks
    blocks: int  # 8x8 blocks of all components, padded to whole MCUs as libjpeg stores them


def _read_frame(header: bytes) -> _Frame:
    """The components of a SOF payload (precision, height, width, count, then id/sampling/table each).

    A component sampled h x v (of the largest hmax x vmax) has h*v blocks in
    each MCU of 8*hmax x 8*vmax pixels.
    """
    if len(header) < 6:
        return _Frame({}, 0)
    height, width, count = int.from_bytes(header[1:3], "big"), int.from_bytes(header[3:5], "big"), header[5]
    components = header[6 : 6 + 3 * count]
    sampling = {
        components[i]: (components[i + 1] >> 4, components[i + 1] & 0x0F) for i in range(0, len(components) - 2, 3)
    }
    per_mcu = {component: h * v for component, (h, v) in sampling.items()}
    total = sum(per_mcu.values())
    if not total:
        return _Frame({}, 0)
    h_max = max(h for h, _ in sampling.values())
    v_max = max(v for _, v in sampling.values())
    mcus = -(-width // (8 * h_max)) * -(-height // (8 * v_max))
    return _Frame({component: blocks / total for component, blocks in per_mcu.items()}, mcus * total)


def _draft_at_most(image: Image.Image, factor: int) -> None:
    """Have libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling), never below 1/factor."""
    if factor > 1:
        width, height = image.size
        image.draft(image.mode, (-(-width // factor), -(-height // factor)))


def _check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(_too_many_pixels_message(width * height, max_pixels))


def _too_many_pixels_message(pixels: int | None, max_pixels: int) -> str:
    limit = _megapixels(max_pixels)
    if pixels is None:
        return f"The image is too large (the limit is {limit} megapixels)."
    return f"The image is too large ({_megapixels(pixels)} megapixels; the limit is {limit})."


def _megabytes(num_bytes: int) -> str:
    return f"{num_bytes / 1_000_000:.3g}"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.3g}"


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 = upright); broken EXIF is metadata, so ignore it."""
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except PILLOW_FAILURES:
        return 1
    return orientation if isinstance(orientation, int) else 1


def _shrunk_to_rgb(image: Image.Image, factor: int) -> Image.Image:
    """RGB, shrunk by `factor` (box averages), converted a band of rows at a time.

    Bands are a whole number of `factor` rows tall, so the result equals
    converting the whole image and then reducing it, without ever holding a
    full-size converted copy. Converting before averaging is also what is
    right: transparency and palettes are resolved per pixel.
    """
    width, height = image.size
    band_rows = factor * max(1, BAND_PIXELS // (width * factor))
    result = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, band_rows):
        band = _to_rgb(image.crop((0, top, width, min(height, top + band_rows))))
        result.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return result


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
    values = np.asarray(image)
    if values.dtype.itemsize > 2:  # mode I: 32-bit, may hold anything
        values = np.clip(values, 0, 65535)
    return Image.fromarray(_SIXTEEN_TO_EIGHT_BITS[values])  # mode L


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
