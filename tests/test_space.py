"""Search space: construction, size, the arch encoding, validation, sampling and evolution."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from dwnas.errors import DwnasError
from dwnas.space import Arch, BlockArch, Space, make_divisible

REPO = Path(__file__).resolve().parents[1]

MOBILENET_V2_DEPTHS = (2, 3, 4, 3, 3, 1)


def space_of(name: str) -> Space:
    return Space.from_params(yaml.safe_load((REPO / "params" / f"{name}.yaml").read_text())["space"])


def mobilenet_v2_arch(resolution: int = 224) -> Arch:
    return Arch(tuple(tuple(BlockArch(3, 6, False) for _ in range(d)) for d in MOBILENET_V2_DEPTHS),
                resolution)


@pytest.fixture(scope="module")
def imagenet() -> Space:
    return space_of("imagenet")


@pytest.fixture(scope="module")
def smoke() -> Space:
    return space_of("smoke")


def test_make_divisible_matches_torchvision():
    from torchvision.models._utils import _make_divisible

    for value in [3, 8, 12, 16 * 0.35, 24 * 0.75, 32 * 1.4, 96 * 0.5, 1280 * 1.3, 320 * 0.35]:
        assert make_divisible(value) == _make_divisible(value, 8)


def test_mobilenet_v2_is_a_member_of_the_imagenet_space(imagenet):
    arch = mobilenet_v2_arch()
    assert imagenet.problems(arch) == []
    assert [imagenet.stage_out(s) for s in range(6)] == [24, 32, 64, 96, 160, 320]
    assert (imagenet.stem_out, imagenet.first_out, imagenet.head_out) == (32, 16, 1280)
    assert 3 in imagenet.stages[3].depths and 3 in imagenet.stages[4].depths
    assert imagenet.stages[5].depths == (1,)


def test_width_multiplier_rounds_channels_like_mobilenet_v2(imagenet):
    section = {**imagenet.to_dict(), "width_mult": 0.75}
    narrow = Space.from_params(section)
    assert [narrow.stage_out(s) for s in range(6)] == [24, 24, 48, 72, 120, 240]
    assert narrow.stem_out == 24 and narrow.head_out == 1280
    assert Space.from_params({**section, "width_mult": 1.4}).head_out == 1792


def test_size_is_the_exact_count(smoke, imagenet):
    # smoke: per block 2 kernels x 2 expands x 2 linear = 8; depths {1, 2}: 8 + 64 = 72 per stage
    assert smoke.resolutions() == [32, 36, 40]
    assert smoke.size() == 72 * 72 * 3
    per_block = 3 * 3 * 2
    deep_stage = per_block**2 + per_block**3 + per_block**4
    assert imagenet.size() == deep_stage**5 * per_block * len(range(128, 225, 4))
    assert isinstance(imagenet.size(), int)


def test_small_space_size_matches_enumeration():
    section = {"width_mult": 1.0, "stem_channels": 8,
               "first_block": {"channels": 8, "expand": 1, "kernel": 3},
               "stages": [{"channels": 8, "stride": 2, "depths": [1, 2], "kernels": [3, 5],
                           "expands": [3]}],
               "head_channels": 16, "linear": [True, False],
               "resolution": {"min": 32, "max": 40, "step": 8}}
    space = Space.from_params(section)
    rng = random.Random(0)
    seen = {space.sample(rng) for _ in range(2000)}
    assert len(seen) == space.size() == (4 + 16) * 2


def test_arch_json_round_trips_exactly(imagenet):
    rng = random.Random(1)
    for _ in range(50):
        arch = imagenet.sample(rng)
        assert Arch.from_json(arch.to_json()) == arch
        assert Arch.from_json(arch.to_json(indent=2)) == arch
        assert json.loads(arch.to_json())["resolution"] == arch.resolution


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"stages": []}', "resolution: missing required key"),
        ('{"stages": [], "resolution": "224"}', "resolution: must be an integer"),
        ('{"stages": [[{"kernel": 3, "expand": 6}]], "resolution": 32}',
         "stages[0][0].linear: missing required key"),
        ('{"stages": [[{"kernel": 3, "expand": 6, "linear": 1}]], "resolution": 32}',
         "stages[0][0].linear: must be true or false"),
        ('{"stages": [[{"kernel": 3.0, "expand": 6, "linear": true}]], "resolution": 32}',
         "stages[0][0].kernel: must be an integer"),
        ('{"stages": [], "resolution": 32, "width": 1}', "width: unknown key"),
        ('{"stages": [', "not valid JSON"),
    ],
)
def test_malformed_arch_documents_are_refused_by_path(doc, message):
    with pytest.raises(DwnasError) as info:
        Arch.from_json(doc)
    assert message in str(info.value)


def test_validation_names_stage_block_field_and_allowed_values(smoke):
    good = smoke.largest()
    bad = Arch(((BlockArch(7, 6, False), BlockArch(3, 4, False)), good.stages[1]), 33)
    with pytest.raises(DwnasError) as info:
        smoke.validate(bad)
    text = str(info.value)
    assert "stages[0][0].kernel: 7 not allowed (allowed: [3, 5])" in text
    assert "stages[0][1].expand: 4 not allowed (allowed: [3, 6])" in text
    assert "resolution: 33 not allowed" in text
    deep = Arch((good.stages[0] * 2, good.stages[1]), 32)
    assert smoke.problems(deep) == ["stages[0]: depth 4 not allowed (allowed: [1, 2])"]
    one_stage = Arch(good.stages[:1], 32)
    assert smoke.problems(one_stage) == ["arch has 1 stage(s), the space has 2"]
    deep_only = Space.from_params({**smoke.to_dict(), "linear": [False]})
    linear = Arch(tuple(tuple(BlockArch(3, 3, True) for _ in s) for s in good.stages), 32)
    assert "stages[0][0].linear: true not allowed (allowed: [false])" in deep_only.problems(linear)


def test_largest_and_smallest(imagenet):
    big, small = imagenet.largest(), imagenet.smallest()
    assert big.depths == (4, 4, 4, 4, 4, 1) and small.depths == (2, 2, 2, 2, 2, 1)
    assert {(b.kernel, b.expand, b.linear) for b in big.blocks} == {(7, 6, False)}
    assert {(b.kernel, b.expand, b.linear) for b in small.blocks} == {(3, 3, False)}
    assert (big.resolution, small.resolution) == (224, 128)
    linear_only = Space.from_params({**imagenet.to_dict(), "linear": [True]})
    assert all(b.linear for b in linear_only.largest().blocks)


def test_sample_mutate_crossover_stay_in_the_space(imagenet):
    for rng in (random.Random(0), np.random.default_rng(0)):
        parents = [imagenet.sample(rng) for _ in range(20)]
        for a, b in zip(parents, parents[1:], strict=False):
            child = imagenet.crossover(a, b, rng)
            mutant = imagenet.mutate(a, rng, p=0.3, p_res=0.5)
            for arch in (a, child, mutant):
                assert imagenet.contains(arch)
                assert Arch.from_json(arch.to_json()) == arch  # plain ints and bools, even via numpy


def test_mutate_and_crossover_change_what_they_should(imagenet):
    rng = random.Random(3)
    a = imagenet.sample(rng)
    assert imagenet.mutate(a, rng, p=0.0, p_res=0.0) == a
    mutants = {imagenet.mutate(a, rng, p=1.0, p_res=1.0) for _ in range(10)}
    assert len(mutants) == 10
    b = imagenet.sample(rng)
    children = [imagenet.crossover(a, b, rng) for _ in range(30)]
    for child in children:
        for s, stage in enumerate(child.stages):
            assert len(stage) in (len(a.stages[s]), len(b.stages[s]))
            for i, block in enumerate(stage):
                assert block in [p.stages[s][i] for p in (a, b) if i < len(p.stages[s])]
        assert child.resolution in (a.resolution, b.resolution)
    with pytest.raises(DwnasError, match="outside the search space"):
        imagenet.mutate(Arch(a.stages[:2], a.resolution), rng)


def test_sampling_is_reproducible_from_the_seed(imagenet):
    first = [imagenet.sample(random.Random(7)) for _ in range(2)]
    assert first[0] == first[1]
    assert imagenet.sample(random.Random(8)) != first[0]


def test_fingerprint_and_dict_round_trip(smoke, imagenet):
    assert Space.from_dict(smoke.to_dict()) == smoke
    assert smoke.fingerprint() == space_of("smoke").fingerprint()
    assert smoke.fingerprint() != imagenet.fingerprint()
    reordered = smoke.to_dict()
    reordered["stages"][0]["kernels"] = [5, 3]
    assert Space.from_params(reordered).fingerprint() == smoke.fingerprint()
    wider = {**smoke.to_dict(), "width_mult": 1.5}
    assert Space.from_params(wider).fingerprint() != smoke.fingerprint()
    assert len(smoke.fingerprint()) == 16


def test_from_params_refuses_the_whole_params_mapping_and_bad_sections():
    params = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    with pytest.raises(DwnasError, match=r"pass params\['space'\]"):
        Space.from_params(params)
    with pytest.raises(DwnasError, match="malformed section"):
        Space.from_params({"stages": []})
    broken = {**params["space"], "stages": [{**params["space"]["stages"][0], "kernels": [4]}]}
    with pytest.raises(DwnasError, match=r"space.stages\[0\].kernels: must be odd"):
        Space.from_params(broken)
