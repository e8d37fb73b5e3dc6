"""Tests for cnn.images: hostile bytes are refused plainly, odd images decode.

Every test image is generated here with Pillow (or, for formats Pillow
cannot write, from their published magic bytes), so no binary is committed.
"""

import io
import random
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import GifImagePlugin, Image, JpegImagePlugin

from cnn import images
from cnn.errors import ImageError
from cnn.images import (
    FORMATS_IN_WORDS,
    IMAGE_FORMATS,
    MAX_CONCURRENT_DECODES,
    MAX_JPEG_COEFFICIENT_BYTES,
    MAX_JPEG_PASSES,
    MAX_JPEG_SCANS,
    MESSAGE_BUSY,
    MESSAGE_CORRUPT,
    MESSAGE_EMPTY,
    MESSAGE_TOO_MANY_SCANS,
    MESSAGE_UNSUPPORTED,
    ORIGINAL_SIZE_KEY,
    RESIZE_POLICIES,
    UPLOAD_EXTENSIONS,
    JpegLoad,
    decode_image,
    jpeg_load,
    shrink_factor,
    to_model_size,
)
from tests.hostile_jpeg import with_repeated_scan

RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def encode(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def blank_bilevel_png(width, height):
    """A 1-bit PNG written chunk by chunk: tiny on disk, huge once decoded."""

    def chunk(kind, payload):
        checksum = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum)

    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then packed bits
    pixels = b"".join(compressor.compress(row) for _ in range(height))
    pixels += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


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
        "EPS": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n",
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
    frames = [Image.new("P", (16, 16), 0)] + [Image.new("P", (16, 16), 1) for _ in range(499)]
    for frame in frames:
        frame.putpalette(list(RED) + list(BLUE) + [0] * 762)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)

    def no_counting(self):
        raise AssertionError("n_frames decodes every frame of a hostile file")

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", property(no_counting))
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "is_animated", property(no_counting))
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


@pytest.mark.parametrize(("mode", "image_format"), [("1", "BMP"), ("1", "PNG"), ("L", "GIF")])
def test_bilevel_and_grey_become_rgb(mode, image_format):
    source = Image.new(mode, (2, 1), 0)
    source.putpixel((1, 0), 255)
    image = decode_image(encode(source, image_format))
    assert image.mode == "RGB"
    assert [pixel(image, (x, 0)) for x in range(2)] == [BLACK, WHITE]


@pytest.mark.parametrize(
    "width, shown, original",
    [
        (40, (20, 40), None),  # decoded whole
        (2048, (512, 1024), (1024, 2048)),  # shrunk while decoding, then turned: the original size is upright too
    ],
)
def test_exif_orientation_six_is_rotated_upright(width, shown, original):
    # Stored sideways: red left half, blue right half. Orientation 6 says
    # "rotate 90 degrees clockwise to view", which puts red on top.
    photo = Image.new("RGB", (width, width // 2), BLUE)
    photo.paste(RED, (0, 0, width // 2, width // 2))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode_image(encode(photo, "JPEG", exif=exif, quality=95))
    assert image.size == shown
    if original:
        assert image.info[ORIGINAL_SIZE_KEY] == original
    assert close_to(pixel(image, (shown[0] // 2, shown[1] // 8)), RED, tolerance=12)
    assert close_to(pixel(image, (shown[0] // 2, shown[1] * 7 // 8)), BLUE, tolerance=12)


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


def test_upload_extensions_are_exactly_pillows_names_of_the_allowed_formats():
    # The upload widgets accept these endings; each must open as the format it claims, in Pillow's own table.
    registered = Image.registered_extensions()
    for image_format in IMAGE_FORMATS:
        assert image_format.extensions, image_format
        for extension in image_format.extensions:
            assert registered[f".{extension}"] == image_format.pillow_name
    assert len(UPLOAD_EXTENSIONS) == sum(len(image_format.extensions) for image_format in IMAGE_FORMATS)
    assert FORMATS_IN_WORDS == "PNG, JPEG, WebP, BMP or GIF" and FORMATS_IN_WORDS in MESSAGE_UNSUPPORTED


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


# --- CPU: JPEG scans are counted before decoding -------------------------------------


def progressive_jpeg(mode, size, **options):
    return encode(Image.new(mode, size, 128 if mode == "L" else (128, 100, 90)), "JPEG", progressive=True, **options)


def scans_and_passes(data):
    load = jpeg_load(data)
    return load.scans, pytest.approx(load.passes)


def test_scan_load_of_ordinary_jpegs():
    assert jpeg_load(encode(Image.new("RGB", (64, 48)), "JPEG")) == JpegLoad(1, pytest.approx(1.0), 0)
    assert jpeg_load(encode(Image.new("L", (64, 48)), "JPEG")) == JpegLoad(1, pytest.approx(1.0), 0)
    # libjpeg's default progression: 10 scans of YCbCr (4:2:0: 5.3 passes), 6 of grey, 18 of CMYK.
    assert scans_and_passes(progressive_jpeg("RGB", (64, 48))) == (10, 16 / 3)
    assert scans_and_passes(progressive_jpeg("RGB", (64, 48), subsampling=0)) == (10, 14 / 3)
    assert scans_and_passes(progressive_jpeg("L", (64, 48))) == (6, 6.0)
    assert scans_and_passes(progressive_jpeg("CMYK", (64, 48))) == (18, 6.0)


def test_coefficient_buffer_is_what_libjpeg_keeps():
    # 4:2:0 pads to 16x16 MCUs: 5x3 MCUs of 4 luma + 2 chroma blocks, 128 bytes each.
    assert jpeg_load(progressive_jpeg("RGB", (65, 48))).coefficient_bytes == 5 * 3 * 6 * 128
    assert jpeg_load(progressive_jpeg("CMYK", (64, 48), subsampling=0)).coefficient_bytes == 8 * 6 * 4 * 128


def test_progressive_jpegs_needing_too_much_memory_are_refused(monkeypatch):
    data = progressive_jpeg("CMYK", (64, 48))  # 8x6 blocks of 4 components: 24.6 KB of coefficients
    monkeypatch.setattr(images, "MAX_JPEG_COEFFICIENT_BYTES", 20_000)
    assert refused(data) == (
        "This progressive JPEG needs too much memory to decode (0.0246 MB; the limit is "
        "0.02 MB); save it again as an ordinary JPEG, or smaller."
    )
    assert decode_image(encode(Image.new("CMYK", (64, 48)), "JPEG")).size == (64, 48)  # one scan: no buffer


def test_large_webp_images_are_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_WEBP_PIXELS", 5000)
    big = Image.new("RGB", (100, 60), RED)
    assert refused(encode(big, "WEBP")) == (
        "WebP images are accepted up to 0.005 megapixels and this one has 0.006; save it as PNG or JPEG, or smaller."
    )
    assert decode_image(encode(big, "PNG")).size == (100, 60)
    assert decode_image(encode(Image.new("RGB", (50, 100), RED), "WEBP")).size == (50, 100)


def test_the_largest_accepted_colour_jpeg_fits_the_coefficient_limit():
    # SOF header of an 8000x5000 4:4:4 YCbCr JPEG, as jpeg_load reads it.
    frame = images._read_frame(
        bytes([8])
        + (5000).to_bytes(2, "big")
        + (8000).to_bytes(2, "big")
        + bytes([3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    )
    assert 64 * 2 * frame.blocks == 240_000_000 <= MAX_JPEG_COEFFICIENT_BYTES


def test_scan_markers_inside_metadata_and_entropy_data_are_not_counted():
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(
        Image.fromarray(noise), "JPEG", quality=100, restart_marker_blocks=1, comment=b"\xff\xda\x00\x0c" * 50
    )
    assert b"\xff\x00" in data  # stuffed bytes in the entropy data
    assert scans_and_passes(data) == (1, 1.0)
    assert decode_image(data).size == (64, 64)


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_normal_progressive_jpegs_are_accepted(mode):
    image = decode_image(progressive_jpeg(mode, (40, 30)))
    assert image.mode == "RGB" and image.size == (40, 30)


def test_thousands_of_scans_are_refused_before_decoding(monkeypatch):
    hostile = with_repeated_scan(progressive_jpeg("L", (64, 64)), -1, 2000)
    assert len(hostile) < 200_000

    def no_decoding(self):
        raise AssertionError("the scans must be counted before libjpeg decodes them")

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", no_decoding)
    assert refused(hostile) == MESSAGE_TOO_MANY_SCANS


def test_a_few_extra_passes_over_the_whole_image_are_refused():
    # Grey: every scan is a whole pass. 6 + 7 = 13 passes in 13 scans: only the pass budget sees it.
    hostile = with_repeated_scan(progressive_jpeg("L", (64, 64)), -1, 7)
    load = jpeg_load(hostile)
    assert load.scans <= MAX_JPEG_SCANS and load.passes > MAX_JPEG_PASSES
    assert refused(hostile) == MESSAGE_TOO_MANY_SCANS
    assert decode_image(with_repeated_scan(progressive_jpeg("L", (64, 64)), -1, 6)).size == (64, 64)


def test_many_cheap_scans_are_refused_by_their_count():
    # 4:2:0 colour: scan 2 covers one chroma component, 1/6 of a pass.
    # 10 + 31 scans in 5.3 + 31/6 = 10.5 passes: only the scan count sees it.
    base = progressive_jpeg("RGB", (64, 64))
    one_more = jpeg_load(with_repeated_scan(base, 2, 1)).passes - jpeg_load(base).passes
    assert one_more == pytest.approx(1 / 6)
    hostile = with_repeated_scan(base, 2, 31)
    load = jpeg_load(hostile)
    assert load.scans > MAX_JPEG_SCANS and load.passes <= MAX_JPEG_PASSES
    assert refused(hostile) == MESSAGE_TOO_MANY_SCANS
    assert decode_image(with_repeated_scan(base, 2, 30)).size == (64, 64)


@pytest.mark.parametrize("cut", [3, 10, 200, -30])
def test_broken_jpeg_structure_is_left_to_pillow(cut):
    data = progressive_jpeg("RGB", (64, 64))[:cut]
    jpeg_load(data)  # never raises, never loops
    assert refused(data) in (MESSAGE_CORRUPT, MESSAGE_UNSUPPORTED)


# --- memory: shrink while decoding, convert in bands and integers, few decodes at once


def test_shrink_factor_keeps_a_useful_size():
    assert shrink_factor((8000, 5000)) == 9  # 40 MP -> 889x556
    assert shrink_factor((1023, 1023)) == 1  # ordinary pictures come back as stored
    assert shrink_factor((1024, 768)) == 1
    assert shrink_factor((2048, 1536)) == 3
    assert shrink_factor((40_000, 1000)) == 5  # a strip: by its pixel count
    assert shrink_factor((1, 10_000)) == 1


def test_small_images_come_back_exactly_as_stored():
    noise = np.random.default_rng(2).integers(0, 256, (700, 1000, 3), dtype=np.uint8)
    for image_format in ("PNG", "JPEG"):
        data = encode(Image.fromarray(noise), image_format)
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(np.asarray(decode_image(data)), expected)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_large_photos_reach_the_model_almost_unchanged(image_format):
    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).resize((2400, 1800))
    data = encode(photo, image_format)
    image = decode_image(data)
    assert max(image.size) <= 1200 and image.info[ORIGINAL_SIZE_KEY] == (2400, 1800)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    for policy in RESIZE_POLICIES:
        difference = to_model_size(image, policy).astype(int) - to_model_size(full, policy)
        assert np.abs(difference).max() <= 2 and np.abs(difference).mean() < 0.5


def _mode_samples():
    """Small images of every mode a decoder hands over, with transparency and edges to average."""
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (75, 101), dtype=np.uint8)
    rgba = rng.integers(0, 256, (75, 101, 4), dtype=np.uint8)
    palette = Image.fromarray(grey).convert("P")
    palette.info["transparency"] = 0
    return {
        "L": Image.fromarray(grey),
        "1": Image.fromarray(grey).convert("1"),
        "RGBA": Image.fromarray(rgba),
        "LA": Image.fromarray(rgba).convert("LA"),
        "P": palette,
        "I;16": Image.fromarray(grey.astype(np.uint16) * 257 + 100),
        "CMYK": Image.fromarray(rgba, "CMYK"),
    }


@pytest.mark.parametrize("mode", sorted(_mode_samples()))
def test_band_by_band_conversion_equals_converting_the_whole_image(mode, monkeypatch):
    monkeypatch.setattr(images, "BAND_PIXELS", 500)  # many bands of a few rows
    source = _mode_samples()[mode]
    expected = images._to_rgb(source).reduce(4)
    assert images._shrunk_to_rgb(source, 4).tobytes() == expected.tobytes()


def test_no_full_size_converted_copy_is_made(monkeypatch):
    converted = []
    real_to_rgb = images._to_rgb
    monkeypatch.setattr(images, "_to_rgb", lambda image: converted.append(image.size) or real_to_rgb(image))
    monkeypatch.setattr(images, "BAND_PIXELS", 20_000)
    data = encode(Image.new("RGBA", (400, 300), (10, 20, 30, 128)), "PNG")
    monkeypatch.setattr(images, "WORKING_SIDE", 100)  # shrink by 3
    image = decode_image(data)
    assert image.size == (134, 100) and image.info[ORIGINAL_SIZE_KEY] == (400, 300)
    assert converted and max(width * height for width, height in converted) <= 20_000 + 3 * 400


def test_sixteen_bit_is_converted_in_integers():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    expected = np.round(values / 257.0).astype(np.uint8)
    assert np.array_equal(np.asarray(images._sixteen_bit_to_grayscale(Image.fromarray(values))), expected)
    large = encode(Image.fromarray(np.full((1000, 2000), 40_000, np.uint16)), "PNG")
    tracemalloc.start()
    try:
        decode_image(large)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # float64 of one 1-megapixel band alone is 8 MB; integers need about 3.
    assert peak < 6_000_000


def test_large_jpegs_are_decoded_at_a_reduced_scale(monkeypatch):
    loaded = []
    real_load = JpegImagePlugin.JpegImageFile.load
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", lambda self: loaded.append(self.size) or real_load(self))
    image = decode_image(encode(Image.new("RGB", (2048, 2048), RED), "JPEG"))
    assert set(loaded) == {(512, 512)}  # libjpeg's 1/4 DCT scaling: never 2048x2048 in memory
    assert image.size == (512, 512) and image.info[ORIGINAL_SIZE_KEY] == (2048, 2048)


def test_at_most_a_few_decodes_run_at_once(monkeypatch):
    inside, most, lock, release = [0], [0], threading.Lock(), threading.Event()
    real_shrink = images._shrunk_to_rgb

    def slow_shrink(image, factor):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        release.wait(30)
        with lock:
            inside[0] -= 1
        return real_shrink(image, factor)

    monkeypatch.setattr(images, "_shrunk_to_rgb", slow_shrink)
    data = encode(Image.new("RGB", (8, 8), RED), "PNG")
    threads = [threading.Thread(target=decode_image, args=(data,)) for _ in range(MAX_CONCURRENT_DECODES + 3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 3  # room for every thread to get in, were it allowed
    while time.monotonic() < deadline and most[0] <= MAX_CONCURRENT_DECODES:
        time.sleep(0.02)
    release.set()
    for thread in threads:
        thread.join(30)
    assert most[0] == MAX_CONCURRENT_DECODES


def test_a_decode_that_cannot_get_a_slot_says_the_server_is_busy(monkeypatch):
    monkeypatch.setattr(images, "_DECODE_SLOTS", threading.BoundedSemaphore(1))
    monkeypatch.setattr(images, "DECODE_WAIT_S", 0.05)
    images._DECODE_SLOTS.acquire()
    try:
        with pytest.raises(images.DecodeBusyError, match=MESSAGE_BUSY):
            decode_image(encode(Image.new("RGB", (8, 8)), "PNG"))
    finally:
        images._DECODE_SLOTS.release()
