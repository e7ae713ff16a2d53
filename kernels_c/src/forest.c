/* Sums of regression trees per row: see cdef/forest.h. The ensembles perfmodel queries are
 * a few hundred trees of <= 15 leaves over tens of rows, most of them sharing one kernel's
 * trees; numpy's level-by-level walk spent its time in per-call overhead
 * (benchmarks/bench_forest_walk.py). */
#include <math.h>
#include <stdint.h>

#include "forest.h"

/* Adds the leaf value of the tree rooted at `node` for row `xr` to *sum; -1 when the walk
 * is malformed. */
static inline int walk(const forest_sum_args *a, const double *xr, int64_t node, double *sum)
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
        const double v = xr[nd->feature];
        const int go_left = isnan(v) ? nd->missing_left != 0 : v <= nd->value_or_threshold;
        node += go_left ? nd->left : nd->right;
    }
}

int forest_sum(void *argp)
{
    const forest_sum_args *a = (const forest_sum_args *)argp;
    int64_t first = 0;
    while (first < a->n_rows) {
        const int64_t start = a->row_start[first], count = a->row_count[first];
        if (start < 0 || count < 0 || start > a->n_roots - count)
            return -1;
        int64_t end = first + 1;     /* the run of rows with the same trees */
        while (end < a->n_rows && a->row_start[end] == start && a->row_count[end] == count)
            end++;
        for (int64_t r = first; r < end; r++)
            a->out[r] = 0.0;
        for (int64_t t = start; t < start + count; t++) {
            for (int64_t r = first; r < end; r++)
                if (walk(a, a->x + r * a->n_features, a->roots[t], a->out + r) != 0)
                    return -1;
        }
        first = end;
    }
    return 0;
}
