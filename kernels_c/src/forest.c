/* Sums of regression trees per row: see cdef/forest.h. The ensembles perfmodel queries are
 * a few hundred trees of <= 15 leaves over tens of rows, most of them sharing one kernel's
 * trees; numpy's level-by-level walk spent its time in per-call overhead
 * (benchmarks/bench_forest_walk.py).
 *
 * The rows of a run (consecutive rows with the same trees: a query's candidate
 * configurations of one kernel) differ in a few features only, the kernel parameters.
 * They go down each tree together: a split on a feature they all share sends them all one
 * way after one comparison, a split on one that varies partitions them. Each row still
 * gets one leaf per tree, added in tree order, so the sums are bit-identical to walking
 * row by row; a query's walks took half the time. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "forest.h"

enum { FEATURE_SLOTS = 32768 };   /* every feature an int16 node can name */

static inline int goes_left(const forest_node *nd, double v)
{
    return isnan(v) ? nd->missing_left != 0 : v <= nd->value_or_threshold;
}

/* Adds the leaf value of the tree rooted at `node` for row `xr` to *sum; -1 when the walk
 * is malformed. */
static int walk_row(const forest_sum_args *a, const double *xr, int64_t node, double *sum)
{
    for (int64_t steps = 0;; steps++) {
        if (node < 0 || node >= a->n_nodes || steps > a->n_nodes)
            return -1;
        const forest_node *nd = a->nodes + node;
        if (nd->feature < 0) {
            *sum += nd->value_or_threshold;
            return 0;
        }
        if (nd->feature >= a->n_features)
            return -1;
        node += goes_left(nd, xr[nd->feature]) ? nd->left : nd->right;
    }
}

/* A subtree still to walk, with the rows rows[lo..hi) that reached it. */
typedef struct {
    int64_t node, lo, hi;
} pending_walk;

/* Walks rows[0..n) (row indices, reordered in place) together through the tree rooted at
 * `node`, adding each row's leaf value to out[row]. `varying[f]` marks the features in
 * which the rows differ; `stack` has room for n entries (pending row sets are disjoint and
 * not empty). -1 when the walk is malformed: a node outside the array, a feature past
 * n_features, or more node visits than nodes (a valid tree visits each node once). */
static int walk_rows(const forest_sum_args *a, int64_t node, int64_t *rows, int64_t n,
                     const unsigned char *varying, pending_walk *stack)
{
    int64_t top = 0, visits = 0, lo = 0, hi = n;
    for (;;) {
        if (node < 0 || node >= a->n_nodes || ++visits > a->n_nodes)
            return -1;
        const forest_node *nd = a->nodes + node;
        if (nd->feature < 0) {
            for (int64_t i = lo; i < hi; i++)
                a->out[rows[i]] += nd->value_or_threshold;
            if (top == 0)
                return 0;
            top--;
            node = stack[top].node, lo = stack[top].lo, hi = stack[top].hi;
            continue;
        }
        const int64_t f = nd->feature;
        if (f >= a->n_features)
            return -1;
        if (!varying[f]) {
            node += goes_left(nd, a->x[rows[lo] * a->n_features + f]) ? nd->left : nd->right;
            continue;
        }
        int64_t mid = lo;   /* rows[lo..mid) go left, rows[mid..hi) right */
        for (int64_t i = lo; i < hi; i++) {
            if (goes_left(nd, a->x[rows[i] * a->n_features + f])) {
                const int64_t r = rows[mid];
                rows[mid++] = rows[i];
                rows[i] = r;
            }
        }
        if (mid == lo || mid == hi) {
            node += mid == hi ? nd->left : nd->right;
            continue;
        }
        stack[top++] = (pending_walk){node + nd->right, mid, hi};
        node += nd->left;
        hi = mid;
    }
}

/* Marks in varying[] the features in which rows first+1..end-1 differ from row first (two
 * missing values are the same value); columns past FEATURE_SLOTS, which no node can name,
 * are not looked at. */
static void mark_varying(const forest_sum_args *a, int64_t first, int64_t end,
                         unsigned char *varying)
{
    const int64_t n = a->n_features < FEATURE_SLOTS ? a->n_features : FEATURE_SLOTS;
    const double *x0 = a->x + first * a->n_features;
    memset(varying, 0, (size_t)n);
    for (int64_t r = first + 1; r < end; r++) {
        const double *xr = a->x + r * a->n_features;
        for (int64_t f = 0; f < n; f++)
            if (!(xr[f] == x0[f] || (isnan(xr[f]) && isnan(x0[f]))))
                varying[f] = 1;
    }
}

int forest_sum(void *argp)
{
    const forest_sum_args *a = (const forest_sum_args *)argp;
    if (a->n_rows < 0 || a->n_features < 0)
        return -1;
    unsigned char varying[FEATURE_SLOTS];
    const size_t room = (size_t)(a->n_rows > 0 ? a->n_rows : 1);
    int64_t *rows = malloc(room * sizeof *rows);
    pending_walk *stack = malloc(room * sizeof *stack);
    int status = rows != NULL && stack != NULL ? 0 : -2;
    for (int64_t first = 0, end; status == 0 && first < a->n_rows; first = end) {
        const int64_t start = a->row_start[first], count = a->row_count[first];
        if (start < 0 || count < 0 || start > a->n_roots - count) {
            status = -1;
            break;
        }
        end = first + 1;     /* the run of rows with the same trees */
        while (end < a->n_rows && a->row_start[end] == start && a->row_count[end] == count)
            end++;
        for (int64_t r = first; r < end; r++) {
            a->out[r] = 0.0;
            rows[r - first] = r;
        }
        if (end - first > 1)
            mark_varying(a, first, end, varying);
        for (int64_t t = start; status == 0 && t < start + count; t++)
            status = end - first == 1
                ? walk_row(a, a->x + first * a->n_features, a->roots[t], a->out + first)
                : walk_rows(a, a->roots[t], rows, end - first, varying, stack);
    }
    free(rows);
    free(stack);
    return status;
}
