"""The embedded dataset: generated shape-and-texture images in the ILSVRC2012 folder layout.

A class is one (shape, texture) pair. Everything a linear model on raw pixels could latch onto is
random and independent of the class: colours, position, scale, rotation, texture frequency and
phase, a smooth background, clutter strokes and pixel noise. To classify, a model has to find a
shape and a texture wherever they are, at any size and angle: easy for a small CNN, hard for a
linear classifier (``dwnas.data.learnability`` measures both).

The tree is written in the layout ``dwnas data prepare`` reads: ``train/<wnid>/*.JPEG`` and
``val/<wnid>/*.JPEG`` with wnid-style names ``n00000000``, ``n00000001``, ..., a Kaggle-style
``LOC_synset_mapping.txt`` naming the classes, and ``synth.json`` recording the parameters.

Determinism: each (split, class) draws its parameters from its own generator seeded by
``(seed, split, class)``, and rendering is chunked without changing any draw, so the same seed gives
byte-identical files (with the same numpy and Pillow builds).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dwnas.config import validate_section
from dwnas.errors import DwnasError

SHAPES = ("disc", "triangle", "cross", "star", "ring", "square", "hexagon", "diamond")
TEXTURES = ("solid", "stripes", "checker", "dots")
SPLITS = {"train": 0, "val": 1}
# Images rendered at once; bounds memory (about 40 float32 planes of chunk x size x size).
CHUNK = 48
JPEG_QUALITY = 90
CLUTTER = 4  # thin random strokes per image
BLOBS = 3  # small random discs per image
CLUTTER_ALPHA = 0.7
ASPECT = (1.0, 1.0)  # shape stretch along its own axis
FREQ = (7.0, 11.0)  # texture frequency, radians per shape radius
BG_VARIATION = 0.3  # how far the smooth background strays from its base colour
FG_CONTRAST = 0.35  # min luminance difference shape vs background
TEXTURE_SHIFT = (0.25, 0.4)  # the texture's second colour: the first moved this far to black/white


def wnid(index: int) -> str:
    """The wnid-style folder name of generated class ``index``."""
    return f"n{index:08d}"


def class_grid(classes: int) -> list[tuple[str, str]]:
    """The (shape, texture) pair of each class: shapes x textures, using at least two textures."""
    limit = len(SHAPES) * len(TEXTURES)
    if not 2 <= classes <= limit:
        raise DwnasError(f"--classes must be between 2 and {limit} (got {classes})")
    n_textures = min(len(TEXTURES), max(2, math.ceil(classes / len(SHAPES))))
    n_shapes = math.ceil(classes / n_textures)
    pairs = [(SHAPES[s], TEXTURES[t]) for s in range(n_shapes) for t in range(n_textures)]
    return pairs[:classes]


@dataclass(frozen=True)
class SynthSpec:
    classes: int = 10
    train_per_class: int = 300
    val_per_class: int = 60
    image_size: int = 72
    seed: int = 0

    def validate(self) -> None:
        """Hold the spec to the schema's ``data.synth`` rules, each problem named by its flag."""
        validate_section(asdict(self), "data.synth", flags=True)


# Shapes as signed distances in the shape's own frame (outer radius about 1; negative inside).


def _sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "disc":
        return np.hypot(u, v) - 0.9
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.72
    if shape == "diamond":
        return (np.abs(u) + np.abs(v) - 0.95) / math.sqrt(2)
    if shape == "triangle":
        d = None
        for angle in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6):
            side = u * math.cos(angle) + v * math.sin(angle)
            d = side if d is None else np.maximum(d, side)
        return d - 0.5
    if shape == "hexagon":
        d = None
        for k in range(3):
            angle = k * math.pi / 3
            side = np.abs(u * math.cos(angle) + v * math.sin(angle))
            d = side if d is None else np.maximum(d, side)
        return d - 0.8
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        bar_h = np.maximum(au - 0.95, av - 0.3)
        bar_v = np.maximum(av - 0.95, au - 0.3)
        return np.minimum(bar_h, bar_v)
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.68) - 0.25
    if shape == "star":
        r = np.hypot(u, v)
        theta = np.arctan2(v, u)
        return (r - (0.62 + 0.36 * np.cos(5 * theta))) * 0.6
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u, v, freq, phase) -> np.ndarray:
    """Weight of the second colour (0..1) at each pixel; ``freq``/``phase`` are per image."""
    if texture == "solid":
        return np.zeros_like(u)
    if texture == "stripes":
        return (np.sin(freq * u + phase) > 0).astype(np.float32)
    if texture == "checker":
        return ((np.sin(freq * u + phase) * np.sin(freq * v + phase)) > 0).astype(np.float32)
    if texture == "dots":
        cell = 2 * math.pi / freq
        du = np.mod(u + phase / freq, cell) - cell / 2
        dv = np.mod(v + phase / freq, cell) - cell / 2
        return (np.hypot(du, dv) < 0.3 * cell).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}")


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _colours_away_from(rng: np.random.Generator, ref: np.ndarray, min_luma: float) -> np.ndarray:
    """One random colour per row of ``ref`` whose luminance differs from it by ``min_luma``."""
    out = rng.uniform(0, 1, ref.shape).astype(np.float32)
    for _ in range(100):
        bad = np.abs(_luma(out) - _luma(ref)) < min_luma
        if not bad.any():
            break
        out[bad] = rng.uniform(0, 1, (int(bad.sum()), 3)).astype(np.float32)
    return out


def _draw_params(rng: np.random.Generator, n: int, size: int) -> dict[str, np.ndarray]:
    """Every random choice for ``n`` images of one class, drawn in one fixed order."""
    p: dict[str, np.ndarray] = {}
    p["radius"] = rng.uniform(0.2, 0.38, n) * size
    margin = p["radius"] * 0.75
    p["cx"] = margin + rng.uniform(0, 1, n) * (size - 2 * margin)
    p["cy"] = margin + rng.uniform(0, 1, n) * (size - 2 * margin)
    p["angle"] = rng.uniform(0, 2 * math.pi, n)
    p["aspect"] = rng.uniform(ASPECT[0], ASPECT[1], n)
    p["freq"] = rng.uniform(FREQ[0], FREQ[1], n)
    p["tex_angle"] = rng.uniform(-0.4, 0.4, n)
    p["phase"] = rng.uniform(0, 2 * math.pi, n)
    bg = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    p["bg_grid"] = np.clip(
        bg[:, None, None, :] + BG_VARIATION * rng.uniform(-1, 1, (n, 4, 4, 3)), 0, 1
    ).astype(np.float32)
    p["fg"] = _colours_away_from(rng, bg, FG_CONTRAST)
    towards = np.where(_luma(p["fg"]) > 0.5, 0.0, 1.0).astype(np.float32)[:, None]
    shift = rng.uniform(TEXTURE_SHIFT[0], TEXTURE_SHIFT[1], (n, 1)).astype(np.float32)
    p["fg2"] = p["fg"] + shift * (towards - p["fg"])
    p["clutter_xy"] = rng.uniform(-0.1, 1.1, (n, CLUTTER, 4)).astype(np.float32) * size
    p["clutter_width"] = rng.uniform(0.6, 1.6, (n, CLUTTER)).astype(np.float32)
    p["clutter_colour"] = rng.uniform(0, 1, (n, CLUTTER, 3)).astype(np.float32)
    p["blob_xy"] = rng.uniform(0, 1, (n, BLOBS, 2)).astype(np.float32) * size
    p["blob_r"] = rng.uniform(0.04, 0.1, (n, BLOBS)).astype(np.float32) * size
    p["blob_colour"] = rng.uniform(0, 1, (n, BLOBS, 3)).astype(np.float32)
    p["noise_seed"] = rng.integers(0, 2**63 - 1, n)
    p["noise_sigma"] = rng.uniform(0.02, 0.06, n).astype(np.float32)
    return p


def _bilinear_weights(n_out: int, n_in: int) -> np.ndarray:
    pos = (np.arange(n_out) + 0.5) / n_out * n_in - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (pos - lo).astype(np.float32)
    w = np.zeros((n_out, n_in), np.float32)
    w[np.arange(n_out), lo] += 1 - frac
    w[np.arange(n_out), hi] += frac
    return w


def _composite(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Blend ``colour`` (B,3 or B,H,W,3) over ``canvas`` (B,H,W,3) with ``alpha`` (B,H,W)."""
    if colour.ndim == 2:
        colour = colour[:, None, None, :]
    delta = colour - canvas
    delta *= alpha[..., None]
    canvas += delta
    return canvas


def _draw_clutter(canvas: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """Thin strokes and small discs of random colours, drawn translucently with Pillow."""
    from PIL import Image, ImageDraw

    pixels = (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
    alpha = int(CLUTTER_ALPHA * 255)
    for i in range(len(pixels)):
        image = Image.fromarray(pixels[i])
        draw = ImageDraw.Draw(image, "RGBA")
        for k in range(CLUTTER):
            colour = tuple(int(c * 255) for c in p["clutter_colour"][i, k]) + (alpha,)
            width = 1 + int(p["clutter_width"][i, k])
            draw.line([float(v) for v in p["clutter_xy"][i, k]], fill=colour, width=width)
        for k in range(BLOBS):
            colour = tuple(int(c * 255) for c in p["blob_colour"][i, k]) + (alpha,)
            x, y = (float(v) for v in p["blob_xy"][i, k])
            r = float(p["blob_r"][i, k])
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        pixels[i] = np.asarray(image)
    return pixels.astype(np.float32) / 255.0


def render(shape: str, texture: str, p: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Render the images described by ``p`` (one class) as uint8 (B, size, size, 3)."""
    n = len(p["radius"])
    coords = np.arange(size, dtype=np.float32) + 0.5
    y = coords[None, :, None]
    x = coords[None, None, :]

    w = _bilinear_weights(size, 4)
    canvas = np.einsum("hi,bijc,wj->bhwc", w, p["bg_grid"], w, optimize=True)

    canvas = _draw_clutter(canvas, p)

    radius = p["radius"][:, None, None].astype(np.float32)
    cos = np.cos(p["angle"])[:, None, None].astype(np.float32)
    sin = np.sin(p["angle"])[:, None, None].astype(np.float32)
    aspect = p["aspect"][:, None, None].astype(np.float32)
    dx = (x - p["cx"][:, None, None]) / radius
    dy = (y - p["cy"][:, None, None]) / radius
    u = (cos * dx + sin * dy) * aspect
    v = (-sin * dx + cos * dy) / aspect
    dist_px = _sdf(shape, u, v) * radius
    alpha = np.clip(0.5 - dist_px, 0, 1).astype(np.float32)

    ta = p["tex_angle"][:, None, None].astype(np.float32)
    tu = np.cos(ta) * u + np.sin(ta) * v
    tv = -np.sin(ta) * u + np.cos(ta) * v
    freq = p["freq"][:, None, None].astype(np.float32)
    phase = p["phase"][:, None, None].astype(np.float32)
    mix = _texture(texture, tu, tv, freq, phase)[..., None]
    fill = p["fg"][:, None, None, :] * (1 - mix) + p["fg2"][:, None, None, :] * mix
    canvas = _composite(canvas, alpha, fill)

    # One generator per chunk (seeded by its first image): deterministic since CHUNK is fixed.
    noise = np.random.default_rng(int(p["noise_seed"][0])).standard_normal(
        (n, size, size, 3), np.float32
    )
    canvas = canvas + noise * p["noise_sigma"][:, None, None, None]
    assert canvas.shape == (n, size, size, 3)
    return (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)


def _slice(p: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v[start:stop] for k, v in p.items()}


def generate_class(spec: SynthSpec, split: str, index: int) -> np.ndarray:
    """All images of one class and split, uint8 (n, size, size, 3); deterministic."""
    shape, texture = class_grid(spec.classes)[index]
    n = spec.train_per_class if split == "train" else spec.val_per_class
    rng = np.random.default_rng([spec.seed, SPLITS[split], index])
    params = {
        k: v.astype(np.float32) if v.dtype == np.float64 else v
        for k, v in _draw_params(rng, n, spec.image_size).items()
    }
    chunks = [
        render(shape, texture, _slice(params, s, s + CHUNK), spec.image_size)
        for s in range(0, n, CHUNK)
    ]
    return np.concatenate(chunks)


def file_name(split: str, class_index: int, i: int) -> str:
    return f"{wnid(class_index)}_{split}_{i:05d}.JPEG"


def _write_class(task: tuple[SynthSpec, str, int, str]) -> int:
    """Generate and save one (split, class) folder; a process-pool task."""
    from PIL import Image

    spec, split, c, out = task
    folder = Path(out) / split / wnid(c)
    folder.mkdir(parents=True)
    images = generate_class(spec, split, c)
    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(
            folder / file_name(split, c, i), format="JPEG", quality=JPEG_QUALITY
        )
    return len(images)


def write_tree(spec: SynthSpec, out: Path, workers: int = 1) -> dict:
    """Write the whole tree under ``out`` (an existing, empty directory); returns its description.

    Classes are independent, so ``workers`` processes write them in parallel with the same bytes.
    """
    from dwnas.procs import worker_pool
    from dwnas.progress import progress

    spec.validate()
    grid = class_grid(spec.classes)
    tasks = [(spec, split, c, str(out)) for split in SPLITS for c in range(spec.classes)]
    if workers <= 1:
        for _ in progress(map(_write_class, tasks), total=len(tasks), desc="synth"):
            pass
    else:
        with worker_pool(workers) as pool:
            for _ in progress(pool.map(_write_class, tasks), total=len(tasks), desc="synth"):
                pass
    names = [f"{shape} {texture}" for shape, texture in grid]
    (out / "LOC_synset_mapping.txt").write_text(
        "".join(f"{wnid(c)} {name}\n" for c, name in enumerate(names))
    )
    info = {
        "generator": "dwnas.data.synth",
        "spec": {
            "classes": spec.classes,
            "train_per_class": spec.train_per_class,
            "val_per_class": spec.val_per_class,
            "image_size": spec.image_size,
            "seed": spec.seed,
        },
        "classes": [
            {"index": c, "wnid": wnid(c), "shape": shape, "texture": texture}
            for c, (shape, texture) in enumerate(grid)
        ],
        "jpeg_quality": JPEG_QUALITY,
    }
    (out / "synth.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def synthesize(spec: SynthSpec, out: str | os.PathLike, workers: int | None = None) -> dict:
    """Generate the tree into ``out`` atomically (a killed run leaves no finished-looking tree)."""
    from dwnas.data.verify import default_workers
    from dwnas.io import atomic_dir

    spec.validate()
    with atomic_dir(out) as tmp:
        info = write_tree(spec, tmp, workers or default_workers())
    return info
