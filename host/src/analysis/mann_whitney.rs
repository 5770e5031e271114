//! The Mann-Whitney U test (Wilcoxon rank-sum), as SciPy's
//! `scipy.stats.mannwhitneyu` computes it, checked against its values
//! (`fixtures/mannwhitneyu.json`, made by `fixtures/mannwhitneyu.py`).
//!
//! Why this test: it compares two samples by ranks only, so it needs no
//! assumption about the shape of the distributions (latencies and error rates
//! are skewed, bounded and full of ties), and an outlier counts as one rank,
//! not as its size. Kayenta, Spinnaker's canary judge, uses it for the same
//! reasons.
//!
//! How: pool both samples, rank them (ties get the average of their ranks),
//! and let U be the rank sum of the first sample less its minimum possible
//! value. Without ties and with few samples (fewer than 9 on a side) the
//! p-value comes from the exact distribution of U (every way to split the
//! pooled ranks is equally likely under the null hypothesis); otherwise from
//! the normal approximation with the tie correction of the variance and a
//! continuity correction of 0.5. The normal distribution is statrs's.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// Which difference the test looks for, with `x` the first sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    /// `x` tends to be larger or smaller than `y`.
    TwoSided,
    /// `x` tends to be larger than `y`.
    Greater,
    /// `x` tends to be smaller than `y`.
    Less,
}

/// How the p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The exact distribution of U.
    Exact,
    /// The normal approximation with tie and continuity correction.
    Asymptotic,
}

/// The result of a test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U of the first sample: how many (x, y) pairs have x > y, ties
    /// counting one half. Between 0 and `n_x * n_y`.
    pub u: f64,
    /// The probability of a U at least this extreme if both samples came
    /// from the same distribution.
    pub p_value: f64,
    /// The standardised statistic of the normal approximation (none for the
    /// exact method, or when every value is the same).
    pub z: Option<f64>,
    pub method: Method,
    pub alternative: Alternative,
}

/// Runs the test on `x` and `y` (finite values). `method: None` chooses as
/// SciPy's `auto` does: exact when a side has fewer than 9 values and there
/// are no ties, else asymptotic. An explicit `Exact` falls back to the
/// asymptotic method when the counts would overflow (about 130 values a
/// side). `None` when a sample is empty.
pub fn mann_whitney_u(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    method: Option<Method>,
) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let ranked = rank(x, y);
    let u1 = ranked.rank_sum_x - (n1 * (n1 + 1)) as f64 / 2.0;
    let u2 = (n1 * n2) as f64 - u1;
    let (u, factor) = match alternative {
        Alternative::Greater => (u1, 1.0),
        // By symmetry, the lower tail of U1 is the upper tail of U2.
        Alternative::Less => (u2, 1.0),
        Alternative::TwoSided => (u1.max(u2), 2.0),
    };
    let ties = ranked.tie_term > 0.0;
    let method = method.unwrap_or(if (n1 > 8 && n2 > 8) || ties {
        Method::Asymptotic
    } else {
        Method::Exact
    });
    let exact = match method {
        // Like SciPy, an exact test with ties uses the integer part of U.
        Method::Exact => exact_sf(u.floor() as u64, n1, n2),
        Method::Asymptotic => None,
    };
    let (p, z, method) = match exact {
        Some(p) => (p, None, Method::Exact),
        None => {
            let z = normal_z(u, n1, n2, ranked.tie_term);
            let p = match z {
                Some(z) => Normal::standard().sf(z),
                // Every value the same: nothing suggests a difference.
                None => 1.0,
            };
            (p, z, Method::Asymptotic)
        }
    };
    Some(MannWhitney {
        u: u1,
        p_value: (p * factor).clamp(0.0, 1.0),
        z,
        method,
        alternative,
    })
}

/// The smallest p-value any data of these sizes can give with the exact
/// test: one arrangement of `C(n1 + n2, n1)` (two for a two-sided test). A
/// confidence level whose threshold is below it can never be reached.
pub fn smallest_p_value(n1: usize, n2: usize, alternative: Alternative) -> f64 {
    let (small, n) = (n1.min(n2), n1 + n2);
    // C(n, small) as a float, built up so it never overflows before it matters.
    let mut arrangements = 1.0f64;
    for i in 0..small {
        arrangements = arrangements * (n - i) as f64 / (i + 1) as f64;
    }
    let factor = match alternative {
        Alternative::TwoSided => 2.0,
        _ => 1.0,
    };
    (factor / arrangements).min(1.0)
}

/// The pooled ranks: the rank sum of `x` and `Σ(t³ − t)` over tie groups.
struct Ranked {
    rank_sum_x: f64,
    tie_term: f64,
}

fn rank(x: &[f64], y: &[f64]) -> Ranked {
    // (value, from x)
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    pooled.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < pooled.len() {
        let value = pooled[start].0;
        let end = start
            + pooled[start..]
                .iter()
                .take_while(|(v, _)| *v == value)
                .count();
        // Ranks start + 1 ..= end share their average.
        let average = (start + 1 + end) as f64 / 2.0;
        let in_x = pooled[start..end]
            .iter()
            .filter(|(_, from_x)| *from_x)
            .count();
        rank_sum_x += average * in_x as f64;
        let t = (end - start) as f64;
        tie_term += t * t * t - t;
        start = end;
    }
    Ranked {
        rank_sum_x,
        tie_term,
    }
}

/// `(U − n1·n2/2 − 0.5) / σ`, with σ corrected for ties; `None` when σ is 0.
fn normal_z(u: f64, n1: usize, n2: usize, tie_term: f64) -> Option<f64> {
    let (a, b) = (n1 as f64, n2 as f64);
    let n = a + b;
    let variance = a * b / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    // All values tied: the variance is 0 up to rounding.
    if variance <= 1e-12 * a * b {
        return None;
    }
    Some((u - a * b / 2.0 - 0.5) / variance.sqrt())
}

/// `P(U ≥ k)` under the null hypothesis for samples of `n1` and `n2`, from
/// the exact distribution; `None` when the counts overflow.
///
/// The number of arrangements with `U = u` is the coefficient of `q^u` in
/// the Gaussian binomial `[n1 + n2 choose m]_q = Π_{i=1..m} (1 − q^(n+i)) /
/// (1 − q^i)` with `m = min(n1, n2)`, `n = max(n1, n2)`; multiplying and
/// dividing factor by factor keeps every intermediate a Gaussian binomial
/// (non-negative integers), computed exactly in `i128`.
fn exact_sf(k: u64, n1: usize, n2: usize) -> Option<f64> {
    let (m, n) = (n1.min(n2), n1.max(n2));
    let degree = m.checked_mul(n)?;
    let k = usize::try_from(k).ok()?;
    if k == 0 {
        return Some(1.0);
    }
    if k > degree {
        return Some(0.0);
    }
    // Room for the product's degree before each division brings it back.
    let mut c = vec![0i128; degree + m + 1];
    c[0] = 1;
    let mut top = 0; // the degree so far: [n + i − 1 choose i − 1]_q has (i − 1)·n
    for i in 1..=m {
        // Multiply by (1 − q^(n+i)), downwards so every read is still unchanged.
        let shift = n + i;
        for u in (shift..=top + shift).rev() {
            c[u] = c[u].checked_sub(c[u - shift])?;
        }
        // Divide by (1 − q^i): c[u] += c[u − i], upwards. The division is
        // exact, so everything above the new degree (i·n) comes out 0.
        for u in i..=top + shift {
            c[u] = c[u].checked_add(c[u - i])?;
        }
        top += n;
    }
    c.truncate(degree + 1);
    let total: i128 = c.iter().try_fold(0i128, |s, v| s.checked_add(*v))?;
    let upper: i128 = c[k..].iter().try_fold(0i128, |s, v| s.checked_add(*v))?;
    Some(upper as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Fixtures {
        scipy: String,
        samples: std::collections::BTreeMap<String, Samples>,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Samples {
        x: Vec<f64>,
        y: Vec<f64>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        samples: String,
        alternative: Alternative,
        method: String,
        u: f64,
        p: f64,
    }

    #[test]
    fn matches_scipy_on_every_fixture() {
        let fixtures: Fixtures =
            serde_json::from_str(include_str!("fixtures/mannwhitneyu.json")).unwrap();
        assert!(fixtures.cases.len() >= 30, "{}", fixtures.scipy);
        for case in &fixtures.cases {
            let method = match case.method.as_str() {
                "auto" => None,
                "exact" => Some(Method::Exact),
                "asymptotic" => Some(Method::Asymptotic),
                other => panic!("unknown method {other}"),
            };
            let data = &fixtures.samples[&case.samples];
            let got = mann_whitney_u(&data.x, &data.y, case.alternative, method).unwrap();
            let what = format!(
                "{} {:?} {} (scipy {})",
                case.samples, case.alternative, case.method, fixtures.scipy
            );
            assert_eq!(got.u, case.u, "U of {what}");
            let tolerance = 1e-12 + 1e-9 * case.p;
            assert!(
                (got.p_value - case.p).abs() <= tolerance,
                "p of {what}: {} vs scipy {}",
                got.p_value,
                case.p
            );
        }
    }

    #[test]
    fn auto_chooses_like_scipy() {
        let five = [1.0, 2.0, 3.0, 4.0, 5.0];
        let other = [6.0, 7.0, 8.0, 9.0, 10.0];
        let r = mann_whitney_u(&five, &other, Alternative::Less, None).unwrap();
        assert_eq!((r.method, r.z), (Method::Exact, None));
        let tied = [1.0, 1.0, 3.0, 4.0, 5.0];
        let r = mann_whitney_u(&tied, &other, Alternative::Less, None).unwrap();
        assert_eq!(r.method, Method::Asymptotic);
        assert!(r.z.is_some());
        let nine: Vec<f64> = (0..9).map(f64::from).collect();
        let r = mann_whitney_u(
            &nine,
            &nine.iter().map(|v| v + 0.5).collect::<Vec<_>>(),
            Alternative::TwoSided,
            None,
        )
        .unwrap();
        assert_eq!(r.method, Method::Asymptotic);
    }

    #[test]
    fn empty_samples_give_no_test() {
        assert!(mann_whitney_u(&[], &[1.0], Alternative::TwoSided, None).is_none());
        assert!(mann_whitney_u(&[1.0], &[], Alternative::TwoSided, None).is_none());
    }

    #[test]
    fn exact_distribution_sums_to_one_and_is_symmetric() {
        // 4 and 6: C(10, 4) = 210 arrangements, U from 0 to 24.
        assert_eq!(exact_sf(0, 4, 6), Some(1.0));
        assert_eq!(exact_sf(25, 4, 6), Some(0.0));
        assert_eq!(exact_sf(24, 4, 6), Some(1.0 / 210.0));
        assert_eq!(exact_sf(24, 6, 4), exact_sf(24, 4, 6));
        // P(U ≥ 12) + P(U ≥ 13) = 1 (symmetry around 12).
        let sum = exact_sf(12, 4, 6).unwrap() + exact_sf(13, 4, 6).unwrap();
        assert!((sum - 1.0).abs() < 1e-15, "{sum}");
        // Large enough to overflow: no exact answer.
        assert_eq!(exact_sf(100, 200, 200), None);
        // A lopsided pair is still exact and fast.
        assert!(exact_sf(5000, 8, 1000).is_some());
    }

    #[test]
    fn smallest_p_values() {
        assert_eq!(smallest_p_value(5, 5, Alternative::Greater), 1.0 / 252.0);
        assert_eq!(smallest_p_value(5, 5, Alternative::TwoSided), 2.0 / 252.0);
        assert_eq!(smallest_p_value(3, 3, Alternative::Greater), 1.0 / 20.0);
        assert!(smallest_p_value(1000, 1000, Alternative::TwoSided) < 1e-100);
    }
}
