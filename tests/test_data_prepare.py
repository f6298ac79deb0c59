"""`dwnas data prepare`: every accepted layout, the subsets, and every kind of bad input.

Trees are built from tiny JPEGs whose pixels encode a running counter, so no two files share bytes
unless a test makes them.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dwnas.cli import main
from dwnas.data.imagenet import default_classes_file

_counter = itertools.count()


def tiny_jpeg(path: Path, size: int = 8) -> Path:
    """A small, unique JPEG at ``path``."""
    n = next(_counter)
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[..., 0] = n % 256
    pixels[..., 1] = (n // 256) % 256
    pixels[0, 0, 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, comment=f"image {n}")
    return path


def wnids(n: int, start: int = 1) -> list[str]:
    return [f"n{start + i:08d}" for i in range(n)]


def folder_tree(root: Path, classes: list[str], train: int = 2, val: int = 1) -> Path:
    """ILSVRC2012 layout with val/<wnid>/ folders."""
    for w in classes:
        for i in range(train):
            tiny_jpeg(root / "train" / w / f"{w}_{i}.JPEG")
        for i in range(val):
            tiny_jpeg(root / "val" / w / f"{w}_val_{i}.JPEG")
    return root


def flat_val(root: Path, classes: list[str], per_class: int = 2) -> list[tuple[str, str]]:
    """Flat val/ with standard ILSVRC2012 names; returns (file stem, wnid) in file order."""
    labels = []
    for n, w in enumerate(c for c in classes for _ in range(per_class)):
        stem = f"ILSVRC2012_val_{n + 1:08d}"
        tiny_jpeg(root / "val" / f"{stem}.JPEG")
        labels.append((stem, w))
    return labels


def write_kaggle_csv(path: Path, labels: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "PredictionString"])
        for stem, w in labels:
            writer.writerow([stem, f"{w} 10 20 30 40 {w} 1 2 3 4"])


def write_meta_mat(path: Path, classes: list[str]) -> dict[str, int]:
    """A devkit-style meta.mat: leaves with ILSVRC2012_ID 1..N (in reverse wnid order, so that id
    order differs from label order) plus one inner synset; returns wnid -> id."""
    from scipy.io import savemat

    ids = {w: i + 1 for i, w in enumerate(reversed(classes))}
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = [(ids[w], w, f"thing {w}", 0) for w in reversed(classes)]
    rows.append((len(classes) + 1, "n99999999", "an inner node", 2))
    synsets = np.array(rows, dtype=dtype).reshape(-1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"synsets": synsets})
    return ids


def prepare(tmp_path: Path, root: Path, *extra: str, subset: str = "all") -> tuple[int, Path]:
    out = tmp_path / "prepared"
    rc = main(
        [
            "data",
            "prepare",
            "--root",
            str(root),
            "--subset",
            subset,
            "--out",
            str(out),
            "--workers",
            "1",
            *extra,
        ]
    )
    return rc, out


def rows(out: Path, split: str) -> list[dict]:
    with (out / f"{split}.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def assert_refused(tmp_path, capsys, root, *names, extra=(), subset="all"):
    """prepare exits 2, names every one of ``names`` in its message, and writes no output."""
    rc, out = prepare(tmp_path, root, *extra, subset=subset)
    err = capsys.readouterr().err
    assert rc == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    for name in names:
        assert str(name) in errors[0], errors[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".prepared")]
    return errors[0]


# Accepted layouts ---------------------------------------------------------------------------


def test_root_beside_the_output_moves_with_it_and_a_root_elsewhere_stays_absolute(tmp_path):
    from dwnas.data.manifest import dataset_root

    folder_tree(tmp_path / "a/raw", ["n00000001", "n00000002"], train=2, val=1)
    rc, out = prepare(tmp_path / "a", tmp_path / "a/raw")
    assert rc == 0
    shutil.move(tmp_path / "a", tmp_path / "b")  # a moved results folder
    moved = tmp_path / "b/prepared"
    assert json.loads((moved / "summary.json").read_text())["root"] == "../raw"
    assert dataset_root(moved).resolve() == (tmp_path / "b/raw").resolve()

    elsewhere = folder_tree(tmp_path / "data/raw", ["n00000001", "n00000002"], train=2, val=1)
    rc, out = prepare(tmp_path / "c", elsewhere)
    assert rc == 0
    assert json.loads((out / "summary.json").read_text())["root"] == str(elsewhere.absolute())
    assert dataset_root(out) == elsewhere.absolute()


def test_folder_layout_writes_manifests_classes_and_summary(tmp_path):
    root = folder_tree(tmp_path / "raw", ["n00000003", "n00000001", "n00000002"], train=3, val=2)
    (root / "train" / ".DS_Store").write_text("ignored: hidden")
    rc, out = prepare(tmp_path, root)
    assert rc == 0
    train = rows(out, "train")
    assert [r["wnid"] for r in train[::3]] == ["n00000001", "n00000002", "n00000003"]
    assert {(r["wnid"], r["label"]) for r in train} == {
        ("n00000001", "0"),
        ("n00000002", "1"),
        ("n00000003", "2"),
    }
    assert train[0]["path"] == "train/n00000001/n00000001_0.JPEG"
    assert (root / train[0]["path"]).is_file()
    assert rows(out, "val")[0]["path"] == "val/n00000001/n00000001_val_0.JPEG"
    classes = json.loads((out / "classes.json").read_text())
    assert classes == [
        {"index": i, "name": None, "wnid": w}
        for i, w in enumerate(["n00000001", "n00000002", "n00000003"])
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["root"] == "../raw"  # beside the prepared directory: recorded relative to it
    assert summary["num_classes"] == 3
    assert summary["counts"] == {"train": 9, "val": 6}
    assert summary["images_per_class"] == {
        "train": {"min": 3, "max": 3},
        "val": {"min": 2, "max": 2},
    }
    assert summary["val_layout"] == "folders"
    assert summary["skipped"] == [] and summary["skipped_counts"]["total"] == 0
    assert summary["verify"]["files"] == 15 and summary["verify"]["files_per_s"] > 0


def test_kaggle_csv_layout_and_synset_names(tmp_path):
    classes = wnids(3)
    root = folder_tree(tmp_path / "raw", classes, train=1, val=0)
    labels = flat_val(root, classes[::-1], per_class=2)
    write_kaggle_csv(root / "LOC_val_solution.csv", labels)
    (root / "LOC_synset_mapping.txt").write_text(
        "".join(f"{w} name of {w}, alias\n" for w in classes)
    )
    rc, out = prepare(tmp_path, root)
    assert rc == 0
    val = rows(out, "val")
    assert {(r["path"], r["wnid"]) for r in val} == {(f"val/{s}.JPEG", w) for s, w in labels}
    assert [r["label"] for r in val] == ["0", "0", "1", "1", "2", "2"]
    names = [c["name"] for c in json.loads((out / "classes.json").read_text())]
    assert names == [f"name of {w}, alias" for w in classes]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_layout"] == "flat+LOC_val_solution.csv"
    assert summary["label_file"] == str(root / "LOC_val_solution.csv")


def test_ground_truth_txt_with_meta_mat_in_devkit_folder(tmp_path):
    classes = wnids(4)
    root = folder_tree(tmp_path / "raw", classes, train=1, val=0)
    labels = flat_val(root, [classes[2], classes[0], classes[3], classes[1]], per_class=1)
    ids = write_meta_mat(root / "devkit" / "meta.mat", classes)
    (root / "devkit" / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{ids[w]}\n" for _, w in labels)
    )
    rc, out = prepare(tmp_path, root)
    assert rc == 0
    assert {(r["path"], r["wnid"]) for r in rows(out, "val")} == {
        (f"val/{s}.JPEG", w) for s, w in labels
    }
    classes_json = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in classes_json] == [f"thing {w}" for w in classes]
    assert json.loads((out / "summary.json").read_text())["val_layout"] == (
        "flat+ILSVRC2012_validation_ground_truth.txt"
    )


def test_devkit_option_is_searched_first(tmp_path):
    classes = wnids(2)
    root = folder_tree(tmp_path / "raw", classes, train=1, val=0)
    labels = flat_val(root, classes, per_class=1)
    write_kaggle_csv(tmp_path / "elsewhere" / "LOC_val_solution.csv", labels)
    rc, out = prepare(tmp_path, root, "--devkit", str(tmp_path / "elsewhere"))
    assert rc == 0
    assert len(rows(out, "val")) == 2


def test_imagenet_subset_needs_exactly_1000_classes(tmp_path, capsys):
    classes = wnids(1000)
    root = folder_tree(tmp_path / "raw", classes, train=1, val=1)
    rc, out = prepare(tmp_path, root, subset="imagenet")
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_classes"] == 1000 and summary["counts"] == {"train": 1000, "val": 1000}
    shutil.rmtree(out)
    shutil.rmtree(root / "train" / classes[-1])
    shutil.rmtree(root / "val" / classes[-1])
    err = assert_refused(tmp_path, capsys, root, root / "train", subset="imagenet")
    assert "exactly 1000" in err and "found 999" in err


def test_imagenet_subset_checks_folders_against_meta_mat(tmp_path, capsys):
    classes = wnids(1000)
    root = folder_tree(tmp_path / "raw", classes[:999] + ["n77777777"], train=1, val=1)
    write_meta_mat(root / "meta.mat", classes)
    assert_refused(tmp_path, capsys, root, root / "train" / classes[999], subset="imagenet")


def test_imagenet100_uses_the_cmc_list_in_sorted_order(tmp_path):
    cmc = default_classes_file().read_text().split()
    others = wnids(2, start=99_000_000)
    root = folder_tree(tmp_path / "raw", cmc + others, train=1, val=1)
    rc, out = prepare(tmp_path, root, subset="imagenet100")
    assert rc == 0
    classes = json.loads((out / "classes.json").read_text())
    assert [c["wnid"] for c in classes] == sorted(cmc)
    assert [c["index"] for c in classes] == list(range(100))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"train": 100, "val": 100}
    assert summary["val_excluded_other_classes"] == 2
    assert all(r["wnid"] in cmc for r in rows(out, "train"))


def test_imagenet100_refuses_a_class_list_with_another_hash(tmp_path, capsys):
    changed = tmp_path / "classes.txt"
    changed.write_text(default_classes_file().read_text().replace("n02869837", "n02869838"))
    root = folder_tree(tmp_path / "raw", wnids(2), train=1, val=1)
    err = assert_refused(
        tmp_path,
        capsys,
        root,
        changed,
        extra=("--classes-file", str(changed)),
        subset="imagenet100",
    )
    assert "sha256" in err


# Bad input: each refused with exit 2, the offending path named, nothing written ------------


def test_missing_root(tmp_path, capsys):
    assert_refused(tmp_path, capsys, tmp_path / "nowhere", tmp_path / "nowhere")


@pytest.mark.parametrize("split", ["train", "val"])
def test_missing_split(tmp_path, capsys, split):
    root = folder_tree(tmp_path / "raw", wnids(2))
    shutil.rmtree(root / split)
    assert_refused(tmp_path, capsys, root, root / split)


@pytest.mark.parametrize("split", ["train", "val"])
def test_empty_class_folder(tmp_path, capsys, split):
    root = folder_tree(tmp_path / "raw", wnids(2))
    for f in (root / split / "n00000002").iterdir():
        f.unlink()
    assert_refused(tmp_path, capsys, root, root / split / "n00000002", "empty class folder")


@pytest.mark.parametrize("name", ["cats", "n1234567", "n123456789"])
def test_folder_that_is_not_a_wnid(tmp_path, capsys, name):
    root = folder_tree(tmp_path / "raw", wnids(2))
    tiny_jpeg(root / "train" / name / "a.JPEG")
    assert_refused(tmp_path, capsys, root, root / "train" / name, "not a wnid")


def test_val_folder_without_a_train_class(tmp_path, capsys):
    root = folder_tree(tmp_path / "raw", wnids(2))
    tiny_jpeg(root / "val" / "n00000009" / "a.JPEG")
    assert_refused(tmp_path, capsys, root, root / "val" / "n00000009")


def test_subset_wnid_absent_from_train(tmp_path, capsys):
    cmc = sorted(default_classes_file().read_text().split())
    root = folder_tree(tmp_path / "raw", cmc[1:], train=1, val=1)
    assert_refused(tmp_path, capsys, root, root / "train" / cmc[0], subset="imagenet100")


def test_subset_wnid_absent_from_val(tmp_path, capsys):
    root = folder_tree(tmp_path / "raw", wnids(3))
    shutil.rmtree(root / "val" / "n00000003")
    assert_refused(tmp_path, capsys, root, root / "val" / "n00000003")


def kaggle_tree(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    classes = wnids(2)
    root = folder_tree(tmp_path / "raw", classes, train=1, val=0)
    return root, flat_val(root, classes, per_class=2)


def test_label_for_a_missing_image(tmp_path, capsys):
    root, labels = kaggle_tree(tmp_path)
    (root / "val" / f"{labels[1][0]}.JPEG").unlink()
    write_kaggle_csv(root / "LOC_val_solution.csv", labels)
    assert_refused(
        tmp_path, capsys, root, root / "val" / f"{labels[1][0]}.JPEG", root / "LOC_val_solution.csv"
    )


def test_image_with_no_label(tmp_path, capsys):
    root, labels = kaggle_tree(tmp_path)
    write_kaggle_csv(root / "LOC_val_solution.csv", labels[:-1])
    assert_refused(tmp_path, capsys, root, root / "val" / f"{labels[-1][0]}.JPEG", "no label")


def test_label_wnid_not_among_classes(tmp_path, capsys):
    root, labels = kaggle_tree(tmp_path)
    labels[0] = (labels[0][0], "n55555555")
    write_kaggle_csv(root / "LOC_val_solution.csv", labels)
    assert_refused(tmp_path, capsys, root, root / "LOC_val_solution.csv", "n55555555")


def test_ground_truth_line_for_a_missing_image(tmp_path, capsys):
    classes = wnids(2)
    root = folder_tree(tmp_path / "raw", classes, train=1, val=0)
    labels = flat_val(root, classes, per_class=2)
    ids = write_meta_mat(root / "meta.mat", classes)
    gt = root / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("".join(f"{ids[w]}\n" for _, w in labels) + f"{ids[classes[0]]}\n")
    assert_refused(tmp_path, capsys, root, root / "val" / "ILSVRC2012_val_00000005.JPEG", gt)


def test_ground_truth_without_meta_mat(tmp_path, capsys):
    root, labels = kaggle_tree(tmp_path)
    gt = root / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("1\n2\n1\n2\n")
    assert_refused(tmp_path, capsys, root, gt, "meta.mat", root / "devkit")


def test_flat_val_without_any_label_file(tmp_path, capsys):
    root, _ = kaggle_tree(tmp_path)
    assert_refused(tmp_path, capsys, root, root / "val", "LOC_val_solution.csv", root / "devkit")


def corrupt_cases(root: Path) -> dict[str, Path]:
    bad = root / "train" / "n00000001" / "bad.JPEG"
    good = (root / "train" / "n00000001" / "n00000001_0.JPEG").read_bytes()
    return {
        "truncated": good[: len(good) // 2],
        "corrupt": good[:200] + b"\x00" * 400,
        "not_image": b"this is a text file, not an image\n",
    }, bad


@pytest.mark.parametrize("case", ["truncated", "corrupt", "not_image"])
def test_bad_image_fails_by_default(tmp_path, capsys, case):
    root = folder_tree(tmp_path / "raw", wnids(2), train=2)
    payloads, bad = corrupt_cases(root)
    bad.write_bytes(payloads[case])
    assert_refused(tmp_path, capsys, root, bad, "--on-corrupt skip")


def test_non_image_file_with_another_extension(tmp_path, capsys):
    root = folder_tree(tmp_path / "raw", wnids(2))
    notes = root / "val" / "n00000002" / "notes.txt"
    notes.write_text("not an image")
    assert_refused(tmp_path, capsys, root, notes, "not an image")


def test_bad_images_skipped_and_counted(tmp_path):
    root = folder_tree(tmp_path / "raw", wnids(2), train=3)
    payloads, _ = corrupt_cases(root)
    for case, payload in payloads.items():
        (root / "train" / "n00000001" / f"{case}.JPEG").write_bytes(payload)
    rc, out = prepare(tmp_path, root, "--on-corrupt", "skip")
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_counts"] == {
        "total": 3,
        "corrupt": 2,
        "not_image": 1,
        "unreadable": 0,
        "duplicate": 0,
    }
    assert sorted(s["path"] for s in summary["skipped"]) == [
        f"train/n00000001/{c}.JPEG" for c in ("corrupt", "not_image", "truncated")
    ]
    assert summary["counts"]["train"] == 6
    assert all(
        "n00000001/n00000001_" in r["path"] or "n00000002" in r["path"] for r in rows(out, "train")
    )


def test_class_emptied_by_skipping_is_refused(tmp_path, capsys):
    root = folder_tree(tmp_path / "raw", wnids(2), train=1)
    (root / "train" / "n00000002" / "n00000002_0.JPEG").write_bytes(b"broken")
    assert_refused(
        tmp_path, capsys, root, root / "train" / "n00000002", extra=("--on-corrupt", "skip")
    )


def test_same_image_in_train_and_val(tmp_path, capsys):
    root = folder_tree(tmp_path / "raw", wnids(2))
    train_copy = root / "train" / "n00000001" / "n00000001_1.JPEG"
    val_copy = root / "val" / "n00000002" / "copy.JPEG"
    shutil.copy(train_copy, val_copy)
    assert_refused(tmp_path, capsys, root, train_copy, val_copy, "same image in train and val")
    rc, out = prepare(tmp_path, root, "--on-duplicate", "skip")
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_counts"]["duplicate"] == 1
    assert "val/n00000002/copy.JPEG" not in {r["path"] for r in rows(out, "val")}


def test_parallel_verification_matches_serial(tmp_path):
    root = folder_tree(tmp_path / "raw", wnids(8), train=12, val=2)
    (root / "train" / "n00000003" / "bad.JPEG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out_serial, out_parallel = tmp_path / "serial", tmp_path / "parallel"
    common = ["data", "prepare", "--root", str(root), "--subset", "all", "--on-corrupt", "skip"]
    assert main([*common, "--out", str(out_serial), "--workers", "1"]) == 0
    assert main([*common, "--out", str(out_parallel), "--workers", "2"]) == 0
    for name in ("train.csv", "val.csv", "classes.json"):
        assert (out_serial / name).read_bytes() == (out_parallel / name).read_bytes()
    summary = json.loads((out_parallel / "summary.json").read_text())
    assert summary["verify"]["workers"] == 2
    assert summary["skipped"][0]["path"] == "train/n00000003/bad.JPEG"
