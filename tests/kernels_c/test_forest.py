"""kernels_c.forest.TreeSums: sums of regression trees per row, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest

from kernels_c.forest import TreeSums


def _random_trees(rng, n_trees=20, n_features=5, max_leaves=8):
    """Trees in the exported layout (children numbered after their parent)."""
    nodes = {k: [] for k in ("feature", "threshold", "left", "right", "missing_left",
                             "is_leaf", "value")}
    roots = []

    def add(depth):
        i = len(nodes["feature"])
        for k in nodes:
            nodes[k].append(0)
        if depth == 0 or rng.random() < 0.2:
            nodes["is_leaf"][i], nodes["value"][i] = 1, float(rng.normal())
            return i
        nodes["feature"][i] = int(rng.integers(n_features))
        nodes["threshold"][i] = float(rng.normal())
        nodes["missing_left"][i] = int(rng.integers(2))
        nodes["left"][i] = add(depth - 1)
        nodes["right"][i] = add(depth - 1)
        return i

    for _ in range(n_trees):
        roots.append(add(int(np.log2(max_leaves))))
    return {k: np.array(v) for k, v in nodes.items()}, np.array(roots)


def _reference(nodes, roots, x, start, count):
    out = []
    for row, s, c in zip(x, start, count, strict=True):
        total = 0.0
        for root in roots[s:s + c]:
            i = root
            while not nodes["is_leaf"][i]:
                v = row[nodes["feature"][i]]
                left = nodes["missing_left"][i] if np.isnan(v) else v <= nodes["threshold"][i]
                i = nodes["left"][i] if left else nodes["right"][i]
            total += nodes["value"][i]
        out.append(total)
    return np.array(out)


def test_sums_match_a_python_walk_with_missing_values():
    rng = np.random.default_rng(0)
    nodes, roots = _random_trees(rng)
    trees = TreeSums(**nodes, roots=roots)
    x = rng.normal(size=(30, 5))
    x[rng.random(x.shape) < 0.2] = np.nan
    start = rng.integers(0, 10, size=30)
    count = rng.integers(0, 11, size=30)
    np.testing.assert_allclose(trees.sums(x, start, count),
                               _reference(nodes, roots, x, start, count), rtol=1e-12)


def test_malformed_trees_are_refused_before_any_c_runs():
    rng = np.random.default_rng(1)
    nodes, roots = _random_trees(rng, n_trees=3)
    inner = int(np.flatnonzero(nodes["is_leaf"] == 0)[0])
    cyclic = {**nodes, "left": nodes["left"].copy()}
    cyclic["left"][inner] = inner            # a node that is its own child
    with pytest.raises(ValueError, match="later node"):
        TreeSums(**cyclic, roots=roots)
    outside = {**nodes, "right": nodes["right"].copy()}
    outside["right"][inner] = len(nodes["feature"])
    with pytest.raises(ValueError, match="later node"):
        TreeSums(**outside, roots=roots)
    with pytest.raises(ValueError, match="roots"):
        TreeSums(**nodes, roots=np.array([len(nodes["feature"])]))
    with pytest.raises(ValueError, match="nodes"):
        TreeSums(**{**nodes, "value": nodes["value"][:-1]}, roots=roots)
    negative = {**nodes, "feature": nodes["feature"].copy()}
    negative["feature"][inner] = -1
    with pytest.raises(ValueError, match=">= 0"):
        TreeSums(**negative, roots=roots)


def test_bad_rows_are_refused():
    rng = np.random.default_rng(2)
    nodes, roots = _random_trees(rng, n_trees=4)
    trees = TreeSums(**nodes, roots=roots)
    x = rng.normal(size=(3, 5))
    ok = np.zeros(3, dtype=np.int64), np.full(3, 4)
    with pytest.raises(ValueError, match="features"):
        trees.sums(np.ascontiguousarray(x[:, :trees.n_features - 1]), *ok)
    with pytest.raises(TypeError, match="float64"):
        trees.sums(x.astype(np.float32), *ok)
    with pytest.raises(ValueError, match="C-contiguous"):
        trees.sums(np.asfortranarray(x), *ok)
    with pytest.raises(ValueError, match="within the 4 roots"):
        trees.sums(x, np.array([0, 1, 2]), np.array([4, 4, 4]))
    with pytest.raises(ValueError, match="shape"):
        trees.sums(x, np.zeros(2, dtype=np.int64), np.ones(2, dtype=np.int64))


def test_rows_sharing_trees_in_any_order_match_a_python_walk():
    """Rows with the same trees are walked together (runs, after sorting): every row's sum
    still lands in its own place."""
    rng = np.random.default_rng(3)
    nodes, roots = _random_trees(rng, n_trees=12)
    trees = TreeSums(**nodes, roots=roots)
    x = rng.normal(size=(40, 5))
    pairs = np.array([(0, 12), (4, 8), (0, 12), (2, 3)])[rng.integers(0, 4, size=40)]
    start, count = pairs[:, 0], pairs[:, 1]
    expected = _reference(nodes, roots, x, start, count)
    np.testing.assert_allclose(trees.sums(x, start, count), expected, rtol=1e-12)
    grouped = np.argsort(start, kind="stable")
    np.testing.assert_allclose(
        trees.sums(np.ascontiguousarray(x[grouped]), start[grouped], count[grouped]),
        expected[grouped], rtol=1e-12)
    # side by side but not in order (walked as they come, not sorted)
    backwards = grouped[::-1]
    np.testing.assert_allclose(
        trees.sums(np.ascontiguousarray(x[backwards]), start[backwards], count[backwards]),
        expected[backwards], rtol=1e-12)


def test_trees_the_packed_nodes_cannot_hold_are_refused():
    """Children are 16-bit offsets from their parent and features 16-bit indices."""
    n = 40_000
    nodes = {"feature": np.zeros(n, dtype=np.int64), "threshold": np.zeros(n),
             "left": np.zeros(n, dtype=np.int64), "right": np.zeros(n, dtype=np.int64),
             "missing_left": np.zeros(n, dtype=np.uint8), "is_leaf": np.ones(n, dtype=np.uint8),
             "value": np.arange(n, dtype=np.float64)}
    nodes["is_leaf"][0], nodes["left"][0], nodes["right"][0] = 0, 1, n - 1
    with pytest.raises(ValueError, match="16-bit offsets"):
        TreeSums(**nodes, roots=np.array([0]))
    nodes["right"][0] = 2
    trees = TreeSums(**nodes, roots=np.array([0]))
    np.testing.assert_array_equal(trees.sums(np.array([[-1.0], [1.0]]), np.zeros(2), np.ones(2)),
                                  [1.0, 2.0])
    nodes["feature"][0] = 40_000
    with pytest.raises(ValueError, match="features"):
        TreeSums(**nodes, roots=np.array([0]))


@pytest.mark.parametrize("seed", range(4))
def test_rows_differing_in_a_few_features_match_a_python_walk_exactly(seed):
    """The rows of a run go down each tree together, a split on a feature they share
    decided once (a query's candidates differ in their parameters only): every row's sum is
    still the one a walk row by row adds up, bit for bit, with missing values, signed
    zeros and values equal to a threshold among the shared and the varying features."""
    rng = np.random.default_rng(10 + seed)
    nodes, roots = _random_trees(rng, n_trees=30, n_features=6, max_leaves=16)
    trees = TreeSums(**nodes, roots=roots)
    shared = rng.normal(size=6)
    shared[0], shared[2] = np.nan, nodes["threshold"][roots[0]]
    x = np.tile(shared, (25, 1))
    x[:, 4] = -0.0 if seed % 2 else 0.0
    x[::3, 4] = 0.0
    varying = [1, 3]
    x[:, varying] = rng.choice(np.r_[nodes["threshold"][:10], np.nan, 0.5, -2.0],
                               size=(25, 2))
    start, count = np.zeros(25, dtype=np.int64), np.full(25, 30)
    np.testing.assert_array_equal(trees.sums(x, start, count),
                                  _reference(nodes, roots, x, start, count))
    one = trees.sums(x[:1], start[:1], count[:1])       # a run of one row
    np.testing.assert_array_equal(one, _reference(nodes, roots, x[:1], start[:1], count[:1]))


@pytest.mark.parametrize("n_rows", [1, 5])
def test_c_refuses_trees_broken_after_validation(n_rows):
    """The node array is validated in Python; if it is changed afterwards (C reads it in
    place), a walk that would loop or leave the array returns an error instead."""
    rng = np.random.default_rng(5)
    nodes, roots = _random_trees(rng, n_trees=4, max_leaves=4)
    x = rng.normal(size=(n_rows, 5))
    start, count = np.zeros(n_rows, dtype=np.int64), np.full(n_rows, 4)
    for offset in (0, -1, 30_000):     # a node its own child, a cycle, past the end
        trees = TreeSums(**nodes, roots=roots)
        inner = trees._nodes["feature"] >= 0
        trees._nodes["left"][inner] = trees._nodes["right"][inner] = offset
        with pytest.raises(RuntimeError, match="malformed"):
            trees.sums(x, start, count)
    trees = TreeSums(**nodes, roots=roots)
    trees._nodes["feature"][trees._nodes["feature"] >= 0] = 7     # past x's 5 columns
    with pytest.raises(RuntimeError, match="malformed"):
        trees.sums(x, start, count)


def test_rows_wider_than_any_node_can_name_are_summed():
    """Rows may carry more columns than an int16 feature can name (the trees read the
    first ones only): they are summed, not refused as malformed."""
    rng = np.random.default_rng(6)
    nodes, roots = _random_trees(rng, n_trees=6)
    trees = TreeSums(**nodes, roots=roots)
    x = np.zeros((4, 40_000))
    x[:, :5] = rng.normal(size=(4, 5))
    start, count = np.zeros(4, dtype=np.int64), np.full(4, 6)
    np.testing.assert_array_equal(trees.sums(x, start, count),
                                  _reference(nodes, roots, x, start, count))
