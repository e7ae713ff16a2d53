/* Sums of regression trees (a boosted ensemble's raw prediction), one sum per row.
 *
 * Trees are flat node arrays shared by every tree: node i is a leaf (is_leaf[i] != 0, value
 * value[i]) or splits on feature[i]: x <= threshold[i] goes to left[i], x > threshold[i] to
 * right[i], a missing value (NaN) to left[i] when missing_left[i] != 0. Row r sums the trees
 * whose roots are roots[row_start[r] .. row_start[r] + row_count[r] - 1]. x is row-major,
 * n_rows x n_features (float64). Returns 0, or -1 when a walk leaves the node arrays, reads
 * a feature past n_features or takes more than n_nodes steps (malformed trees; the Python
 * side validates first, this keeps a bad array from reading out of bounds).
 */
typedef struct {
    int64_t n_rows, n_features, n_nodes, n_roots;
    const double *x;
    const int64_t *feature;
    const double *threshold;
    const int64_t *left;
    const int64_t *right;
    const uint8_t *missing_left;
    const uint8_t *is_leaf;
    const double *value;
    const int64_t *roots;
    const int64_t *row_start;
    const int64_t *row_count;
    double *out;
} forest_sum_args;

int forest_sum(void *args);
