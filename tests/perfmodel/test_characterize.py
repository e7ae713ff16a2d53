"""Host characterization: profile schema and round trip, fingerprint, plateau detection,
micro-architecture table, catalog view and the CLI (shrunken settings: no timing asserts)."""

from __future__ import annotations

import json
import math

import pytest

import kernels_c
from perfmodel import characterize as ch
from perfmodel import cli

LEVELS = ("L1", "L2", "L3", "DRAM")


def _shrink(mp, home):
    """Few repeats and short samples; the profile goes to a temporary PERFMODEL_HOME."""
    mp.setenv("PERFMODEL_HOME", str(home))
    for quick in (False, True):
        small = dict(ch._SETTINGS[quick], repeats=3, peak_repeats=3, peak_s=0.0002,
                     stream_s=0.0002)
        mp.setitem(ch._SETTINGS, quick, small)


@pytest.fixture
def fast(monkeypatch, tmp_path):
    _shrink(monkeypatch, tmp_path / "home")
    return tmp_path


@pytest.fixture(scope="module")
def _shared(tmp_path_factory):
    """One quick profile (1 and 2 threads) shared by the read-only tests of this module."""
    home = tmp_path_factory.mktemp("profile")
    with pytest.MonkeyPatch.context() as mp:
        _shrink(mp, home / "home")
        yield home, ch.characterize(quick=True, threads=2, max_bytes=1 << 20)


@pytest.fixture
def profile(_shared, monkeypatch):
    home, prof = _shared
    monkeypatch.setenv("PERFMODEL_HOME", str(home / "home"))
    return prof


def test_quick_profile_follows_the_contract(profile):
    for key in ("schema_version", "fingerprint", "created", "cpu", "caches", "peaks",
                "bandwidth", "levels", "theoretical"):
        assert key in profile
    assert profile["schema_version"] == ch.SCHEMA_VERSION
    assert len(profile["fingerprint"]) == 16
    assert profile["created"].endswith("Z")
    cpu = profile["cpu"]
    assert cpu["isa_path"] == kernels_c.isa() and cpu["cores"] >= 1
    assert set(cpu["flags"]) == set(kernels_c.cpu_features())
    for key in ("l1d_bytes", "l2_bytes", "l3_bytes"):
        assert isinstance(profile["caches"][key], int)
    for kind, unit in (("fp32", "flops"), ("int8", "ops")):
        (path, table), = profile["peaks"][kind].items()  # quick: the top path only
        assert path in kernels_c.microbench.IMPLEMENTED[kind]
        assert set(table) == {"1", "2"}
        for entry in table.values():
            assert entry[f"min_{unit}"] <= entry[f"median_{unit}"] <= entry[f"max_{unit}"]
            assert entry[f"iqr_{unit}"] >= 0 and entry["n_samples"] == 3
            assert entry[f"median_{unit}"] > 0
    for kind in ("read", "triad"):
        rows = profile["bandwidth"][kind]
        assert {r["threads"] for r in rows} == {1, 2}
        for r in rows:
            assert r["bytes"] <= 1 << 20 and r["bytes"] % 192 == 0
            assert r["median_bytes_per_s"] > 0 and r["iqr_bytes_per_s"] >= 0
        assert set(profile["levels"][kind]) == set(profile["levels_median"][kind]) == {"1", "2"}
        for t_key, levels in profile["levels"][kind].items():
            assert set(levels) == set(LEVELS)
            for lv, median in profile["levels_median"][kind][t_key].items():
                assert (levels[lv] is None) == (median is None)
                assert median is None or levels[lv] >= median
    theo = profile["theoretical"]
    assert theo["clock_hz"] > 0 and theo["clock_hz_all"] > 0
    assert theo["fp32_path"] == next(iter(profile["peaks"]["fp32"]))
    assert profile["run"]["quick"] is True and profile["run"]["threads"] == [1, 2]


def test_profile_written_atomically_and_round_trips(profile, _shared):
    path = ch.host_profile_path()
    assert path.parent == _shared[0] / "home"
    assert ch.load_host_profile() == profile
    assert ch.load_host_profile(path) == json.loads(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["host.json"]  # no temp files left


def test_ratio_is_measured_over_threads_clock_rate(profile):
    theo = profile["theoretical"]
    if not theo["fp32_flops_per_cycle"]:
        pytest.skip("no throughput model for this core")
    for t_key, entry in profile["peaks"]["fp32"][theo["fp32_path"]].items():
        expected = int(t_key) * theo["fp32_flops_per_cycle"]
        implied = theo["peak"]["fp32"][t_key] / expected  # = clock used for that count
        assert 1e8 < implied < 1e11
        assert theo["ratio"]["fp32"][t_key] == pytest.approx(
            entry["median_flops"] / theo["peak"]["fp32"][t_key])


def test_full_mode_measures_every_path_highest_first(fast):
    prof = ch.characterize(threads=1, max_bytes=256 << 10, write=False)
    assert not ch.host_profile_path().exists()
    by_path = prof["theoretical"]["by_path"]
    for kind in ("fp32", "int8"):
        for path, rows in by_path[kind].items():
            assert path in prof["peaks"][kind]
            unit = "flops" if kind == "fp32" else "ops"
            median = prof["peaks"][kind][path]["1"][f"median_{unit}"]
            assert rows["1"]["ratio"] == pytest.approx(median / rows["1"]["peak"])
    levels = kernels_c._isa.LEVELS
    for kind in ("fp32", "int8"):
        paths = list(prof["peaks"][kind])
        assert paths == sorted(paths, key=levels.index, reverse=True)
        assert "portable" in paths
    sizes = [r["bytes"] for r in prof["bandwidth"]["read"]]
    assert sizes == sorted(sizes) and sizes[0] <= 4096 and len(sizes) > 10


def test_explicit_path_and_bad_arguments(fast):
    out = fast / "elsewhere" / "p.json"
    prof = ch.characterize(quick=True, threads=1, max_bytes=1 << 20, path=out)
    assert ch.load_host_profile(out)["fingerprint"] == prof["fingerprint"]
    with pytest.raises(TypeError, match="quick"):
        ch.characterize(quick="yes")
    with pytest.raises(ValueError, match="max_bytes"):
        ch.characterize(quick=True, max_bytes=1000)
    with pytest.raises(ValueError, match="threads"):
        ch.characterize(quick=True, threads=0)
    with pytest.raises(ValueError, match="usable CPUs"):
        ch.characterize(quick=True, threads=ch._cores() + 1)


def test_stats_drop_preempted_samples_when_enough_are_clean():
    values = [100.0, 101.0, 99.0, 10.0, 5.0]
    st = ch._stats(values, "ops", [0, 0, 0, 1, 2])
    assert st["median_ops"] == 100.0 and st["min_ops"] == 99.0
    assert st["n_samples"] == 3 and st["n_disturbed"] == 2 and not st["noisy"]
    # fewer than MIN_CLEAN clean samples: all are used and the point is flagged
    st = ch._stats(values, "ops", [0, 0, 1, 1, 1])
    assert st["n_samples"] == 5 and st["median_ops"] == 99.0 and st["noisy"]
    assert ch._stats(values, "ops")["n_disturbed"] == 0


def test_stream_buffers_are_page_aligned():
    for n in (1, 7, 1000):
        x = ch._aligned(n, 2.0)
        assert x.ctypes.data % 4096 == 0 and x.shape == (n,) and (x == 2.0).all()


# -------------------------------------------------------------------------- loading
def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="perfmodel characterize"):
        ch.load_host_profile(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ch.load_host_profile(bad)
    bad.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ValueError, match="schema_version 99"):
        ch.load_host_profile(bad)
    bad.write_text(json.dumps({"schema_version": ch.SCHEMA_VERSION, "cpu": {}}))
    with pytest.raises(ValueError, match="lacks"):
        ch.load_host_profile(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="object"):
        ch.load_host_profile(bad)


# ---------------------------------------------------------------------- fingerprint
CPU = {"brand": "Example CPU", "cores": 2, "flags": {"avx2": True, "avx512f": False}}
CACHES = {"l1d_bytes": 49152, "l2_bytes": 1 << 20, "l3_bytes": 32 << 20, "source": "sysfs"}


def test_fingerprint_is_stable_and_sensitive():
    fp = ch.fingerprint(CPU, CACHES)
    assert fp == ch.fingerprint(dict(reversed(list(CPU.items()))), dict(CACHES))
    shuffled = dict(CPU, flags={"avx512f": False, "avx2": True})
    assert ch.fingerprint(shuffled, CACHES) == fp
    # fields outside the recipe do not matter; each ingredient does
    assert ch.fingerprint(dict(CPU, isa_path="x"), dict(CACHES, l1d_shared_cpus=1)) == fp
    assert ch.fingerprint(dict(CPU, brand="Other"), CACHES) != fp
    assert ch.fingerprint(dict(CPU, cores=4), CACHES) != fp
    assert ch.fingerprint(CPU, dict(CACHES, l3_bytes=16 << 20)) != fp
    assert ch.fingerprint(dict(CPU, flags={"avx2": False, "avx512f": False}), CACHES) != fp


def test_fingerprint_matches_measurement_context():
    context = pytest.importorskip("perfmodel._context")
    computed = context._computed_machine.__wrapped__()
    assert computed["fingerprint"] == ch.fingerprint(ch.cpu_info(), ch.cache_info())


def test_fingerprint_of_this_host_is_stable():
    assert ch.fingerprint(ch.cpu_info(), ch.cache_info()) == \
        ch.fingerprint(ch.cpu_info(), ch.cache_info())


# ------------------------------------------------------------------------- machine info
def _fake_cache(root, index, level, kind, size, shared):
    d = root / f"index{index}"
    d.mkdir(parents=True)
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")
    (d / "shared_cpu_list").write_text(f"{shared}\n")


def test_cache_info_from_sysfs(tmp_path):
    _fake_cache(tmp_path, 0, 1, "Data", "48K", "0")
    _fake_cache(tmp_path, 1, 1, "Instruction", "32K", "0")
    _fake_cache(tmp_path, 2, 2, "Unified", "1024K", "0,8")
    _fake_cache(tmp_path, 3, 3, "Unified", "32768K", "0-15")
    info = ch.cache_info(tmp_path)
    assert (info["l1d_bytes"], info["l2_bytes"], info["l3_bytes"]) == (48 << 10, 1 << 20,
                                                                       32 << 20)
    assert (info["l1d_shared_cpus"], info["l2_shared_cpus"], info["l3_shared_cpus"]) == (1, 2,
                                                                                       16)
    assert ch.cache_info(tmp_path / "missing", cpuid=False)["source"] == "unknown"


def test_cache_info_falls_back_to_cpuid(tmp_path):
    found = kernels_c.microbench.cpuid_caches()
    if found is None:
        pytest.skip("no CPUID cache leaves on this CPU")
    info = ch.cache_info(tmp_path / "missing")
    assert info["source"] == "cpuid" and info["l1d_bytes"] == found["l1d_bytes"] > 0
    sysfs = ch.cache_info(cpuid=False)
    if sysfs["source"] == "sysfs":  # both views of this machine agree on the sizes
        for key in ("l1d_bytes", "l2_bytes", "l3_bytes"):
            assert info[key] == sysfs[key]


@pytest.mark.parametrize(("vendor", "family", "model", "flags", "fp32", "int8"), [
    ("AuthenticAMD", 0x1A, 0x02, {"avx2": 1, "avx512f": 1, "avx512_vnni": 1},
     {"avx512": 64, "avx2": 32}, {"avx512_vnni": 256, "avx2": 64}),
    ("AuthenticAMD", 0x1A, 0x24, {"avx2": 1, "avx512f": 1, "avx512_vnni": 1},
     {"avx512": 32}, {"avx512_vnni": 128}),
    ("AuthenticAMD", 0x19, 0x11, {"avx2": 1, "avx512f": 1, "avx512_vnni": 1},
     {"avx512": 32, "avx2": 32}, {"avx512_vnni": 128}),
    ("AuthenticAMD", 0x17, 0x01, {"avx2": 1}, {"avx2": 16}, {"avx2": 32}),
    ("GenuineIntel", 6, 0x55, {"avx2": 1, "avx512f": 1, "avx512_vnni": 1},
     {"avx512": 64}, {"avx512_vnni": 256}),
    ("GenuineIntel", 6, 0x57, {"avx2": 1, "avx512f": 1}, {"avx512": 64}, {"avx2": 64}),
    ("GenuineIntel", 6, 0xCF, {"avx2": 1, "avx512f": 1, "avx512_vnni": 1},
     {"avx512": 64, "avx2": 32, "portable": 12}, {"avx512_vnni": 256, "avx2": 64, "portable": 24}),
    ("GenuineIntel", 6, 0x3F, {"avx2": 1}, {"avx2": 32}, {"avx2": 64}),
])
def test_uarch_rates(vendor, family, model, flags, fp32, int8):
    rates = ch.uarch_rates({"vendor": vendor, "family": family, "model": model,
                            "flags": flags})
    for path, value in fp32.items():
        assert rates["fp32"][path] == value
    for path, value in int8.items():
        assert rates["int8"][path] == value
    if not flags.get("avx512_vnni"):
        assert "avx512_vnni" not in rates["int8"]
    if not flags.get("avx512f"):
        assert "avx512" not in rates["fp32"]


def test_unknown_vendor_is_marked_assumed():
    rates = ch.uarch_rates({"vendor": "Other", "flags": {"avx2": True}})
    assert rates["source"].startswith("assumed") and rates["fp32"]["avx2"] == 32


@pytest.mark.parametrize(("threads", "cores", "expected"), [
    (None, 1, [1]), (None, 2, [1, 2]), (4, 2, [1, 2, 4]), (6, 8, [1, 2, 4, 6]),
    ([2, 1, 2], 8, [1, 2]),
])
def test_thread_counts(threads, cores, expected):
    assert ch._thread_counts(threads, cores) == expected


@pytest.mark.parametrize("threads", [0, -1, [0, 1], []])
def test_thread_counts_reject(threads):
    with pytest.raises(ValueError):
        ch._thread_counts(threads, 2)


# ------------------------------------------------------------------------ plateaus
CAPS = {"L1": 48e3, "L2": 1e6, "L3": 32e6}


def _rows(points):
    # best sample 10 % above the median at every point
    return [{"bytes": b, "median_bytes_per_s": bw, "max_bytes_per_s": 1.1 * bw}
            for b, bw in points]


def test_windows_follow_capacities():
    wins = ch._windows(CAPS, 128 << 20)
    assert wins["L1"] == (0.0, 0.75 * 48e3)
    assert wins["L2"] == (1.5 * 48e3, 0.75 * 1e6)
    assert wins["L3"] == (1.5 * 1e6, 0.75 * 32e6)
    assert wins["DRAM"] == (4 * 32e6, math.inf)
    # private caches scale with threads, the shared L3 does not
    caps2 = ch._capacities({"l1d_bytes": 48 << 10, "l2_bytes": 1 << 20, "l3_bytes": 32 << 20,
                            "l1d_shared_cpus": 1, "l2_shared_cpus": 1, "l3_shared_cpus": 2},
                           threads=2, cores=2)
    assert caps2 == {"L1": 2 * 48 * 1024, "L2": 2 * 1024**2, "L3": 32 * 1024**2}


def test_plateau_levels_pick_max_in_cache_windows_and_median_in_dram():
    wins = ch._windows(CAPS, 256 << 20)
    rows = _rows([(8e3, 300.0), (16e3, 320.0), (30e3, 310.0), (40e3, 200.0),  # L1
                  (200e3, 250.0), (500e3, 240.0), (1.2e6, 150.0),               # L2
                  (4e6, 100.0), (16e6, 90.0), (40e6, 60.0),                     # L3
                  (128e6, 40.0), (200e6, 44.0), (256e6, 42.0)])                 # DRAM
    got = ch.plateau_levels(rows, wins, "median_bytes_per_s")
    assert got == {"L1": 320.0, "L2": 250.0, "L3": 100.0, "DRAM": 42.0}
    best = ch.plateau_levels(rows, wins)  # default: each point's best sample (ERT)
    assert best == pytest.approx({"L1": 352.0, "L2": 275.0, "L3": 110.0, "DRAM": 46.2})


def test_plateau_levels_empty_windows_are_none():
    wins = ch._windows({"L1": 48e3, "L2": 1e6}, 64 << 20)  # no L3
    got = ch.plateau_levels(_rows([(16e3, 300.0), (40e6, 50.0)]), wins, "median_bytes_per_s")
    assert got["L1"] == 300.0 and got["L2"] is None and got["L3"] is None
    assert got["DRAM"] == 50.0  # last point, >= half the DRAM window start


def test_quick_sweep_has_one_size_per_level():
    wins = ch._windows(CAPS, 128 << 20)
    sizes = ch._sweep_sizes(128 << 20, 0, wins)
    assert len(sizes) == 4
    for size, (lo, hi) in zip(sizes, wins.values(), strict=True):
        assert lo <= size <= hi


# ---------------------------------------------------------------- catalog view, CLI
def test_host_target_dict(profile):
    target = ch.host_target_dict(profile)
    assert target["name"] == "host" and target["source"] == "measured"
    assert target["cores"] == profile["cpu"]["cores"]
    assert target["clock_hz"] == profile["theoretical"]["clock_hz"]
    top = next(iter(profile["peaks"]["fp32"]))
    assert target["fp32_flops"] == profile["peaks"]["fp32"][top]["2"]["median_flops"]
    assert target["fp32_flops_1core"] == profile["peaks"]["fp32"][top]["1"]["median_flops"]
    assert target["int8_ops"] > 0 and target["int8_ops_1core"] > 0
    assert set(target["bandwidth_bytes_per_s"]) == set(LEVELS)
    assert target["cache_bytes"]["L1"] == profile["caches"]["l1d_bytes"] * profile["cpu"][
        "cores"] / profile["caches"]["l1d_shared_cpus"]
    for key in ("cores", "clock_hz", "fp32_flops", "int8_ops", "bandwidth_bytes_per_s",
                "cache_bytes"):
        assert key in target["sources"]
    units = pytest.importorskip("perfmodel._units")
    units.parse_quantity(target["clock"]["value"], expect="Hz")
    units.parse_quantity(target["compute"]["fp32"]["value"], expect="FLOP/s")
    units.parse_quantity(target["compute"]["int8"]["value"], expect="OP/s")
    for entry in target["memory"]:
        if "size" in entry:
            units.parse_quantity(entry["size"]["value"], expect="B")
        if "bandwidth" in entry:
            units.parse_quantity(entry["bandwidth"]["value"], expect="B/s")
            assert entry["bandwidth"]["kind"] == "measured"


def test_summary_lists_every_measurement(profile):
    text = ch.format_summary(profile)
    assert profile["fingerprint"] in text
    for word in ("fp32", "int8", "read", "triad", "L1", "DRAM", "GHz"):
        assert word in text


def test_cli_writes_profile_and_prints_summary(fast, monkeypatch, capsys):
    real = ch.characterize
    monkeypatch.setattr(ch, "characterize",
                        lambda **kw: real(**kw, max_bytes=1 << 20))
    out = fast / "cli.json"
    assert cli.main(["characterize", "--quick", "--threads", "1", "-q", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "peaks" in printed and str(out) in printed
    assert ch.load_host_profile(out)["run"]["threads"] == [1]
    assert cli.main(["characterize", "--quick", "--threads", "0", "-q"]) == 2
