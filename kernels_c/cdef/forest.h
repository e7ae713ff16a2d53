/* Sums of regression trees (a boosted ensemble's raw prediction), one sum per row.
 *
 * Trees share one array of packed 16-byte nodes (four to a cache line, instead of one line
 * in each of seven arrays): node i is a leaf when feature < 0, worth value_or_threshold;
 * otherwise it splits on x[feature]: x <= threshold goes to node i + left, x > threshold
 * to node i + right, a missing value (NaN) to left when missing_left != 0. Row r sums the
 * trees whose roots are roots[row_start[r] .. row_start[r] + row_count[r] - 1]. Consecutive
 * rows with the same trees (a query's candidates share their kernel's trees) go down each tree
 * together, so each tree is read once for the run of rows and a split on a feature the rows
 * share is decided once. x is row-major, n_rows x n_features (float64). Returns 0; -1
 * when a walk leaves the node array, reads a feature past n_features or visits more nodes
 * than there are (malformed trees; the Python side validates first, this keeps a bad array
 * from reading out of bounds); -2 when out of memory (two arrays of n_rows entries).
 */
typedef struct {
    double value_or_threshold;
    int16_t feature;
    int16_t left;               /* children as offsets from this node (they follow it) */
    int16_t right;
    uint8_t missing_left;
    uint8_t unused;
} forest_node;

typedef struct {
    int64_t n_rows, n_features, n_nodes, n_roots;
    const double *x;
    const forest_node *nodes;
    const int64_t *roots;
    const int64_t *row_start;
    const int64_t *row_count;
    double *out;
} forest_sum_args;

int forest_sum(void *args);
