"""Park et al. sweet spot: bounds against the closed form, curve, errors."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from perfmodel import sweet_spot
from perfmodel.targets import CATALOG_DIR


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path))
    doc = yaml.safe_load((CATALOG_DIR / "atom-c2750.yaml").read_text())
    doc["name"] = "toy"
    doc["compute"]["fp32"]["value"] = "100 GFLOP/s"
    doc["memory"] = [{"name": "DRAM", "bandwidth": {"value": "10 GB/s", "kind": "assumed",
                                                    "source": "test"}}]
    doc["model"]["sparse_alpha"]["value"] = 2.0
    (tmp_path / "machines").mkdir()
    (tmp_path / "machines" / "toy.yaml").write_text(yaml.safe_dump(doc))


def test_closed_form_compute_bound_layer():
    # C = 2 m n k = 2^31 FLOP -> 21.5 ms at 100 GFLOP/s; bytes ~ 12 MB -> 1.2 ms: compute
    m = n = k = 1024
    spot = sweet_spot("spmm", target="toy", m=m, n=n, k=k)
    assert spot.alpha == pytest.approx(2.0) and spot.beta == pytest.approx(2.0)
    assert spot.lower == pytest.approx(0.5)            # x_lower = 1 / alpha
    c, s_a, s_w = 2.0 * m * n * k, 8.0 * m * n, 4.0 * m * k
    x_up = (s_a / 10e9) / (2.0 * c / 100e9 - 2.0 * s_w / 10e9)
    assert spot.upper == pytest.approx(1 - x_up)
    assert spot.lower < spot.upper and not spot.empty
    assert spot.speedup(spot.lower) == pytest.approx(1.0)
    assert spot.speedup(0.25) < 1.0 < spot.speedup(0.75)
    # beyond the upper bound the sparse kernel is bandwidth-bound: speedup saturates
    assert spot.speedup(0.999) < (s_a + s_w) / s_a * 1.01 * max(1.0, c / 100e9 / (
        (s_a + s_w) / 10e9))


def test_curve_is_monotone_and_indexed_by_sparsity():
    spot = sweet_spot("conv2d", target="toy", c=64, h=28, w=28, o=64, r=3, s=3, padding=1)
    curve = spot.curve
    assert curve.index.name == "sparsity" and curve.index[0] == 0.0
    assert np.all(np.diff(curve.to_numpy()) >= -1e-12)
    assert curve.iloc[0] == pytest.approx(1 / 2.0, rel=0.05)


def test_bandwidth_bound_layer_never_wins():
    # m = 1 row of weights times a wide activation: dense is bandwidth-bound and the
    # activation traffic alone exceeds the dense time -> sparse cannot win by much
    spot = sweet_spot("spmm", target="toy", m=1, n=4096, k=4096)
    assert spot.upper <= 0.05
    assert spot.lower is None or spot.lower > spot.upper or spot.speedup(0.99) < 1.01


@pytest.mark.parametrize("target", ["atom-c2750", "xeon-e5-2697v4", "xeon-phi-7250",
                                    "xeon-8470", "nvidia-v100", "host"])
def test_every_target(target):
    spot = sweet_spot("conv2d", target=target, c=256, h=14, w=14, o=256, r=3, s=3,
                      padding=1)
    assert 0.0 <= spot.lower <= 1.0 and 0.0 <= spot.upper <= 1.0
    assert spot.source == "description"


@pytest.mark.parametrize("op,shape,match", [
    ("qgemm", {"m": 4, "n": 4, "k": 4}, "prunable op"),
    ("spmm", {"m": 4, "n": 4}, "missing"),
    ("spmm", {"m": 0, "n": 4, "k": 4}, "out of range"),
    ("conv2d", {"c": 1, "h": 2, "w": 2, "o": 1, "r": 5, "s": 5}, "larger than"),
])
def test_errors(op, shape, match):
    with pytest.raises(ValueError, match=match):
        sweet_spot(op, target="toy", **shape)


def test_unknown_target():
    with pytest.raises(ValueError, match="unknown target"):
        sweet_spot("spmm", target="nope", m=4, n=4, k=4)


def test_given_alpha_replaces_the_described_one():
    spot = sweet_spot("spmm", target="toy", m=1024, n=1024, k=1024, alpha=8.0)
    assert spot.alpha == 8.0 and spot.source == "given"
    assert spot.lower == pytest.approx(1 - 1 / 8.0)      # compute-bound: x_lower = 1 / alpha
    assert spot.speedup(spot.lower) == pytest.approx(1.0)
    assert sweet_spot("spmm", target="toy", m=1024, n=1024, k=1024,
                      alpha=np.float32(8.0)).lower == pytest.approx(spot.lower)
    for bad in (0.0, -1.0, float("nan"), "2", True):
        with pytest.raises(ValueError, match="alpha must be a positive number"):
            sweet_spot("spmm", target="toy", m=8, n=8, k=8, alpha=bad)
