"""Recipe sweep for the `fast` model on a lent GPU, in PyTorch (the GPU machine has no TensorFlow).

A line-by-line port of `cnn.models.build_fast_trunk` and the `fast` recipe of `cnn.training`
(airbench94 layout, ScaledBias x8, dirac init, bf16 with a float32 stem, SGD-Nesterov with
decoupled decay, airbench's warm-up/decay ramp, label smoothing, lookahead, six-view test-time
averaging), so that many seeds of many settings can be compared in minutes instead of the
27 CPU-minutes one Keras run takes. Only the training split is used: the first 45,000 images
train, the last 5,000 validate, as is and re-encoded as JPEG quality 75 (like the shared test
set's images 1000-9999). The test set is never read here.

    python docs/experiments/gpu_sweep.py pack --cifar DIR --out .gpudata   # here: lossless WebP parts
    python docs/experiments/gpu_sweep.py run --data .gpudata --plan NAME    # on the GPU machine
    python docs/experiments/gpu_sweep.py summarize docs/experiments/gpu_sweep_*.jsonl  # the table

Each finished run prints one JSON line (settings, seed, seconds, val, val_jpeg75).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root: cnn.whitening is numpy-only
from cnn.whitening import CIFAR_MEAN, CIFAR_STD, whitening_filters  # noqa: E402 (the very filters Keras uses)

TILE = (25, 40)  # 1,000 images per lossless WebP tile: 25 rows of 40 images
PARTS = ((0, 17_000), (17_000, 34_000), (34_000, 50_000))

TRAIN, VAL = 45_000, 5_000
DEVICE = "cuda"  # set by run(): "cpu" for a smoke test where there is no GPU


# ---------------------------------------------------------------- data packing (runs here)


def load_train(cifar: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for batch in range(1, 6):
        content = pickle.loads((cifar / f"data_batch_{batch}").read_bytes(), encoding="bytes")
        images.append(content[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels += content[b"labels"]
    return np.concatenate(images), np.array(labels, np.uint8)


def tile_bytes(images: np.ndarray) -> bytes:
    rows, cols = TILE
    grid = images.reshape(rows, cols, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, cols * 32, 3)
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, "WEBP", lossless=True, quality=100, method=4)
    return buffer.getvalue()


def untile(data: bytes) -> np.ndarray:
    rows, cols = TILE
    grid = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return grid.reshape(rows, 32, cols, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, 32, 32, 3)


def pack(cifar: Path, out: Path) -> None:
    images, labels = load_train(cifar)
    for index, (start, stop) in enumerate(PARTS):
        folder = out / f"part{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for first in range(start, stop, 1000):
            encoded = tile_bytes(images[first : first + 1000])
            assert np.array_equal(untile(encoded), images[first : first + 1000])  # lossless, checked
            (folder / f"{first:05d}.webp").write_bytes(encoded)
    np.save(out / "part0" / "labels.npy", labels)
    print("packed", len(labels), "images into", out)


def unpack(folders: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    tiles = sorted((path for folder in folders for path in folder.glob("*.webp")), key=lambda p: p.name)
    images = np.concatenate([untile(path.read_bytes()) for path in tiles])
    labels = np.load(next(folder / "labels.npy" for folder in folders if (folder / "labels.npy").exists()))
    return images, labels[: len(images)]  # the first parts alone make a smaller data set


def jpeg_copy(images: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    """Each image re-encoded by Pillow as JPEG at its quality (4:2:0 chroma, Pillow's default)."""
    out = np.empty_like(images)
    for index, (image, quality) in enumerate(zip(images, qualities)):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(quality))
        out[index] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def parallel_jpeg(images: np.ndarray, qualities: np.ndarray, workers: int = 16) -> np.ndarray:
    chunks = np.array_split(np.arange(len(images)), workers * 4)
    with ProcessPoolExecutor(workers) as pool:
        parts = pool.map(jpeg_copy, [images[c] for c in chunks], [qualities[c] for c in chunks])
        return np.concatenate(list(parts))


# ---------------------------------------------------------------- the model (runs on the GPU)


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    epochs: int = 20
    widths: tuple[int, int, int] = (64, 256, 256)
    jpeg_share: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 95)
    flip: str = "random"  # or "alternate"
    whiten_bias_epochs: int | None = None  # None: trained throughout (ours); 3: airbench
    lr: float = 1.5
    weight_decay: float = 0.0087
    label_smoothing: float = 0.2
    lookahead: bool = True
    train_images: int = TRAIN
    whitening_eps: float = 5e-4  # added to the patch covariance's eigenvalues: caps the whitening gain
    batch_size: int = 1024
    low_res: int = 32  # progressive resizing: the first `low_res_epochs` epochs see images resized to this side
    low_res_epochs: int = 0

    def side(self, epoch: int) -> int:
        return self.low_res if epoch < self.low_res_epochs else 32

    def pixel_epochs(self) -> float:
        """Epochs weighted by pixels per image (compute scales with them): 20 full-size epochs = 20."""
        return sum((self.side(epoch) / 32) ** 2 for epoch in range(self.epochs))


def build(setting: Setting, whitening: np.ndarray):
    import torch
    from torch import nn

    class ScaledBias(nn.Module):
        def __init__(self, channels, scale=8.0):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(channels))
            self.scale = scale

        def forward(self, x):
            return x + (self.bias * self.scale).to(x.dtype)[None, :, None, None]

    def conv(cin, cout):
        layer = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        # Keras's glorot-uniform default, then dirac on the first cin filters (start_as_identity)
        limit = math.sqrt(6 / (9 * cin + 9 * cout))
        nn.init.uniform_(layer.weight, -limit, limit)
        with torch.no_grad():
            layer.weight[:cin] = 0
            layer.weight[torch.arange(cin), torch.arange(cin), 1, 1] = 1
        return layer

    def block(cin, cout):
        return nn.Sequential(
            conv(cin, cout),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(cout, momentum=0.6, eps=1e-12, affine=False),
            ScaledBias(cout),
            nn.GELU(),
            conv(cout, cout),
            nn.BatchNorm2d(cout, momentum=0.6, eps=1e-12, affine=False),
            ScaledBias(cout),
            nn.GELU(),
        )

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.whiten = nn.Conv2d(3, 24, 2, bias=False)
            # Keras kernel (kh, kw, cin, cout) -> torch (cout, cin, kh, kw)
            self.whiten.weight.data = torch.tensor(whitening).permute(3, 2, 0, 1).contiguous()
            self.whiten.weight.requires_grad = False
            self.whiten_bias = ScaledBias(24)
            a, b, c = setting.widths
            self.blocks = nn.Sequential(block(24, a), block(a, b), block(b, c))
            self.logits = nn.Linear(c, 10, bias=False)
            limit = math.sqrt(6 / (c + 10))
            nn.init.uniform_(self.logits.weight, -limit, limit)
            self.register_buffer("mean", torch.tensor(CIFAR_MEAN)[None, :, None, None])
            self.register_buffer("std", torch.tensor(CIFAR_STD)[None, :, None, None])

        def forward(self, x):  # x: float32 NCHW in [0, 1]
            with torch.autocast(DEVICE, enabled=False):
                x = self.whiten_bias(self.whiten((x - self.mean) / self.std))
            x = nn.functional.gelu(x).to(torch.bfloat16)
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                x = self.blocks(x)
                x = torch.amax(x, dim=(2, 3))
                return self.logits(x).float() / 9

    return Net().to(DEVICE).to(memory_format=torch.channels_last)


def ramp(step: int, total: int) -> float:
    """cnn.lr_schedules.warmup_linear_ramp (the 64-step piecewise-constant approximation is ignored)."""
    warmup = max(1, int(0.23 * total))
    if step < warmup:
        return 0.2 + 0.8 * step / warmup
    return 1.0 - 0.93 * (step - warmup) / max(1, total - warmup)


def augment(batch, flips, torch):
    """Flip where `flips`, then shift by up to 2 px with a reflected border (cnn.augment.augment_batch)."""
    batch = torch.where(flips[:, None, None, None], batch.flip(3), batch)
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2), mode="reflect")
    n = len(batch)
    dy, dx = torch.randint(0, 5, (n,), device=batch.device), torch.randint(0, 5, (n,), device=batch.device)
    rows = (dy[:, None] + torch.arange(32, device=batch.device))[:, None, :, None].expand(n, 3, 32, 36)
    shifted = torch.gather(padded, 2, rows)
    cols = (dx[:, None] + torch.arange(32, device=batch.device))[:, None, None, :].expand(n, 3, 32, 32)
    return torch.gather(shifted, 3, cols)


def six_views(images, torch):
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), mode="reflect")
    views = [images, padded[:, :, :32, :32], padded[:, :, 2:, 2:]]
    return views + [view.flip(3) for view in views]


VIEW_WEIGHTS = (0.25, 0.125, 0.125, 0.25, 0.125, 0.125)


def evaluate(net, images, labels, torch) -> tuple[float, float]:
    """(accuracy with six-view averaging, accuracy of the plain image)."""
    net.eval()
    correct = plain = 0
    with torch.no_grad():
        for start in range(0, len(images), 2500):
            batch = images[start : start + 2500].float() / 255
            probabilities = [
                torch.softmax(net(view.contiguous(memory_format=torch.channels_last)), 1)
                for view in six_views(batch, torch)
            ]
            mean = sum(w * p for w, p in zip(VIEW_WEIGHTS, probabilities))
            truth = labels[start : start + 2500]
            correct += (mean.argmax(1) == truth).sum().item()
            plain += (probabilities[0].argmax(1) == truth).sum().item()
    net.train()
    return correct / len(images), plain / len(images)


def train_once(setting: Setting, seed: int, data: dict, torch) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n = setting.train_images
    images, labels = data["train"][:n], data["labels"][:n]
    jpeg_versions = data["jpeg"][tuple(setting.jpeg_quality)][:, :n]
    net = build(setting, whitening_filters(data["train_host"][:5000], setting.whitening_eps))
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=setting.lr, momentum=0.85, nesterov=True)
    size = setting.batch_size
    steps_per_epoch = math.ceil(n / size)
    total = steps_per_epoch * setting.epochs
    slow = {k: v.detach().clone() for k, v in net.state_dict().items() if v.dtype.is_floating_point}
    flip_bits = torch.tensor(rng.random(n) < 0.5, device=DEVICE)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=setting.label_smoothing)
    step = 0
    synchronize(torch)
    started = time.time()
    for epoch in range(setting.epochs):
        if setting.whiten_bias_epochs is not None and epoch == setting.whiten_bias_epochs:
            net.whiten_bias.bias.requires_grad = False
        order = torch.randperm(n, device=DEVICE)
        use_jpeg = torch.rand(n, device=DEVICE) < setting.jpeg_share
        version = torch.randint(0, jpeg_versions.shape[0], (n,), device=DEVICE)
        for start in range(0, n, size):
            index = order[start : start + size]
            batch = torch.where(use_jpeg[index, None, None, None], jpeg_versions[version[index], index], images[index])
            if setting.flip == "alternate":
                flips = flip_bits[index] ^ bool(epoch % 2)
            else:
                flips = torch.rand(len(index), device=DEVICE) < 0.5
            batch = augment(batch.float() / 255, flips, torch)
            if setting.side(epoch) != 32:
                batch = torch.nn.functional.interpolate(
                    batch, size=setting.side(epoch), mode="bilinear", antialias=True, align_corners=False
                )
            batch = batch.contiguous(memory_format=torch.channels_last)
            rate = setting.lr * ramp(step, total)
            for group in optimizer.param_groups:
                group["lr"] = rate
            with torch.no_grad():  # Keras's decoupled decay: var -= var * wd * lr
                for p in params:
                    if p.requires_grad:
                        p.mul_(1 - setting.weight_decay * rate)
            loss = loss_fn(net(batch), labels[index].long())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if setting.lookahead and step % 5 == 0:
                keep = 0.95**5 * (step / total) ** 3
                with torch.no_grad():
                    state = net.state_dict()
                    for key, value in slow.items():
                        value.add_((1 - keep) * (state[key].float() - value))
                        state[key].copy_(value)
    if setting.lookahead:
        with torch.no_grad():
            state = net.state_dict()
            for key, value in slow.items():
                state[key].copy_(value)
    synchronize(torch)
    seconds = time.time() - started
    val, val_plain = evaluate(net, data["val"], data["val_labels"], torch)
    val_jpeg, val_jpeg_plain = evaluate(net, data["val_jpeg"], data["val_labels"], torch)
    return {
        **dataclasses.asdict(setting),
        "seed": seed,
        "seconds": round(seconds, 1),
        "val": val,
        "val_jpeg75": val_jpeg,
        "val_one_view": val_plain,
        "val_jpeg75_one_view": val_jpeg_plain,
    }


def synchronize(torch) -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def flops_per_image(widths) -> float:
    """Multiply-adds of one forward pass (the 3x3 convolutions dominate)."""
    a, b, c = widths
    return 9 * (24 * a * 31 * 31 + a * a * 15 * 15 + a * b * 15 * 15 + b * b * 7 * 7 + b * c * 7 * 7 + c * c * 3 * 3)


def relative_compute(setting: Setting) -> float:
    """Training compute relative to v3's (widths, pixels per epoch, images)."""
    return round(
        flops_per_image(setting.widths)
        * setting.pixel_epochs()
        * setting.train_images
        / (flops_per_image(BASE.widths) * BASE.pixel_epochs() * TRAIN),
        3,
    )


BASE = Setting("v3")
WB3 = dataclasses.replace(BASE, name="wb3", whiten_bias_epochs=3)
PLANS = {
    "main": [
        BASE,
        dataclasses.replace(BASE, name="alt_flip", flip="alternate"),
        dataclasses.replace(BASE, name="whiten_bias_3ep", whiten_bias_epochs=3),
        dataclasses.replace(BASE, name="jpeg_0.3", jpeg_share=0.3),
        dataclasses.replace(BASE, name="alt_flip_wb3", flip="alternate", whiten_bias_epochs=3),
        dataclasses.replace(BASE, name="ep18_alt", epochs=18, flip="alternate"),
        dataclasses.replace(BASE, name="w80_ep13_alt", epochs=13, widths=(80, 320, 320), flip="alternate"),
        dataclasses.replace(BASE, name="jpeg_0", jpeg_share=0.0),
    ],
    "second": [
        WB3,
        dataclasses.replace(WB3, name="wb3_eps2e-3", whitening_eps=2e-3),
        dataclasses.replace(WB3, name="wb3_eps1e-2", whitening_eps=1e-2),
        dataclasses.replace(WB3, name="wb1", whiten_bias_epochs=1),
        dataclasses.replace(WB3, name="wb0", whiten_bias_epochs=0),
        dataclasses.replace(WB3, name="wb3_ep18", epochs=18),
        dataclasses.replace(WB3, name="wb3_lr2", lr=2.0),
        dataclasses.replace(WB3, name="wb3_wd0.011", weight_decay=0.011),
        dataclasses.replace(WB3, name="wb3_ls0.1", label_smoothing=0.1),
        dataclasses.replace(WB3, name="wb3_q50-90", jpeg_quality=(50, 90)),
        dataclasses.replace(WB3, name="wb3_bs768", batch_size=768, lr=1.5 * 0.75),
        dataclasses.replace(WB3, name="wb3_ep22", epochs=22),
    ],
    # How much more compute would a 93% whole-set figure take? (not for the 30-minute CPU budget)
    "scale": [
        dataclasses.replace(WB3, name="wb3_ep40", epochs=40),
        dataclasses.replace(WB3, name="wb3_w96_ep20", widths=(96, 384, 384)),
        dataclasses.replace(WB3, name="wb3_w128_ep20", widths=(128, 512, 512)),
        dataclasses.replace(WB3, name="wb3_w128_ep40", widths=(128, 512, 512), epochs=40),
    ],
    # Progressive resizing (fast.ai's DAWNBench trick): cheap low-resolution epochs first, then
    # the compute saved spent on more epochs or a wider net. Does it buy accuracy at v3's cost?
    "resize": [
        BASE,
        dataclasses.replace(BASE, name="r24x10", low_res=24, low_res_epochs=10),
        dataclasses.replace(BASE, name="r16x8", low_res=16, low_res_epochs=8),
        dataclasses.replace(BASE, name="r24x12_ep24", epochs=24, low_res=24, low_res_epochs=12),
        dataclasses.replace(BASE, name="r16x12_ep28", epochs=28, low_res=16, low_res_epochs=12),
        dataclasses.replace(BASE, name="w80_r20x10", widths=(80, 320, 320), low_res=20, low_res_epochs=10),
        dataclasses.replace(BASE, name="w96_r24x12", widths=(96, 384, 384), low_res=24, low_res_epochs=12),
    ],
    "smoke": [dataclasses.replace(BASE, name="smoke", epochs=6)],
    "smoke_resize": [dataclasses.replace(BASE, name="smoke_resize", epochs=6, low_res=16, low_res_epochs=3)],
}


def run(data_dir: Path, plan: str, seeds: int, budget_s: float) -> None:
    global DEVICE
    import torch

    DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    started = time.time()
    images, labels = unpack(sorted(data_dir.glob("part*")))
    split = len(images) - VAL  # 45,000 with the whole training set
    rng = np.random.default_rng(0)
    train, val = images[:split], images[split:]
    ranges = sorted({tuple(setting.jpeg_quality) for setting in PLANS[plan]})
    versions = {
        low_high: np.stack([parallel_jpeg(train, rng.integers(low_high[0], low_high[1] + 1, split)) for _ in range(3)])
        for low_high in ranges
    }
    val_jpeg = parallel_jpeg(val, np.full(VAL, 75))

    def on_device(array):  # NHWC on the host -> NCHW on the GPU
        return torch.tensor(array, device=DEVICE).permute(*range(array.ndim - 3), -1, -3, -2)

    data = {
        "train": on_device(train),
        "labels": torch.tensor(labels[:split], device=DEVICE),
        "jpeg": {key: on_device(value) for key, value in versions.items()},
        "val": on_device(val),
        "val_jpeg": on_device(val_jpeg),
        "val_labels": torch.tensor(labels[split:], device=DEVICE).long(),
        "train_host": train,
    }
    device_name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    print(json.dumps({"prepared_s": round(time.time() - started, 1), "device": device_name}), flush=True)
    for seed in range(seeds):
        for setting in PLANS[plan]:
            if time.time() - started > budget_s:
                print(json.dumps({"stopped": "time budget", "at_seed": seed}), flush=True)
                return
            if setting.train_images > split:
                setting = dataclasses.replace(setting, train_images=split)  # a smoke test's small data
            result = train_once(setting, seed, data, torch)
            result["relative_flops"] = relative_compute(setting)
            print(json.dumps(result), flush=True)


def summarize(paths: list[Path]) -> None:
    """A markdown table of the runs in the JSON-lines files: mean and spread over seeds, per setting."""
    import statistics

    by_name: dict[str, list[dict]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "name" in row:
                by_name.setdefault(row["name"], []).append(row)

    def spread(rows, key):
        values = [100 * row[key] for row in rows]
        deviation = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.mean(values), f"{statistics.mean(values):.2f} ± {deviation:.2f}"

    print("| setting | seeds | compute vs v3 | val | val as JPEG q75 | 0.1 val + 0.9 JPEG (whole-set estimate) |")
    print("|---|---|---|---|---|---|")
    for name, rows in by_name.items():
        clean, clean_text = spread(rows, "val")
        jpeg, jpeg_text = spread(rows, "val_jpeg75")
        print(
            f"| {name} | {len(rows)} | {rows[0]['relative_flops']:.2f}x | {clean_text} | {jpeg_text} "
            f"| {0.1 * clean + 0.9 * jpeg:.2f} |"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packer = commands.add_parser("pack")
    packer.add_argument("--cifar", type=Path, required=True)
    packer.add_argument("--out", type=Path, required=True)
    runner = commands.add_parser("run")
    runner.add_argument("--data", type=Path, required=True)
    runner.add_argument("--plan", choices=sorted(PLANS), default="main")
    runner.add_argument("--seeds", type=int, default=3)
    runner.add_argument("--budget-s", type=float, default=400)
    summary = commands.add_parser("summarize")
    summary.add_argument("results", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "summarize":
        summarize(args.results)
    elif args.command == "pack":
        pack(args.cifar, args.out)
    else:
        run(args.data, args.plan, args.seeds, args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
