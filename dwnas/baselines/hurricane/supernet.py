"""HURRICANE's single-path one-shot (SPOS) supernet: one independent module per layer and kept
operator, one path per forward, its checkpoint, and the extraction of a path as a plain network."""

from __future__ import annotations

import copy
import json

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dwnas.baselines.hurricane.ops import SKIP, Op, OpBlock, fixed_parts, layers_of
from dwnas.errors import DwnasError

FORMAT = "dwnas-hurricane-supernet"


class OpSupernet(nn.Module):
    """One independent module per layer and allowed operator; ``forward(x, path)`` runs one path."""

    def __init__(self, space, choices: list[list[str]], num_classes: int):
        super().__init__()
        from dwnas.nn.static import init_weights

        self.space, self.choices, self.num_classes = space, [list(c) for c in choices], num_classes
        self.stem, head = fixed_parts(space, num_classes)
        self.head, self.classifier = head[0], head[3]
        self.layers = nn.ModuleList(
            nn.ModuleDict({name: OpBlock(layer.in_channels, layer.out_channels, layer.stride,
                                         Op.parse(name))
                           for name in allowed if name != SKIP})
            for layer, allowed in zip(layers_of(space), self.choices, strict=True))
        init_weights(self)

    def check(self, path) -> None:
        problems = [f"layer {i}: {choice!r} not among {allowed}"
                    for i, (choice, allowed) in enumerate(zip(path, self.choices, strict=False))
                    if choice not in allowed]
        if len(path) != len(self.choices):
            problems.insert(0, f"path has {len(path)} layers, the supernet {len(self.choices)}")
        if problems:
            raise DwnasError("hurricane: invalid path:\n  " + "\n  ".join(problems))

    def forward(self, x: Tensor, path) -> Tensor:
        x = self.stem(x)
        for layer, choice in zip(self.layers, path, strict=True):
            if choice != SKIP:
                x = layer[choice](x)
        x = torch.flatten(F.adaptive_avg_pool2d(self.head(x), 1), 1)
        return self.classifier(x)

    def extract(self, path):
        """The path as a plain :class:`~dwnas.nn.static.StaticNet` (own copies of the weights)."""
        from dwnas.nn.static import StaticNet

        self.check(path)
        features = [copy.deepcopy(m) for m in self.stem]
        features += [copy.deepcopy(layer[c]) for layer, c in zip(self.layers, path, strict=True)
                     if c != SKIP]
        features.append(copy.deepcopy(self.head))
        net = StaticNet(features, copy.deepcopy(self.classifier), 0.0, json.dumps(list(path)))
        return net.train(self.training)

    def checkpoint(self, extra: dict) -> dict:
        return {"format": FORMAT, "space": self.space.to_dict(), "choices": self.choices,
                "num_classes": self.num_classes, "state_dict": self.state_dict(), "extra": extra}

    @classmethod
    def load(cls, path) -> tuple[OpSupernet, dict]:
        from pathlib import Path

        from dwnas.space import Space

        path = Path(path)
        if not path.is_file():
            raise DwnasError(f"{path}: HURRICANE supernet not found")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a file that is not an archive
            raise DwnasError(f"{path}: not a HURRICANE supernet ({type(exc).__name__})") from exc
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise DwnasError(f"{path}: not a HURRICANE supernet (no format={FORMAT!r} marker)")
        net = cls(Space.from_dict(ckpt["space"]), ckpt["choices"], ckpt["num_classes"])
        net.load_state_dict(ckpt["state_dict"])
        return net.eval(), ckpt
