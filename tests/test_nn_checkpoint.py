"""Supernet checkpoints and ``dwnas supernet init``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml

from dwnas.cli import main
from dwnas.errors import DwnasError
from dwnas.nn.checkpoint import load_supernet, read_checkpoint, save_supernet
from dwnas.nn.supernet import Supernet
from dwnas.space import Space

REPO = Path(__file__).resolve().parents[1]


def space_of(name: str) -> Space:
    return Space.from_params(yaml.safe_load((REPO / "params" / f"{name}.yaml").read_text())["space"])


def test_save_and_load_round_trip(tmp_path):
    space = space_of("smoke")
    torch.manual_seed(0)
    net = Supernet(space, num_classes=3, dropout=0.1)
    path = tmp_path / "sub" / "supernet.pt"
    save_supernet(path, net, {"step": 7, "top1": 0.5})
    assert [p.name for p in path.parent.iterdir()] == ["supernet.pt"]  # no temporary left
    loaded, ckpt = load_supernet(path, expect_space=space)
    assert not loaded.training
    assert (loaded.num_classes, loaded.dropout, loaded.space) == (3, 0.1, space)
    assert ckpt["extra"] == {"step": 7, "top1": 0.5}
    assert ckpt["fingerprint"] == space.fingerprint()
    arch = space.sample(random.Random(0))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x, arch), net.eval()(x, arch))


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(DwnasError, match="checkpoint not found"):
        load_supernet(tmp_path / "missing.pt")
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(DwnasError, match="not a dwnas supernet checkpoint"):
        load_supernet(text)
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(DwnasError, match="no format='dwnas-supernet' marker"):
        load_supernet(plain)
    smoke, default = space_of("smoke"), space_of("default")
    path = tmp_path / "smoke.pt"
    save_supernet(path, Supernet(smoke, 2))
    with pytest.raises(DwnasError) as info:
        load_supernet(path, expect_space=default)
    assert smoke.fingerprint() in str(info.value) and default.fingerprint() in str(info.value)
    ckpt = read_checkpoint(path)
    ckpt["fingerprint"] = "0" * 16
    torch.save(ckpt, tmp_path / "tampered.pt")
    with pytest.raises(DwnasError, match="damaged dwnas checkpoint"):
        load_supernet(tmp_path / "tampered.pt")


def test_cli_supernet_init(tmp_path, capsys):
    out = tmp_path / "init.pt"
    assert main(["supernet", "init", "--params", str(REPO / "params/smoke.yaml"),
                 "--num-classes", "4", "--out", str(out)]) == 0
    net, ckpt = load_supernet(out, expect_space=space_of("smoke"))
    assert net.num_classes == 4 and ckpt["extra"]["stage"] == "init"
    assert space_of("smoke").fingerprint() in capsys.readouterr().out
    again = tmp_path / "again.pt"
    main(["supernet", "init", "--params", str(REPO / "params/smoke.yaml"),
          "--num-classes", "4", "--out", str(again)])
    a, b = read_checkpoint(out)["state_dict"], read_checkpoint(again)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded from the params file


def test_cli_supernet_init_bad_input(tmp_path, capsys):
    out = tmp_path / "x.pt"
    assert main(["supernet", "init", "--params", str(tmp_path / "none.yaml"),
                 "--num-classes", "4", "--out", str(out)]) == 2
    assert "none.yaml not found" in capsys.readouterr().err
    assert main(["supernet", "init", "--params", str(REPO / "params/smoke.yaml"),
                 "--num-classes", "0", "--out", str(out)]) == 2
    assert "--num-classes must be >= 1" in capsys.readouterr().err
    assert not out.exists()
