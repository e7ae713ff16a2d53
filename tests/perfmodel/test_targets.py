"""Target catalog: every shipped file loads, units parse, bad files are rejected clearly."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from perfmodel._units import parse_quantity
from perfmodel.targets import CATALOG_DIR, KINDS, list_targets, load_target, parse_target

CATALOG = sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))
EXPECTED = {"atom-c2750", "xeon-e5-2697v4", "xeon-phi-7250", "xeon-8470", "nvidia-1080ti",
            "nvidia-p100", "nvidia-v100", "nvidia-a100", "nvidia-h100"}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path))


def test_catalog_has_the_issue_machines():
    assert EXPECTED <= set(CATALOG)


@pytest.mark.parametrize("name", CATALOG)
def test_every_catalog_file_loads(name):
    t = load_target(name)
    assert t.name == name and t.origin == "catalog"
    numbers = [t.sockets, t.cores, *t.compute.values(), *t.model.values()]
    for lv in t.memory:
        numbers += [q for q in (lv.size, lv.bandwidth, *lv.extra.values()) if q is not None]
    for q in numbers:
        assert q.kind in KINDS and q.source.strip() and q.value > 0
    assert t.peak("fp32").unit == "FLOP/s"
    assert t.peak("int4").value > 0          # falls back to int8 / fp32
    assert t.main_memory().bandwidth.unit == "B/s"
    # the furthest level with a bandwidth is main memory; caches come before it
    assert t.memory.index(t.main_memory()) >= len(t.memory) - 2


def test_known_values_and_units():
    broadwell = load_target("xeon-e5-2697v4")
    assert broadwell.sockets.value == 2 and broadwell.sockets.kind == "derived"
    assert broadwell.peak("fp32").value == pytest.approx(2150e9)
    assert broadwell.main_memory().bandwidth.value == pytest.approx(122e9)
    phi = load_target("xeon-phi-7250")
    names = [lv.name for lv in phi.memory]
    assert "MCDRAM" in names and "DDR4" in names
    assert phi.memory[names.index("MCDRAM")].size.value == 16 * 2**30
    assert load_target("atom-c2750").clock.value == pytest.approx(2.4e9)


@pytest.mark.parametrize("text,value,unit", [
    ("76.8 GB/s", 76.8e9, "B/s"), ("2.4 GHz", 2.4e9, "Hz"), ("32 KiB", 32768, "B"),
    ("1,979 TOPS", 1.979e15, "OP/s"), ("62 GFLOP/s", 62e9, "FLOP/s"), ("1 MiB", 2**20, "B"),
    ("0.85", 0.85, ""), (3, 3.0, ""), ("105 MB", 105e6, "B"),
])
def test_parse_quantity(text, value, unit):
    v, u = parse_quantity(text)
    assert v == pytest.approx(value) and u == unit


@pytest.mark.parametrize("text", ["fast", "12 parsecs", "1 KiHz", "GB/s", "1.2.3 GB"])
def test_parse_quantity_rejects(text):
    with pytest.raises(ValueError, match=r"quantity|prefix"):
        parse_quantity(text)


def test_parse_quantity_expect():
    with pytest.raises(ValueError, match="expected 'B/s'"):
        parse_quantity("2 GHz", "B/s")


def _doc(name="atom-c2750"):
    return yaml.safe_load((CATALOG_DIR / f"{name}.yaml").read_text())


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(schema_version=99), "schema_version 99 not supported"),
    (lambda d: d["compute"]["fp32"].update(kind="guess"), "kind 'guess' invalid"),
    (lambda d: d["compute"]["fp32"].update(source=""), "empty source"),
    (lambda d: d["compute"]["fp32"].update(value="62 GB/s"), "FLOP/s or OP/s"),
    (lambda d: d["compute"].pop("fp32"), "compute.fp32 is required"),
    (lambda d: d.pop("memory"), "missing keys"),
    (lambda d: d.update(color="blue"), "unknown keys"),
    (lambda d: d["memory"][-1].pop("bandwidth"), "needs a bandwidth"),
])
def test_invalid_descriptions(mutate, match):
    doc = _doc()
    mutate(doc)
    with pytest.raises(ValueError, match=match):
        parse_target(doc, path="x.yaml")


def test_user_file_is_listed_and_loaded(tmp_path):
    user = tmp_path / "machines"
    user.mkdir()
    doc = _doc()
    doc["name"] = "my-box"
    doc["compute"]["fp32"]["value"] = "100 GFLOP/s"
    (user / "my-box.yaml").write_text(yaml.safe_dump(doc))
    assert "my-box" in list_targets()
    t = load_target("my-box")
    assert t.origin == "user" and t.peak().value == pytest.approx(100e9)
    shutil.copy(user / "my-box.yaml", user / "other.yaml")
    with pytest.raises(ValueError, match="differs from the file name"):
        load_target("other")


def test_unknown_target_lists_valid():
    with pytest.raises(ValueError, match=r"valid: .*xeon-8470"):
        load_target("cray-1")


def test_host_fallback_without_profile():
    t = load_target("host")
    assert t.origin == "host-fallback" and "characterize" in t.notes
    assert t.peak().kind == "assumed"


def test_host_from_profile(tmp_path):
    profile = {
        "schema_version": 1, "fingerprint": "x", "created": "2026-11-26T00:00:00Z",
        "cpu": {"brand": "test", "vendor": "x", "cores": 2, "isa_path": "avx512_vnni",
                "flags": {}},
        "caches": {"l1d_bytes": 49152, "l2_bytes": 1048576, "l3_bytes": 33554432},
        "peaks": {"fp32": {"avx512_vnni": {"1": {"median_flops": 117e9},
                                           "2": {"median_flops": 232e9}}},
                  "int8": {"avx512_vnni": {"1": {"median_ops": 467e9},
                                           "2": {"median_ops": 130e9}}}},
        "bandwidth": {},
        "levels": {"triad": {"1": {"L1": 300e9, "L2": 150e9, "L3": 60e9, "DRAM": 23e9},
                             "2": {"L1": 600e9, "L2": 300e9, "L3": 100e9, "DRAM": 30e9}}},
        "theoretical": {"clock_hz": 3.7e9, "fp32_flops_per_cycle": 32,
                        "int8_ops_per_cycle": 128},
    }
    (tmp_path / "host.json").write_text(json.dumps(profile))
    t = load_target("host")
    assert t.origin == "host-profile"
    assert t.peak("fp32").value == pytest.approx(232e9) and t.peak().kind == "measured"
    assert t.main_memory().bandwidth.value == pytest.approx(30e9)
    # a 2-thread run spoiled by a busy machine: the ceiling for 2 threads is the best
    # measured with at most 2
    assert t.peak("int8").value == pytest.approx(467e9)
    one = load_target("host", threads=1)
    assert one.peak("int8").value == pytest.approx(467e9)
    assert one.peak("fp32").value == pytest.approx(117e9)
    assert [lv.name for lv in one.memory] == ["L1", "L2", "L3", "DRAM"]


def test_cli_targets(capsys):
    from perfmodel._cmd_models import _cmd_targets

    class A:
        name, verbose = "xeon-e5-2697v4", False
    assert _cmd_targets(A()) == 0
    out = capsys.readouterr().out
    assert "2 sockets" in out and "Park et al." in out
