"""Peak memory and CPU of the worst accepted image of each kind, through `python -m cnn predict fast FILE`.

For each mode a decoder can hand over (grey, 16-bit grey, RGB, RGBA, LA,
palette, bilevel, CMYK, progressive JPEG, and the most hostile progressive
JPEGs `cnn.images` still accepts), this writes the largest accepted image:
8000x5000 at the 40-megapixel cap, within the 20 MB byte cap (WebP and
progressive CMYK have lower caps of their own), and runs, each in a fresh process:
    1. `python -m cnn predict fast FILE` (what a user runs: TensorFlow, the
       model, the decode, the prediction), and
    2. `cnn.images.decode_image` alone (the decode's own share),
reading each process's peak RSS and CPU seconds from `os.wait4`. Ratios are
against a plain photo (a baseline JPEG) of the same pixel count. The images
are written by a child process: a child's peak RSS counts the memory of the
process it was forked from, so the measuring process stays small.
Targets: every CLI run under 1.2 GB peak and within 2x the plain photo's CPU
seconds. The decode alone is also compared: hostile scans are bounded at
twice what libjpeg's own progressive scripts need (`cnn.images.MAX_JPEG_PASSES`),
and a normal progressive JPEG already costs several baseline ones.

Run: `.venv/bin/python benchmarks/decode_memory.py`; exits 1 if a target is missed.
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from cnn.images import MAX_BYTES, MAX_JPEG_COEFFICIENT_BYTES, MAX_WEBP_PIXELS, jpeg_load  # noqa: E402
from tests.hostile_jpeg import with_repeated_scan  # noqa: E402

SIZE = (8000, 5000)  # 40 megapixels: cnn.images.MAX_PIXELS
TARGET_CLI_PEAK_MB = 1200
TARGET_CLI_CPU_RATIO = 2.0  # against the plain photo's run
# Prints the CPU seconds of the decode itself, without the interpreter's start.
DECODE_ONLY = (
    "import sys, time; from pathlib import Path; sys.path.insert(0, {root!r}); "
    "from cnn.images import decode_image; data = Path(sys.argv[1]).read_bytes(); "
    "started = time.process_time(); decode_image(data); print(time.process_time() - started)"
)


@dataclass(frozen=True)
class Case:
    """One image to measure: a name for the table and a function writing its bytes."""

    name: str
    make: Callable[[], bytes]


@dataclass(frozen=True)
class Usage:
    """What one finished process used."""

    peak_mb: float
    cpu_s: float
    ok: bool
    output: str


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def photo(mode: str = "RGB") -> Image.Image:
    """A smooth photo-like picture (enlarged noise), so JPEGs have real detail but fit 20 MB."""
    noise = np.random.default_rng(0).integers(0, 256, (SIZE[1] // 10, SIZE[0] // 10, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize(SIZE, Image.Resampling.BICUBIC).convert(mode)


def flat(mode: str, size: tuple[int, int] = SIZE) -> Image.Image:
    """A flat picture: its progressive scans are a few bytes each, the cheapest to repeat."""
    return Image.new(mode, size, 128 if mode in ("L", "1", "P") else (128, 100, 90, 255)[: len(mode)])


def largest_progressive_cmyk() -> tuple[int, int]:
    """The largest 8000-pixel-wide CMYK progressive JPEG accepted: its 4 full-size channels' coefficients
    reach `cnn.images.MAX_JPEG_COEFFICIENT_BYTES` at 32 megapixels."""
    bytes_per_block_row = SIZE[0] // 8 * 4 * 64 * 2
    return SIZE[0], MAX_JPEG_COEFFICIENT_BYTES // bytes_per_block_row * 8


def gradient(mode: str, size: tuple[int, int] = SIZE) -> Image.Image:
    band = Image.linear_gradient("L").resize(size)
    return Image.merge(mode, [band] * len(mode)) if len(mode) > 1 else band.convert(mode)


def sixteen_bit_grey() -> bytes:
    """The issue's 78 KB 16-bit PNG: a mid-grey at the cap."""
    return encode(Image.new("I;16", SIZE, 30_000), "PNG")


def palette_with_transparency() -> bytes:
    return encode(gradient("L").convert("P"), "PNG", transparency=0)


def hostile_progressive(mode: str, size: tuple[int, int] = SIZE, **options) -> bytes:
    """The most scans `cnn.images` accepts: the last scan repeated up to the pass or scan limit."""
    from cnn.images import MAX_JPEG_PASSES, MAX_JPEG_SCANS

    normal = encode(flat(mode, size), "JPEG", progressive=True, **options)
    repeats = 0
    while True:
        load = jpeg_load(with_repeated_scan(normal, -1, repeats + 1))
        if load.scans > MAX_JPEG_SCANS or load.passes > MAX_JPEG_PASSES:
            return with_repeated_scan(normal, -1, repeats)
        repeats += 1


PLAIN_PHOTO = "plain photo: baseline JPEG, RGB 4:2:0"
NORMAL_PROGRESSIVE = "progressive JPEG, RGB 4:2:0 (libjpeg default, 10 scans)"
CASES = [
    Case(PLAIN_PHOTO, lambda: encode(photo(), "JPEG", quality=85)),
    Case(NORMAL_PROGRESSIVE, lambda: encode(photo(), "JPEG", quality=85, progressive=True)),
    Case("progressive JPEG, RGB 4:4:4", lambda: encode(photo(), "JPEG", quality=75, progressive=True, subsampling=0)),
    Case(
        "progressive JPEG, CMYK (32 MP, the most accepted)",
        lambda: encode(flat("CMYK", largest_progressive_cmyk()), "JPEG", progressive=True),
    ),
    Case("hostile progressive JPEG, grey, most passes accepted", lambda: hostile_progressive("L")),
    Case("hostile progressive JPEG, RGB 4:4:4, most accepted", lambda: hostile_progressive("RGB", subsampling=0)),
    Case(
        "hostile progressive JPEG, CMYK (32 MP), most accepted",
        lambda: hostile_progressive("CMYK", largest_progressive_cmyk()),
    ),
    Case("PNG, 16-bit grey (I;16)", sixteen_bit_grey),
    Case("PNG, grey (L)", lambda: encode(gradient("L"), "PNG")),
    Case("PNG, RGB", lambda: encode(gradient("RGB"), "PNG")),
    Case("PNG, RGBA", lambda: encode(gradient("RGBA"), "PNG")),
    Case("PNG, grey + alpha (LA)", lambda: encode(gradient("LA"), "PNG")),
    Case("PNG, palette + transparency (P)", palette_with_transparency),
    Case("BMP, bilevel (1)", lambda: encode(gradient("1"), "BMP")),
    Case("GIF, palette (P)", lambda: encode(gradient("L").convert("P"), "GIF")),
    Case(
        "WebP lossless, RGBA (16 MP, the most accepted)",
        lambda: encode(gradient("RGBA", (SIZE[0], MAX_WEBP_PIXELS // SIZE[0])), "WEBP", lossless=True, quality=0),
    ),
    Case(
        "WebP lossy, RGB (16 MP, the most accepted)",
        lambda: encode(photo().crop((0, 0, SIZE[0], MAX_WEBP_PIXELS // SIZE[0])), "WEBP", quality=80),
    ),
]


def measure(command: list[str]) -> Usage:
    """Peak RSS and CPU seconds of one process, from the kernel's accounting of that child alone."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        output.seek(0)
        text = output.read().decode(errors="replace")
    return Usage(usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status) == 0, text)


def decode_cpu_s(alone: Usage) -> float:
    """The decode's own CPU seconds, as the decode-only process printed them."""
    return float(alone.output.split()[-1]) if alone.ok else float("nan")


def write_images(folder: Path) -> None:
    """Write every case's image into `folder`, as 00.img, 01.img, ... in CASES order."""
    for number, case in enumerate(CASES):
        data = case.make()
        assert len(data) <= MAX_BYTES, f"{case.name}: {len(data)} bytes is over the byte cap"
        (folder / f"{number:02d}.img").write_bytes(data)


def main() -> int:
    if sys.argv[1:2] == ["--write"]:
        write_images(Path(sys.argv[2]))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"images {SIZE[0]}x{SIZE[1]} ({SIZE[0] * SIZE[1] / 1e6:.0f} MP)"
    )
    print(
        "| image | file KB | JPEG scans, passes | CLI peak MB | CLI CPU s | decode peak MB | decode CPU s "
        "| decode CPU / plain photo |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, __file__, "--write", folder], check=True)
        for number, case in enumerate(CASES):
            path = Path(folder) / f"{number:02d}.img"
            data = path.read_bytes()
            cli = measure([sys.executable, "-m", "cnn", "predict", "fast", str(path)])
            alone = measure([sys.executable, "-c", DECODE_ONLY.format(root=str(ROOT)), str(path)])
            rows[case.name] = (cli, alone)
            plain_cpu = decode_cpu_s(rows[PLAIN_PHOTO][1])
            load = jpeg_load(data) if data[:2] == b"\xff\xd8" else None
            scans = f"{load.scans}, {load.passes:.1f}" if load else "-"
            failed = "" if cli.ok and alone.ok else " (FAILED)"
            print(
                f"| {case.name}{failed} | {len(data) / 1000:,.0f} | {scans} | {cli.peak_mb:,.0f} "
                f"| {cli.cpu_s:.1f} | {alone.peak_mb:,.0f} | {decode_cpu_s(alone):.2f} "
                f"| {decode_cpu_s(alone) / plain_cpu:.1f}x |"
            )
    worst_peak = max(cli.peak_mb for cli, _ in rows.values())
    cli_ratio = max(cli.cpu_s for cli, _ in rows.values()) / rows[PLAIN_PHOTO][0].cpu_s
    worst_name, (_, worst) = max(rows.items(), key=lambda item: decode_cpu_s(item[1][1]))
    worst_cpu = decode_cpu_s(worst)
    print(
        f"worst CLI peak: {worst_peak:,.0f} MB (target < {TARGET_CLI_PEAK_MB} MB); "
        f"costliest CLI run: {cli_ratio:.2f}x the plain photo's CPU (target <= {TARGET_CLI_CPU_RATIO:.0f}x)"
    )
    print(
        f"costliest decode alone: {worst_name}, {worst_cpu:.2f} s CPU = "
        f"{worst_cpu / decode_cpu_s(rows[NORMAL_PROGRESSIVE][1]):.1f}x a normal progressive JPEG, "
        f"{worst_cpu / decode_cpu_s(rows[PLAIN_PHOTO][1]):.1f}x a baseline one"
    )
    missed = (
        worst_peak >= TARGET_CLI_PEAK_MB
        or cli_ratio > TARGET_CLI_CPU_RATIO
        or not all(cli.ok and alone.ok for cli, alone in rows.values())
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
