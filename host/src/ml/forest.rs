//! A serialisable random forest over linfa-trees decision trees.
//!
//! `linfa-ensemble`'s forest cannot be serialised, and the model must live in
//! the history database, so the bagging is done here: each tree is a plain
//! `linfa_trees::DecisionTree` (serialisable with the `serde` feature) fitted
//! on a bootstrap sample of the rows and a random subset of the columns, and
//! stored together with the column indices it saw. Everything the forest
//! needs after training (trees, out-of-bag accuracy, importances) is plain
//! data, so a deserialised forest predicts exactly like the one that trained.
//!
//! Two kinds of weights shape a fit ([`FitWeights`]):
//!
//! - **Row weights** (recency: how much an older deployment still counts).
//!   linfa-trees 0.8 honours `Dataset` weights where it matters: the Gini
//!   score of a split is computed over weighted class frequencies, a leaf
//!   needs `min_weight_leaf` of weight, and a leaf's class is the weighted
//!   mode. So a row's weight multiplies its bootstrap draw count and goes in
//!   as the sample weight; the leaf shares and the importances are weighted
//!   the same way. Weights are scaled to a mean of 1, so `min_samples_leaf`
//!   keeps meaning "deployments' worth".
//! - **Column weights** (`ml_config.feature_weights`): a tree's columns are
//!   drawn without replacement with probability proportional to their weight
//!   (Efraimidis–Spirakis, `rand::seq::index::sample_weighted`); a column
//!   weighing 0 is never drawn.
//!
//! Training is reproducible: tree `i` draws from its own `StdRng` seeded from
//! `(seed, i)`, so the result does not depend on how many threads fitted the
//! trees. Trees are fitted on scoped threads (one per core); call
//! [`RandomForest::fit`] from a blocking context (`spawn_blocking`), not on an
//! async worker.
//!
//! Prediction walks each tree with the public node accessors instead of
//! building an `ndarray` per call, which keeps one prediction in the
//! microseconds and cannot panic on a short row or a hand-edited model.

use linfa::prelude::*;
use linfa_trees::{DecisionTree, SplitQuality, TreeNode};
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::MlError;

/// Hyper-parameters of [`RandomForest::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForestParams {
    /// Number of trees.
    pub trees: usize,
    /// Maximum depth of each tree.
    pub max_depth: usize,
    /// A node with fewer distinct training rows is not split (at least 2).
    pub min_samples_split: usize,
    /// A split must leave at least this many (bootstrap-weighted) training
    /// rows in each leaf: leaves average over several deployments instead of
    /// memorising one, which keeps probabilities smooth on small histories.
    pub min_samples_leaf: usize,
    /// Share of the columns each tree sees, in (0, 1].
    pub feature_fraction: f64,
    /// Bootstrap sample size as a share of the rows, in (0, 1].
    pub bootstrap_fraction: f64,
    /// Seed of the random draws: same data + same params = same forest.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            trees: 50,
            max_depth: 8,
            min_samples_split: 2,
            min_samples_leaf: 3,
            feature_fraction: 0.7,
            bootstrap_fraction: 1.0,
            seed: 0x00ad_e910,
        }
    }
}

impl ForestParams {
    fn validate(&self) -> Result<(), MlError> {
        let bad = |m: &str| Err(MlError::InvalidParams(m.to_string()));
        if self.trees == 0 {
            return bad("trees must be at least 1");
        }
        if self.max_depth == 0 || self.max_depth > MAX_DEPTH {
            return bad("max_depth must be between 1 and 60");
        }
        if self.min_samples_split < 2 {
            return bad("min_samples_split must be at least 2");
        }
        if !(self.feature_fraction > 0.0 && self.feature_fraction <= 1.0) {
            return bad("feature_fraction must be in (0, 1]");
        }
        if !(self.bootstrap_fraction > 0.0 && self.bootstrap_fraction <= 1.0) {
            return bad("bootstrap_fraction must be in (0, 1]");
        }
        Ok(())
    }
}

/// The deepest tree a leaf path ([`leaf_of`]) can name.
const MAX_DEPTH: usize = 60;

/// One tree, the columns of the full matrix it was trained on, and the share
/// of success among the training rows that reached each leaf.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FittedTree {
    columns: Vec<usize>,
    tree: DecisionTree<f64, usize>,
    /// Leaf path ([`leaf_of`]) → weighted share of successful training rows.
    leaf_p: std::collections::BTreeMap<u64, f64>,
}

/// The leaf a row reaches and its path from the root: a leading 1 bit, then
/// one bit per level (0 left, 1 right). `value(f)` is the row's value of the
/// tree's feature `f`; `None` if it has none or the tree is malformed.
fn leaf_of(
    root: &TreeNode<f64, usize>,
    value: impl Fn(usize) -> Option<f64>,
) -> Option<(&TreeNode<f64, usize>, u64)> {
    let mut node = root;
    let mut path = 1u64;
    for _ in 0..=MAX_DEPTH {
        if node.is_leaf() {
            return Some((node, path));
        }
        let (feature, threshold, _) = node.split();
        let right = value(feature)? >= threshold;
        path = (path << 1) | u64::from(right);
        let children = node.children();
        node = children.get(usize::from(right))?.as_deref()?;
    }
    None
}

impl FittedTree {
    fn leaf(&self, row: &[f64]) -> Option<(&TreeNode<f64, usize>, u64)> {
        leaf_of(self.tree.root_node(), |f| {
            self.columns.get(f).and_then(|&c| row.get(c)).copied()
        })
    }

    /// The tree's vote for `row` (full-width), `None` if the row is too short
    /// for it or the tree is malformed.
    fn vote(&self, row: &[f64]) -> Option<bool> {
        self.leaf(row)?.0.prediction().map(|label| label == 1)
    }

    /// The share of success in the leaf `row` reaches (its vote when the leaf
    /// has no recorded share).
    fn proba(&self, row: &[f64]) -> Option<f64> {
        let (node, path) = self.leaf(row)?;
        self.leaf_p
            .get(&path)
            .copied()
            .or_else(|| node.prediction().map(|l| if l == 1 { 1.0 } else { 0.0 }))
    }
}

/// A bagged forest of binary decision trees (`true` = success).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RandomForest {
    n_features: usize,
    trees: Vec<FittedTree>,
    /// Set when the training labels had one class: no trees, always this.
    constant: Option<bool>,
    oob_accuracy: Option<f64>,
    importances: Vec<f64>,
}

/// Decorrelated per-tree seed (splitmix64 of seed + index).
fn tree_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed.wrapping_add(
        (index as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Weight of one draw of a success row (a failure draw weighs 1): linfa-trees picks a
/// leaf's class by iterating a `HashMap`, so an exact tie would be decided by
/// hash order and training would not be reproducible. The slightly lighter
/// success rows break every tie the same way, towards failure (the cautious
/// answer for a deployment); 2^-10 is exact in f32 and too small to change
/// any split that is not a tie.
const SUCCESS_WEIGHT: f32 = 1.0 - 1.0 / 1024.0;

/// One fitted tree, its in-bag mask and its (unnormalised) importances.
type TreeFit = (FittedTree, Vec<bool>, Vec<f64>);

/// Weights of a fit; `None` is "all 1".
#[derive(Debug, Clone, Copy, Default)]
pub struct FitWeights<'a> {
    /// One per row, ≥ 0: how much the row counts (recency). Scaled to a
    /// mean of 1; a row weighing 0 is left out.
    pub rows: Option<&'a [f64]>,
    /// One per column, ≥ 0: the column's chance, relative to the others, to
    /// be among a tree's columns. A column weighing 0 is never used.
    pub columns: Option<&'a [f64]>,
}

/// The checked weights a tree is fitted with.
struct Checked {
    /// Per row, mean 1 over the rows.
    rows: Vec<f64>,
    /// Per column, `None` when all are equal (plain uniform sampling).
    columns: Option<Vec<f64>>,
    /// Columns with a positive weight.
    usable_columns: usize,
}

fn check_weights(w: &FitWeights<'_>, n: usize, d: usize) -> Result<Checked, MlError> {
    let bad = |m: String| Err(MlError::InvalidParams(m));
    let rows = match w.rows {
        None => vec![1.0; n],
        Some(r) if r.len() != n => return bad(format!("{} row weights for {n} rows", r.len())),
        Some(r) => {
            if let Some(i) = r.iter().position(|v| !v.is_finite() || *v < 0.0) {
                return bad(format!("row weight {} at row {i} is not a weight", r[i]));
            }
            let sum: f64 = r.iter().sum();
            if sum <= 0.0 {
                return Err(MlError::EmptyData);
            }
            r.iter().map(|v| v * n as f64 / sum).collect()
        }
    };
    let (columns, usable_columns) = match w.columns {
        None => (None, d),
        Some(c) if c.len() != d => {
            return bad(format!("{} column weights for {d} columns", c.len()));
        }
        Some(c) => {
            if let Some(i) = c.iter().position(|v| !v.is_finite() || *v < 0.0) {
                return bad(format!(
                    "column weight {} at column {i} is not a weight",
                    c[i]
                ));
            }
            let usable = c.iter().filter(|v| **v > 0.0).count();
            if usable == 0 {
                return bad("every column weighs 0".to_string());
            }
            let uniform = c.iter().all(|v| *v == c[0]);
            ((!uniform).then(|| c.to_vec()), usable)
        }
    };
    Ok(Checked {
        rows,
        columns,
        usable_columns,
    })
}

/// Fit tree `index` on its bootstrap sample and column subset.
fn fit_tree(
    x: &Array2<f64>,
    y: &[bool],
    weights: &Checked,
    params: &ForestParams,
    index: usize,
) -> Result<TreeFit, MlError> {
    let (n, d) = x.dim();
    let mut rng = StdRng::seed_from_u64(tree_seed(params.seed, index));
    let n_boot = ((n as f64 * params.bootstrap_fraction).round() as usize).clamp(1, n);
    let k = ((d as f64 * params.feature_fraction).round() as usize)
        .clamp(1, d)
        .min(weights.usable_columns);

    // A bootstrap sample holds ~37% duplicates: fit on the distinct rows
    // weighted by how often they were drawn. The split scores are the same
    // (linfa-trees works on weighted class frequencies) and every node scan
    // is over fewer rows, which is most of the training time.
    let mut drawn = vec![0u32; n];
    for _ in 0..n_boot {
        drawn[rng.gen_range(0..n)] += 1;
    }
    let in_bag: Vec<bool> = drawn
        .iter()
        .zip(&weights.rows)
        .map(|(&c, &w)| c > 0 && w > 0.0)
        .collect();
    let rows: Vec<usize> = (0..n).filter(|&r| in_bag[r]).collect();
    if rows.is_empty() {
        return Err(MlError::EmptyData);
    }
    let mut columns = match &weights.columns {
        None => rand::seq::index::sample(&mut rng, d, k).into_vec(),
        Some(cw) => rand::seq::index::sample_weighted(&mut rng, d, |c| cw[c], k)
            .map_err(|e| MlError::InvalidParams(e.to_string()))?
            .into_vec(),
    };
    columns.sort_unstable();

    let records = Array2::from_shape_fn((rows.len(), k), |(r, c)| x[[rows[r], columns[c]]]);
    let labels: Vec<bool> = rows.iter().map(|&r| y[r]).collect();
    let counts: Vec<f64> = rows
        .iter()
        .map(|&r| f64::from(drawn[r]) * weights.rows[r])
        .collect();
    let targets: Array1<usize> = labels.iter().map(|&v| usize::from(v)).collect();
    let weights: Array1<f32> = rows
        .iter()
        .zip(&counts)
        .map(|(&r, &c)| c as f32 * if y[r] { SUCCESS_WEIGHT } else { 1.0 })
        .collect();
    let dataset = Dataset::new(records, targets).with_weights(weights);
    let tree = DecisionTree::params()
        .split_quality(SplitQuality::Gini)
        .max_depth(Some(params.max_depth))
        .min_weight_split(params.min_samples_split as f32)
        .min_weight_leaf((params.min_samples_leaf.max(1) as f32) - 0.5)
        .fit(&dataset)
        .map_err(|e| MlError::Train(e.to_string()))?;

    let mut importance = vec![0.0; d];
    let sample: Vec<usize> = (0..rows.len()).collect();
    // Leaf shares: every distinct in-bag row, weighted by its draws.
    let mut tally: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
    for (r, (&label, &count)) in labels.iter().zip(&counts).enumerate() {
        if let Some((_, path)) =
            leaf_of(tree.root_node(), |f| dataset.records().get((r, f)).copied())
        {
            let e = tally.entry(path).or_default();
            e.0 += if label { count } else { 0.0 };
            e.1 += count;
        }
    }
    let leaf_p = tally
        .into_iter()
        .filter(|(_, (_, n))| *n > 0.0)
        .map(|(path, (yes, n))| (path, yes / n))
        .collect();
    let fitted = FittedTree {
        columns,
        tree,
        leaf_p,
    };
    mdi(
        fitted.tree.root_node(),
        &sample,
        dataset.records(),
        &Weighted {
            labels: &labels,
            counts: &counts,
        },
        &fitted.columns,
        &mut importance,
    );
    Ok((fitted, in_bag, importance))
}

/// Labels and draw counts of a tree's distinct training rows.
struct Weighted<'a> {
    labels: &'a [bool],
    counts: &'a [f64],
}

impl Weighted<'_> {
    /// Gini impurity of `rows` times their total draw count.
    fn gini(&self, rows: &[usize]) -> f64 {
        let n: f64 = rows.iter().map(|&r| self.counts[r]).sum();
        if n <= 0.0 {
            return 0.0;
        }
        let yes: f64 = rows
            .iter()
            .filter(|&&r| self.labels[r])
            .map(|&r| self.counts[r])
            .sum();
        let p = yes / n;
        n * 2.0 * p * (1.0 - p)
    }
}

/// Mean decrease in impurity: push the tree's own training rows through it
/// and credit each split's column with its size-weighted Gini decrease.
/// (linfa's `feature_importance` averages unweighted per-node decreases, so a
/// split of two rows near a leaf counts as much as the root split.)
fn mdi(
    node: &TreeNode<f64, usize>,
    rows: &[usize],
    records: &Array2<f64>,
    labels: &Weighted<'_>,
    columns: &[usize],
    importance: &mut [f64],
) {
    if node.is_leaf() || rows.is_empty() {
        return;
    }
    let (feature, threshold, _) = node.split();
    let (left, right): (Vec<usize>, Vec<usize>) = rows
        .iter()
        .partition(|&&r| records.get((r, feature)).is_some_and(|&v| v < threshold));
    if let Some(slot) = columns.get(feature).and_then(|&c| importance.get_mut(c)) {
        *slot += labels.gini(rows) - labels.gini(&left) - labels.gini(&right);
    }
    let children = node.children();
    for (child, part) in children.into_iter().zip([left, right]) {
        if let Some(child) = child.as_deref() {
            mdi(child, &part, records, labels, columns, importance);
        }
    }
}

impl RandomForest {
    /// Train on `x` (one row per sample) and labels `y`.
    ///
    /// Errors on empty data, mismatched lengths, non-finite values and bad
    /// parameters. Labels of a single class (among the rows that weigh
    /// something) are fine: the forest then always predicts that class (and
    /// reports no out-of-bag accuracy).
    pub fn fit(x: &Array2<f64>, y: &[bool], params: &ForestParams) -> Result<Self, MlError> {
        Self::fit_weighted(x, y, FitWeights::default(), params)
    }

    /// [`fit`](Self::fit) with row and column weights ([`FitWeights`]).
    ///
    /// Errors also on weights of the wrong length, negative or non-finite
    /// weights, rows that all weigh 0 and columns that all weigh 0.
    pub fn fit_weighted(
        x: &Array2<f64>,
        y: &[bool],
        weights: FitWeights<'_>,
        params: &ForestParams,
    ) -> Result<Self, MlError> {
        params.validate()?;
        let (n, d) = x.dim();
        if n == 0 || d == 0 {
            return Err(MlError::EmptyData);
        }
        if y.len() != n {
            return Err(MlError::Shape {
                rows: n,
                labels: y.len(),
            });
        }
        if let Some(((row, column), _)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(MlError::NonFinite { row, column });
        }
        let weights = check_weights(&weights, n, d)?;
        let counted: Vec<bool> = y
            .iter()
            .zip(&weights.rows)
            .filter(|(_, w)| **w > 0.0)
            .map(|(v, _)| *v)
            .collect();
        if counted.iter().all(|&v| v == counted[0]) {
            return Ok(RandomForest {
                n_features: d,
                trees: Vec::new(),
                constant: Some(counted[0]),
                oob_accuracy: None,
                importances: vec![0.0; d],
            });
        }

        let threads = std::thread::available_parallelism()
            .map_or(1, |p| p.get())
            .min(params.trees);
        let fitted: Vec<Result<TreeFit, MlError>> = if threads <= 1 {
            (0..params.trees)
                .map(|i| fit_tree(x, y, &weights, params, i))
                .collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let weights = &weights;
                        s.spawn(move || {
                            (t..params.trees)
                                .step_by(threads)
                                .map(|i| (i, fit_tree(x, y, weights, params, i)))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let mut all: Vec<(usize, Result<_, MlError>)> = Vec::with_capacity(params.trees);
                for h in handles {
                    match h.join() {
                        Ok(part) => all.extend(part),
                        Err(_) => all.push((
                            usize::MAX,
                            Err(MlError::Train("a tree worker panicked".into())),
                        )),
                    }
                }
                all.sort_by_key(|(i, _)| *i);
                all.into_iter().map(|(_, r)| r).collect()
            })
        };
        let mut trees = Vec::with_capacity(params.trees);
        let mut bags = Vec::with_capacity(params.trees);
        let mut importance = vec![0.0; d];
        for r in fitted {
            let (tree, in_bag, imp) = r?;
            trees.push(tree);
            bags.push(in_bag);
            for (total, v) in importance.iter_mut().zip(imp) {
                *total += v.max(0.0);
            }
        }

        // Out-of-bag accuracy: each row judged only by trees that never saw it.
        let (mut judged, mut correct) = (0usize, 0usize);
        for (r, row) in x.rows().into_iter().enumerate() {
            let row = row.to_vec();
            let (mut yes, mut total) = (0usize, 0usize);
            for (tree, bag) in trees.iter().zip(&bags) {
                if !bag[r]
                    && let Some(v) = tree.vote(&row)
                {
                    total += 1;
                    yes += usize::from(v);
                }
            }
            if total > 0 {
                judged += 1;
                correct += usize::from((2 * yes >= total) == y[r]);
            }
        }
        let oob_accuracy = (judged > 0).then(|| correct as f64 / judged as f64);
        let sum: f64 = importance.iter().sum();
        let importances = if sum > 0.0 {
            importance.into_iter().map(|v| v / sum).collect()
        } else {
            vec![0.0; d]
        };
        Ok(RandomForest {
            n_features: d,
            trees,
            constant: None,
            oob_accuracy,
            importances,
        })
    }

    /// Probability of success for `row` (the same columns as in training):
    /// the mean over trees of the share of success in the leaf the row
    /// reaches, as scikit-learn's forests do. (A share of trees *voting*
    /// success saturates: when success is the majority everywhere, 97% and
    /// 85% strategies both score 1.0.) 0.5 when no tree can judge the row
    /// (e.g. it is too short).
    pub fn predict_proba(&self, row: &[f64]) -> f64 {
        if let Some(c) = self.constant {
            return if c { 1.0 } else { 0.0 };
        }
        let (mut sum, mut total) = (0.0, 0usize);
        for tree in &self.trees {
            if let Some(p) = tree.proba(row) {
                total += 1;
                sum += p;
            }
        }
        if total == 0 { 0.5 } else { sum / total as f64 }
    }

    /// Accuracy on out-of-bag rows, measured during [`fit`](Self::fit).
    pub fn oob_accuracy(&self) -> Option<f64> {
        self.oob_accuracy
    }

    /// Per-column importance (mean decrease in Gini impurity, weighted by the
    /// rows reaching each split), summing to 1 (all 0 when nothing was split).
    pub fn feature_importances(&self) -> Vec<f64> {
        self.importances.clone()
    }

    /// Number of columns the forest was trained on.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` rows of 4 uniform features in [0, 100); success iff column 0 < 50.
    fn separable(n: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, 4), |_| rng.gen_range(0.0..100.0));
        let y = x.column(0).iter().map(|&v| v < 50.0).collect();
        (x, y)
    }

    #[test]
    fn learns_a_separable_rule() {
        let (x, y) = separable(400, 1);
        let f = RandomForest::fit(&x, &y, &ForestParams::default()).unwrap();
        assert_eq!(f.n_trees(), 50);
        let (xt, yt) = separable(200, 2);
        let hits = xt
            .rows()
            .into_iter()
            .zip(&yt)
            .filter(|(r, y)| (f.predict_proba(&r.to_vec()) >= 0.5) == **y)
            .count();
        let acc = hits as f64 / yt.len() as f64;
        assert!(acc > 0.9, "held-out accuracy {acc}");
        let oob = f.oob_accuracy().unwrap();
        assert!(oob > 0.8, "oob accuracy {oob}");
        let imp = f.feature_importances();
        assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(imp[0] > 0.5, "column 0 should dominate: {imp:?}");
    }

    #[test]
    fn training_is_reproducible() {
        let (x, y) = separable(200, 3);
        let p = ForestParams {
            trees: 10,
            ..ForestParams::default()
        };
        let a = RandomForest::fit(&x, &y, &p).unwrap();
        let b = RandomForest::fit(&x, &y, &p).unwrap();
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }

    #[test]
    fn single_class_predicts_that_class() {
        let (x, _) = separable(20, 4);
        let f = RandomForest::fit(&x, &[false; 20], &ForestParams::default()).unwrap();
        assert_eq!(f.predict_proba(&[1.0, 2.0, 3.0, 4.0]), 0.0);
        assert_eq!(f.oob_accuracy(), None);
    }

    #[test]
    fn bad_input_is_an_error() {
        let p = ForestParams::default();
        let empty = Array2::<f64>::zeros((0, 3));
        assert!(matches!(
            RandomForest::fit(&empty, &[], &p),
            Err(MlError::EmptyData)
        ));
        let (mut x, y) = separable(10, 5);
        assert!(matches!(
            RandomForest::fit(&x, &y[..9], &p),
            Err(MlError::Shape {
                rows: 10,
                labels: 9
            })
        ));
        x[[3, 2]] = f64::NAN;
        assert!(matches!(
            RandomForest::fit(&x, &y, &p),
            Err(MlError::NonFinite { row: 3, column: 2 })
        ));
        let bad = ForestParams {
            feature_fraction: 0.0,
            ..p
        };
        assert!(matches!(
            RandomForest::fit(&x, &y, &bad),
            Err(MlError::InvalidParams(_))
        ));
    }

    #[test]
    fn row_weights_let_the_newest_rows_decide() {
        // The first half says "success below 50", the second the opposite.
        let (x, y_old) = separable(400, 8);
        let y: Vec<bool> = y_old
            .iter()
            .enumerate()
            .map(|(i, &v)| if i < 200 { v } else { !v })
            .collect();
        let rows: Vec<f64> = (0..400).map(|i| if i < 200 { 0.01 } else { 1.0 }).collect();
        let p = ForestParams {
            trees: 30,
            ..ForestParams::default()
        };
        let weighted = RandomForest::fit_weighted(
            &x,
            &y,
            FitWeights {
                rows: Some(&rows),
                columns: None,
            },
            &p,
        )
        .unwrap();
        let low = [10.0, 50.0, 50.0, 50.0];
        let high = [90.0, 50.0, 50.0, 50.0];
        assert!(
            weighted.predict_proba(&low) < 0.2,
            "{}",
            weighted.predict_proba(&low)
        );
        assert!(weighted.predict_proba(&high) > 0.8);
        // Unweighted, the two halves cancel out.
        let plain = RandomForest::fit(&x, &y, &p).unwrap();
        assert!((plain.predict_proba(&low) - 0.5).abs() < 0.3);
    }

    #[test]
    fn column_weights_steer_attention_and_zero_excludes() {
        // Columns 0 and 1 both carry the label; 2 and 3 are noise.
        let (mut x, y) = separable(300, 9);
        for r in 0..300 {
            x[[r, 1]] = x[[r, 0]] + 0.5;
        }
        let p = ForestParams {
            trees: 40,
            feature_fraction: 0.5,
            ..ForestParams::default()
        };
        let fit = |w: [f64; 4]| {
            RandomForest::fit_weighted(
                &x,
                &y,
                FitWeights {
                    rows: None,
                    columns: Some(&w),
                },
                &p,
            )
            .unwrap()
            .feature_importances()
        };
        let first = fit([5.0, 0.2, 1.0, 1.0]);
        let second = fit([0.2, 5.0, 1.0, 1.0]);
        assert!(first[0] > 2.0 * first[1], "{first:?}");
        assert!(second[1] > 2.0 * second[0], "{second:?}");
        let off = fit([0.0, 1.0, 1.0, 1.0]);
        assert_eq!(off[0], 0.0, "{off:?}");
        assert!(off[1] > 0.5, "{off:?}");
    }

    #[test]
    fn bad_weights_are_errors() {
        let (x, y) = separable(20, 10);
        let p = ForestParams::default();
        let fit = |rows: Option<&[f64]>, columns: Option<&[f64]>| {
            RandomForest::fit_weighted(&x, &y, FitWeights { rows, columns }, &p)
        };
        assert!(matches!(
            fit(Some(&[1.0; 3]), None),
            Err(MlError::InvalidParams(_))
        ));
        assert!(matches!(
            fit(Some(&[0.0; 20]), None),
            Err(MlError::EmptyData)
        ));
        let mut negative = vec![1.0; 20];
        negative[4] = -1.0;
        assert!(matches!(
            fit(Some(&negative), None),
            Err(MlError::InvalidParams(_))
        ));
        assert!(matches!(
            fit(None, Some(&[0.0; 4])),
            Err(MlError::InvalidParams(_))
        ));
        assert!(matches!(
            fit(None, Some(&[1.0, f64::NAN, 1.0, 1.0])),
            Err(MlError::InvalidParams(_))
        ));
    }

    #[test]
    fn short_rows_do_not_panic() {
        let (x, y) = separable(100, 6);
        let f = RandomForest::fit(&x, &y, &ForestParams::default()).unwrap();
        let p = f.predict_proba(&[]);
        assert!((0.0..=1.0).contains(&p));
    }
}
