"""The search space and the architecture encoding.

Macro structure (MobileNetV2 / ProxylessNAS): stem conv 3x3 stride 2 -> one fixed MBConv ->
searchable stages of MBConv blocks -> 1x1 head conv -> global pooling -> classifier. Channel counts
are scaled by ``width_mult`` and rounded with :func:`make_divisible` exactly as torchvision's
MobileNetV2 does, so that MobileNetV2 itself is a member of a space such as params/imagenet.yaml's.

Per block the search picks a kernel, an expand ratio and a ``linear`` flag (activations dropped,
hence mergeable into one convolution); per stage a depth; per network an input resolution.

An :class:`Arch` is a small JSON document that round-trips exactly::

    {"resolution": 224,
     "stages": [[{"expand": 6, "kernel": 3, "linear": false}, ...], ...]}

Random choices accept a ``random.Random`` or a ``numpy.random.Generator``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from dwnas.errors import DwnasError


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% below ``value``.

    The same rule as torchvision's ``_make_divisible`` (from the TensorFlow MobileNet code).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _index(rng: Any, n: int) -> int:
    if hasattr(rng, "integers"):  # numpy.random.Generator
        return int(rng.integers(n))
    return rng.randrange(n)


def _pick(rng: Any, choices: tuple) -> Any:
    return choices[_index(rng, len(choices))]


def _coin(rng: Any, p: float) -> bool:
    return float(rng.random()) < p


# --------------------------------------------------------------------------------------------
# Architecture encoding


@dataclass(frozen=True)
class BlockArch:
    """One searchable MBConv block: depthwise kernel, expand ratio, activations dropped or not."""

    kernel: int
    expand: int
    linear: bool

    def to_dict(self) -> dict:
        return {"kernel": self.kernel, "expand": self.expand, "linear": self.linear}


@dataclass(frozen=True)
class Arch:
    """A sub-network of a :class:`Space`: per stage a tuple of blocks, plus the input resolution."""

    stages: tuple[tuple[BlockArch, ...], ...]
    resolution: int

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(stage) for stage in self.stages)

    @property
    def blocks(self) -> tuple[BlockArch, ...]:
        return tuple(block for stage in self.stages for block in stage)

    @property
    def num_linear(self) -> int:
        return sum(block.linear for block in self.blocks)

    def with_resolution(self, resolution: int) -> Arch:
        return Arch(self.stages, int(resolution))

    def to_dict(self) -> dict:
        return {
            "resolution": self.resolution,
            "stages": [[block.to_dict() for block in stage] for stage in self.stages],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, source: str = "arch") -> Arch:
        """Parse an arch document; every structural problem is reported by its JSON path."""
        if not isinstance(data, dict):
            raise DwnasError(f"{source}: must be a JSON object with 'stages' and 'resolution', "
                             f"got {type(data).__name__}")
        problems = [f"{key}: unknown key" for key in sorted(set(data) - {"stages", "resolution"})]
        problems += [f"{key}: missing required key"
                     for key in ("stages", "resolution") if key not in data]
        resolution = data.get("resolution")
        if "resolution" in data and not _is_int(resolution):
            problems.append(f"resolution: must be an integer (got {json.dumps(resolution)})")
        stages_data = data.get("stages")
        stages: list[tuple[BlockArch, ...]] = []
        if "stages" in data and not isinstance(stages_data, list):
            problems.append(f"stages: must be a list of stages (got {json.dumps(stages_data)})")
        elif isinstance(stages_data, list):
            for s, stage in enumerate(stages_data):
                if not isinstance(stage, list):
                    problems.append(f"stages[{s}]: must be a list of blocks")
                    continue
                blocks = []
                for b, block in enumerate(stage):
                    where = f"stages[{s}][{b}]"
                    parsed = _parse_block(block, where, problems)
                    if parsed is not None:
                        blocks.append(parsed)
                stages.append(tuple(blocks))
        if problems:
            raise DwnasError(f"{source}: invalid architecture:\n  " + "\n  ".join(problems))
        return cls(tuple(stages), int(resolution))

    @classmethod
    def from_json(cls, text: str, source: str = "arch") -> Arch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DwnasError(f"{source}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path) -> Arch:
        """Read an arch JSON file (missing file, bad JSON, bad structure -> DwnasError)."""
        from dwnas.io import read_json

        return cls.from_dict(read_json(path), str(path))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_block(block: Any, where: str, problems: list[str]) -> BlockArch | None:
    if not isinstance(block, dict):
        problems.append(f"{where}: must be an object {{kernel, expand, linear}}")
        return None
    fields = {"kernel", "expand", "linear"}
    before = len(problems)
    problems += [f"{where}.{key}: unknown key" for key in sorted(set(block) - fields)]
    problems += [f"{where}.{key}: missing required key" for key in sorted(fields - set(block))]
    for key in ("kernel", "expand"):
        if key in block and not _is_int(block[key]):
            problems.append(f"{where}.{key}: must be an integer (got {json.dumps(block[key])})")
    if "linear" in block and not isinstance(block["linear"], bool):
        problems.append(f"{where}.linear: must be true or false (got {json.dumps(block['linear'])})")
    if len(problems) > before:
        return None
    return BlockArch(block["kernel"], block["expand"], block["linear"])


# --------------------------------------------------------------------------------------------
# The space


@dataclass(frozen=True)
class StageSpace:
    """One searchable stage: output channels (before width scaling), stride and the choice lists."""

    channels: int
    stride: int
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"channels": self.channels, "stride": self.stride, "depths": list(self.depths),
                "kernels": list(self.kernels), "expands": list(self.expands)}


@dataclass(frozen=True)
class FirstBlock:
    """The fixed MBConv after the stem (MobileNetV2: expand 1, kernel 3, 16 channels)."""

    channels: int
    expand: int
    kernel: int


@dataclass(frozen=True)
class Space:
    """The search space: macro structure plus the choice lists, from the params ``space`` section.

    Choice lists are kept sorted, so two params files that list the same choices in another order
    describe the same space and share a :meth:`fingerprint`.
    """

    width_mult: float
    stem_channels: int
    first_block: FirstBlock
    stages: tuple[StageSpace, ...]
    head_channels: int
    linear: tuple[bool, ...]
    resolution_min: int
    resolution_max: int
    resolution_step: int

    # ---- construction and identity --------------------------------------------------------

    @classmethod
    def from_params(cls, section: Any) -> Space:
        """Build from the params ``space`` section (a dict already checked by the params schema)."""
        if not isinstance(section, dict):
            raise DwnasError(f"space: must be a mapping (the params 'space' section), "
                             f"got {type(section).__name__}")
        if "space" in section and "stages" not in section:
            raise DwnasError("space: got a whole params mapping; pass params['space']")
        try:
            fb = section["first_block"]
            res = section["resolution"]
            space = cls(
                width_mult=float(section["width_mult"]),
                stem_channels=int(section["stem_channels"]),
                first_block=FirstBlock(int(fb["channels"]), int(fb["expand"]), int(fb["kernel"])),
                stages=tuple(
                    StageSpace(
                        channels=int(st["channels"]),
                        stride=int(st["stride"]),
                        depths=tuple(sorted(int(d) for d in st["depths"])),
                        kernels=tuple(sorted(int(k) for k in st["kernels"])),
                        expands=tuple(sorted(int(e) for e in st["expands"])),
                    )
                    for st in section["stages"]
                ),
                head_channels=int(section["head_channels"]),
                linear=tuple(sorted(bool(v) for v in section["linear"])),
                resolution_min=int(res["min"]),
                resolution_max=int(res["max"]),
                resolution_step=int(res["step"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DwnasError(f"space: malformed section ({type(exc).__name__}: {exc})") from exc
        space._check()
        return space

    from_dict = from_params

    def _check(self) -> None:
        problems = []
        if not self.stages:
            problems.append("space.stages: must have at least one stage")
        for s, st in enumerate(self.stages):
            for name in ("depths", "kernels", "expands"):
                values = getattr(st, name)
                if not values or min(values) < 1:
                    problems.append(f"space.stages[{s}].{name}: must be a non-empty list of "
                                    f"positive integers (got {list(values)})")
            if any(k % 2 == 0 for k in st.kernels):
                problems.append(f"space.stages[{s}].kernels: must be odd (got {list(st.kernels)})")
            if st.stride not in (1, 2):
                problems.append(f"space.stages[{s}].stride: must be 1 or 2 (got {st.stride})")
        if self.first_block.kernel % 2 == 0:
            problems.append("space.first_block.kernel: must be odd")
        if not self.linear:
            problems.append("space.linear: must allow at least one value")
        if self.resolution_min > self.resolution_max or self.resolution_step < 1:
            problems.append("space.resolution: needs min <= max and step >= 1")
        if problems:
            raise DwnasError("invalid space:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict:
        """The params ``space`` section this space was built from (choice lists sorted)."""
        return {
            "width_mult": self.width_mult,
            "stem_channels": self.stem_channels,
            "first_block": {"channels": self.first_block.channels,
                            "expand": self.first_block.expand, "kernel": self.first_block.kernel},
            "stages": [st.to_dict() for st in self.stages],
            "head_channels": self.head_channels,
            "linear": list(self.linear),
            "resolution": {"min": self.resolution_min, "max": self.resolution_max,
                           "step": self.resolution_step},
        }

    def fingerprint(self) -> str:
        """A stable 16-hex-digit hash of :meth:`to_dict`: tells checkpoints of another space apart."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    # ---- channel plan -----------------------------------------------------------------------

    def channels(self, base: int) -> int:
        return make_divisible(base * self.width_mult)

    @property
    def stem_out(self) -> int:
        return self.channels(self.stem_channels)

    @property
    def first_out(self) -> int:
        return self.channels(self.first_block.channels)

    def stage_out(self, s: int) -> int:
        return self.channels(self.stages[s].channels)

    def stage_in(self, s: int) -> int:
        return self.first_out if s == 0 else self.stage_out(s - 1)

    @property
    def head_out(self) -> int:
        """Head channels, never narrowed below the params value (torchvision's ``last_channel``)."""
        return make_divisible(self.head_channels * max(1.0, self.width_mult))

    # ---- size and membership ----------------------------------------------------------------

    def resolutions(self) -> list[int]:
        return list(range(self.resolution_min, self.resolution_max + 1, self.resolution_step))

    def size(self) -> int:
        """Number of distinct architectures (exact), resolutions counted."""
        total = len(self.resolutions())
        for st in self.stages:
            per_block = len(st.kernels) * len(st.expands) * len(self.linear)
            total *= sum(per_block**d for d in st.depths)
        return total

    def problems(self, arch: Arch) -> list[str]:
        """Every way ``arch`` falls outside this space, as ``stages[s][b].field`` messages."""
        out = []
        if len(arch.stages) != len(self.stages):
            return [f"arch has {len(arch.stages)} stage(s), the space has {len(self.stages)}"]
        for s, (stage, st) in enumerate(zip(arch.stages, self.stages, strict=True)):
            if len(stage) not in st.depths:
                out.append(f"stages[{s}]: depth {len(stage)} not allowed "
                           f"(allowed: {list(st.depths)})")
            for b, block in enumerate(stage):
                for field, allowed in (("kernel", st.kernels), ("expand", st.expands),
                                       ("linear", self.linear)):
                    value = getattr(block, field)
                    if value not in allowed:
                        out.append(f"stages[{s}][{b}].{field}: {json.dumps(value)} not allowed "
                                   f"(allowed: {json.dumps(list(allowed))})")
        if arch.resolution not in self.resolutions():
            out.append(f"resolution: {arch.resolution} not allowed (allowed: every "
                       f"{self.resolution_step} from {self.resolution_min} to {self.resolution_max})")
        return out

    def contains(self, arch: Arch) -> bool:
        return not self.problems(arch)

    def validate(self, arch: Arch, source: str = "arch") -> Arch:
        """Return ``arch`` if it belongs to the space, else raise DwnasError naming each problem."""
        problems = self.problems(arch)
        if problems:
            raise DwnasError(f"{source} is outside the search space (fingerprint "
                             f"{self.fingerprint()}):\n  " + "\n  ".join(problems))
        return arch

    # ---- sampling and evolution -------------------------------------------------------------

    def _sample_block(self, st: StageSpace, rng: Any) -> BlockArch:
        return BlockArch(_pick(rng, st.kernels), _pick(rng, st.expands), _pick(rng, self.linear))

    def sample(self, rng: Any) -> Arch:
        """A uniformly random depth per stage, uniformly random choices per block and resolution."""
        stages = tuple(
            tuple(self._sample_block(st, rng) for _ in range(_pick(rng, st.depths)))
            for st in self.stages
        )
        return Arch(stages, _pick(rng, tuple(self.resolutions())))

    def largest(self) -> Arch:
        """Max depth, kernel and expand, activations kept where allowed: the largest deep subnet."""
        linear = False not in self.linear  # deep (activations kept) wherever allowed
        stages = tuple(
            tuple(BlockArch(max(st.kernels), max(st.expands), linear) for _ in range(max(st.depths)))
            for st in self.stages
        )
        return Arch(stages, self.resolution_max)

    def smallest(self) -> Arch:
        """Min depth, kernel, expand and resolution; activations kept where allowed."""
        linear = False not in self.linear  # deep (activations kept) wherever allowed
        stages = tuple(
            tuple(BlockArch(min(st.kernels), min(st.expands), linear) for _ in range(min(st.depths)))
            for st in self.stages
        )
        return Arch(stages, self.resolution_min)

    def mutate(self, arch: Arch, rng: Any, p: float = 0.1, p_res: float = 0.5) -> Arch:
        """Once-for-All mutation: each stage depth and each block choice is resampled with
        probability ``p``, the resolution with ``p_res``. New blocks (a deeper stage) are sampled."""
        self.validate(arch)
        stages = []
        for stage, st in zip(arch.stages, self.stages, strict=True):
            depth = _pick(rng, st.depths) if _coin(rng, p) else len(stage)
            blocks = []
            for b in range(depth):
                if b < len(stage):
                    old = stage[b]
                    blocks.append(BlockArch(
                        _pick(rng, st.kernels) if _coin(rng, p) else old.kernel,
                        _pick(rng, st.expands) if _coin(rng, p) else old.expand,
                        _pick(rng, self.linear) if _coin(rng, p) else old.linear,
                    ))
                else:
                    blocks.append(self._sample_block(st, rng))
            stages.append(tuple(blocks))
        resolution = _pick(rng, tuple(self.resolutions())) if _coin(rng, p_res) else arch.resolution
        return Arch(tuple(stages), resolution)

    def crossover(self, a: Arch, b: Arch, rng: Any) -> Arch:
        """Per stage, the depth of a random parent; per block, the block of a random parent that
        has it; the resolution of a random parent. The child is always a member of the space."""
        self.validate(a)
        self.validate(b)
        stages = []
        for sa, sb in zip(a.stages, b.stages, strict=True):
            depth = len(sa) if _coin(rng, 0.5) else len(sb)
            blocks = []
            for i in range(depth):
                options = [s[i] for s in (sa, sb) if i < len(s)]
                blocks.append(options[_index(rng, len(options))])
            stages.append(tuple(blocks))
        resolution = a.resolution if _coin(rng, 0.5) else b.resolution
        return Arch(tuple(stages), resolution)
