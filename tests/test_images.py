"""Tests for cnn.images: hostile bytes are refused plainly, odd images decode.

Every test image is generated here with Pillow (or, for formats Pillow
cannot write, from their published magic bytes), so no binary is committed.
"""

import io
import random
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from cnn.errors import ImageError
from cnn.images import (
    MESSAGE_CORRUPT,
    MESSAGE_EMPTY,
    MESSAGE_UNSUPPORTED,
    RESIZE_POLICIES,
    decode_image,
    to_model_size,
)

RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def encode(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def blank_bilevel_png(width, height):
    """A 1-bit PNG written chunk by chunk: tiny on disk, huge once decoded."""

    def chunk(kind, payload):
        checksum = zlib.crc32(kind + payload)
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", checksum)
        )

    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then packed bits
    pixels = b"".join(compressor.compress(row) for _ in range(height))
    pixels += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def refused(data, **limits):
    with pytest.raises(ImageError) as caught:
        decode_image(data, **limits)
    return str(caught.value)


def pixel(image, xy):
    return image.getpixel(xy)


def close_to(actual, expected, tolerance=8):
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


# --- refused inputs ----------------------------------------------------------


def test_empty_file_is_refused():
    assert refused(b"") == MESSAGE_EMPTY


def test_random_bytes_are_not_an_image():
    assert refused(random.Random(0).randbytes(4096)) == MESSAGE_UNSUPPORTED


def test_text_renamed_png_is_not_an_image():
    assert refused(b"just some notes\n" * 10) == MESSAGE_UNSUPPORTED


def test_byte_cap_is_checked_before_decoding():
    message = refused(encode(Image.new("RGB", (64, 64)), "BMP"), max_bytes=1000)
    assert message == "The file is too large (0.0123 MB; the limit is 0.001 MB)."


def test_png_decompression_bomb_is_refused_from_its_header():
    bomb = blank_bilevel_png(20_000, 20_000)  # 400 megapixels in ~60 KB
    assert len(bomb) < 200_000
    started = time.monotonic()
    message = refused(bomb)
    assert time.monotonic() - started < 1
    assert message == "The image is too large (the limit is 40 megapixels)."


def test_image_over_the_pixel_cap_is_refused_before_loading():
    message = refused(blank_bilevel_png(8_000, 8_000))
    assert message == "The image is too large (64 megapixels; the limit is 40)."


def test_decompression_bomb_warning_is_an_error_once_imported():
    # pytest resets warning filters around each test, so check a fresh process.
    script = (
        "import io, sys; sys.path.insert(0, '.'); import cnn.images\n"
        "from PIL import Image\n"
        "try:\n"
        "    Image.open(io.BytesIO(sys.stdin.buffer.read()))\n"
        "except Image.DecompressionBombWarning:\n"
        "    print('raised')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=blank_bilevel_png(10_000, 10_000),  # between 1x and 2x the limit
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.stdout.strip() == b"raised"


def test_pixel_cap_can_be_lowered():
    message = refused(encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5000)
    assert message == "The image is too large (0.01 megapixels; the limit is 0.005)."


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "WEBP", "BMP"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_corrupt(image_format, keep):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), image_format)
    message = refused(data[: int(len(data) * keep)])
    assert message in (MESSAGE_CORRUPT, MESSAGE_UNSUPPORTED)
    if image_format in ("JPEG", "PNG"):
        assert message == MESSAGE_CORRUPT


def _formats_outside_the_allowlist():
    small = Image.new("RGB", (8, 8), RED)
    return {
        "TIFF": encode(small, "TIFF"),
        "ICO": encode(small, "ICO"),
        "JPEG 2000": encode(small, "JPEG2000"),
        "EPS": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
        b"0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n",
        # 8BPS, version 1, 6 reserved bytes, 3 channels, 8x8, 8 bits, RGB.
        "PSD": b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 8, 8, 8, 3) + b"\0" * 64,
        "FITS": b"SIMPLE  =                    T".ljust(2880, b" "),
        "PDF": b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n",
        "SVG": b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>',
    }


@pytest.mark.parametrize("name", sorted(_formats_outside_the_allowlist()))
def test_formats_outside_the_allowlist_are_refused(name):
    data = _formats_outside_the_allowlist()[name]  # e.g. uploaded as x.png
    assert refused(data) == MESSAGE_UNSUPPORTED


def test_broken_exif_is_ignored():
    exif = Image.Exif()
    exif[0x0112] = 99  # not an orientation
    image = decode_image(encode(Image.new("RGB", (6, 3), RED), "JPEG", exif=exif))
    assert image.size == (6, 3)


def test_non_bytes_input_is_a_programming_error():
    with pytest.raises(TypeError):
        decode_image("not bytes")


# --- odd but valid images ------------------------------------------------------


def test_many_frame_gif_decodes_frame_zero_without_counting_frames(monkeypatch):
    frames = [Image.new("P", (16, 16), 0)] + [
        Image.new("P", (16, 16), 1) for _ in range(499)
    ]
    for frame in frames:
        frame.putpalette(list(RED) + list(BLUE) + [0] * 762)
    data = encode(
        frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10
    )

    def no_counting(self):
        raise AssertionError("n_frames decodes every frame of a hostile file")

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", property(no_counting))
    monkeypatch.setattr(
        GifImagePlugin.GifImageFile, "is_animated", property(no_counting)
    )
    started = time.monotonic()
    image = decode_image(data)
    assert time.monotonic() - started < 0.5
    assert pixel(image, (0, 0)) == RED


def test_cmyk_jpeg_becomes_rgb():
    image = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    assert image.mode == "RGB"
    assert close_to(pixel(image, (4, 4)), RED)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    grey = Image.new("I;16", (4, 4), 128 * 257)
    grey.putpixel((0, 0), 65535)
    image = decode_image(encode(grey, "PNG"))
    assert image.mode == "RGB"
    assert pixel(image, (1, 1)) == (128, 128, 128)  # plain convert() gives 255
    assert pixel(image, (0, 0)) == WHITE


def test_palette_transparency_goes_onto_white():
    palette_image = Image.new("P", (2, 1), 0)
    palette_image.putpalette(list(BLACK) + list(RED) + [0] * 762)
    palette_image.putpixel((1, 0), 1)
    image = decode_image(encode(palette_image, "PNG", transparency=0))
    assert [pixel(image, (x, 0)) for x in range(2)] == [WHITE, RED]


@pytest.mark.parametrize(
    ("mode", "transparent", "opaque"),
    [("LA", (0, 0), (0, 255)), ("RGBA", (0, 0, 0, 0), (0, 0, 0, 255))],
)
def test_alpha_is_composited_onto_white(mode, transparent, opaque):
    source = Image.new(mode, (3, 1), transparent)
    source.putpixel((1, 0), opaque)
    source.putpixel((2, 0), opaque[:-1] + (128,))
    image = decode_image(encode(source, "PNG"))
    assert pixel(image, (0, 0)) == WHITE
    assert pixel(image, (1, 0)) == BLACK
    assert close_to(pixel(image, (2, 0)), (127, 127, 127), tolerance=1)


@pytest.mark.parametrize(
    ("mode", "image_format"), [("1", "BMP"), ("1", "PNG"), ("L", "GIF")]
)
def test_bilevel_and_grey_become_rgb(mode, image_format):
    source = Image.new(mode, (2, 1), 0)
    source.putpixel((1, 0), 255)
    image = decode_image(encode(source, image_format))
    assert image.mode == "RGB"
    assert [pixel(image, (x, 0)) for x in range(2)] == [BLACK, WHITE]


def test_exif_orientation_six_is_rotated_upright():
    # Stored sideways: red left half, blue right half. Orientation 6 says
    # "rotate 90 degrees clockwise to view", which puts red on top.
    photo = Image.new("RGB", (40, 20), BLUE)
    photo.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode_image(encode(photo, "JPEG", exif=exif, quality=95))
    assert image.size == (20, 40)
    assert close_to(pixel(image, (10, 5)), RED, tolerance=12)
    assert close_to(pixel(image, (10, 35)), BLUE, tolerance=12)


@pytest.mark.parametrize("size", [(1, 1), (1, 10_000), (10_000, 1)])
@pytest.mark.parametrize("policy", sorted(RESIZE_POLICIES))
def test_tiny_and_extreme_aspect_images_reach_model_size(size, policy):
    image = decode_image(encode(Image.new("RGB", size, RED), "PNG"))
    array = to_model_size(image, policy)
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    assert (array == RED).all()


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_every_allowed_format_decodes(image_format):
    image = decode_image(encode(Image.new("RGB", (8, 8), RED), image_format))
    assert image.mode == "RGB" and image.size == (8, 8)
    assert close_to(pixel(image, (4, 4)), RED, tolerance=16)


# --- resize policies -----------------------------------------------------------


def _wide_test_card():
    """120x40: blue left and right thirds, a red middle square."""
    card = Image.new("RGB", (120, 40), BLUE)
    card.paste(RED, (40, 0, 80, 40))
    return card


def test_center_crop_keeps_only_the_middle_square():
    array = to_model_size(_wide_test_card(), "center_crop")
    assert (array == RED).all()


def test_squash_keeps_the_whole_picture():
    array = to_model_size(_wide_test_card(), "squash")
    assert close_to(array[16, 1], BLUE, tolerance=1)
    assert close_to(array[16, 16], RED, tolerance=1)
    assert close_to(array[16, 30], BLUE, tolerance=1)


def test_resize_policies_explain_themselves():
    assert set(RESIZE_POLICIES) == {"squash", "center_crop"}
    assert all(len(text) > 20 for text in RESIZE_POLICIES.values())


def test_to_model_size_other_sizes():
    assert to_model_size(_wide_test_card(), "squash", size=7).shape == (7, 7, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"policy": "stretch"}, "Unknown resize policy"),
        ({"size": 0}, "at least 1 pixel"),
    ],
)
def test_to_model_size_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_model_size(_wide_test_card(), **kwargs)


def test_to_model_size_wants_rgb():
    with pytest.raises(ValueError, match="RGB"):
        to_model_size(Image.new("RGBA", (4, 4)))
