/* Sums of regression trees per row: see cdef/forest.h. A scalar walk per (row, tree): the
 * ensembles perfmodel queries are a few hundred trees of <= 15 leaves over tens of rows,
 * where numpy's level-by-level walk spent its time in per-call overhead (0.82 ms against
 * 0.19 ms here for 17 rows x 300 trees; benchmarks/bench_forest_walk.py). */
#include <math.h>
#include <stdint.h>

#include "forest.h"

int forest_sum(void *argp)
{
    const forest_sum_args *a = (const forest_sum_args *)argp;
    for (int64_t r = 0; r < a->n_rows; r++) {
        const double *xr = a->x + r * a->n_features;
        const int64_t start = a->row_start[r], count = a->row_count[r];
        if (start < 0 || count < 0 || start > a->n_roots - count)
            return -1;
        double total = 0.0;
        for (int64_t t = start; t < start + count; t++) {
            int64_t node = a->roots[t];
            for (int64_t steps = 0;; steps++) {
                if (node < 0 || node >= a->n_nodes || steps > a->n_nodes)
                    return -1;
                if (a->is_leaf[node])
                    break;
                const int64_t f = a->feature[node];
                if (f < 0 || f >= a->n_features)
                    return -1;
                const double v = xr[f];
                const int go_left = isnan(v) ? a->missing_left[node] != 0
                                             : v <= a->threshold[node];
                node = go_left ? a->left[node] : a->right[node];
            }
            total += a->value[node];
        }
        a->out[r] = total;
    }
    return 0;
}
