"""`dwnas data synth`: deterministic, in the ImageNet layout, and a task a CNN learns but a linear
model on pixels does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dwnas.cli import main
from dwnas.config import load_schema
from dwnas.data.synth import SHAPES, TEXTURES, SynthSpec, class_grid, generate_class


def synth(out: Path, *, classes=4, train=6, val=3, size=32, seed=0, workers=1) -> int:
    return main(
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--classes",
            str(classes),
            "--train-per-class",
            str(train),
            "--val-per-class",
            str(val),
            "--image-size",
            str(size),
            "--seed",
            str(seed),
            "--workers",
            str(workers),
        ]
    )


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_tree_is_in_the_imagenet_layout(tmp_path):
    out = tmp_path / "synth"
    assert synth(out, classes=4, train=6, val=3, size=32) == 0
    wnids = ["n00000000", "n00000001", "n00000002", "n00000003"]
    for split, n in (("train", 6), ("val", 3)):
        assert sorted(p.name for p in (out / split).iterdir()) == wnids
        for w in wnids:
            files = sorted((out / split / w).iterdir())
            assert len(files) == n
            with Image.open(files[0]) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (32, 32))
    mapping = (out / "LOC_synset_mapping.txt").read_text().splitlines()
    assert mapping == [
        "n00000000 disc solid",
        "n00000001 disc stripes",
        "n00000002 triangle solid",
        "n00000003 triangle stripes",
    ]
    info = json.loads((out / "synth.json").read_text())
    assert info["spec"] == {
        "classes": 4,
        "train_per_class": 6,
        "val_per_class": 3,
        "image_size": 32,
        "seed": 0,
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path):
    assert synth(tmp_path / "a", seed=3, workers=1) == 0
    assert synth(tmp_path / "b", seed=3, workers=2) == 0
    assert synth(tmp_path / "c", seed=4, workers=1) == 0
    a, b, c = (tree_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".JPEG")]
    assert all(a[k] != c[k] for k in images)


def test_colour_and_position_are_not_tied_to_the_class():
    """Per-class mean colour and mean image are nearly the same for every class."""
    spec = SynthSpec(classes=4, train_per_class=200, image_size=32)
    per_class = [generate_class(spec, "train", c).astype(np.float32) / 255 for c in range(4)]
    colour = np.stack([x.mean(axis=(0, 1, 2)) for x in per_class])
    assert np.abs(colour - colour.mean(0)).max() < 0.05
    mean_image = np.stack([x.mean(axis=0) for x in per_class])
    assert np.abs(mean_image - mean_image.mean(0)).mean() < 0.04


def test_the_schema_allows_the_classes_the_grid_has():
    classes = load_schema()["properties"]["data"]["properties"]["synth"]["properties"]["classes"]
    assert classes["maximum"] == len(SHAPES) * len(TEXTURES) == len(class_grid(32))


def test_class_grid_uses_shapes_and_textures():
    grid = class_grid(10)
    assert len(set(grid)) == 10
    assert len({s for s, _ in grid}) == 5 and len({t for _, t in grid}) == 2


@pytest.mark.parametrize("classes", ["1", "33"])
def test_bad_class_count_is_refused(tmp_path, capsys, classes):
    out = tmp_path / "synth"
    rc = main(["data", "synth", "--out", str(out), "--classes", classes])
    assert rc == 2
    assert "--classes" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_small_cnn_learns_what_a_linear_model_cannot():
    """A reduced version of benchmarks/synth_learnability.py (10 classes, 72 px; see docs/data.md):
    4 classes at 32 px, 200 training images each, 10 epochs (about 10 s on one core)."""
    import torch

    from dwnas.data.learnability import fit_and_score, linear_model, small_cnn

    spec = SynthSpec(classes=4, train_per_class=200, val_per_class=40, image_size=32, seed=0)

    def split(name):
        xs = [generate_class(spec, name, c) for c in range(spec.classes)]
        labels = np.concatenate([np.full(len(x), c) for c, x in enumerate(xs)])
        return np.concatenate(xs).transpose(0, 3, 1, 2).copy(), labels.astype(np.int64)

    train, val = split("train"), split("val")
    torch.manual_seed(0)
    common = dict(epochs=10, batch_size=32, seed=0)
    cnn = fit_and_score(small_cnn(4), train, val, lr=3e-3, weight_decay=5e-4, **common)
    linear = fit_and_score(
        linear_model(4, train[0].shape[1:]),
        train,
        val,
        lr=1e-3,
        weight_decay=1e-2,
        flip=False,
        **common,
    )
    assert cnn["val_top1"] >= 0.75, cnn
    assert linear["val_top1"] <= 0.45, linear
