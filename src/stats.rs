//! Statistics for `autorun compare`: summaries of samples and Welch's t-test, with the
//! Student t distribution computed through the regularized incomplete beta function.

use serde::Serialize;

/// The significance level `compare` reports against.
pub const ALPHA: f64 = 0.05;

/// Count, mean, sample standard deviation, minimum and maximum of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divisor `n - 1`); `None` when `n < 2`.
    pub sd: Option<f64>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summarises `values`; `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        // Two passes: the sum of squared deviations from the mean is accurate where the
        // textbook sum-of-squares formula cancels.
        let sd = (n >= 2).then(|| {
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Summary {
            n,
            mean,
            sd,
            min,
            max,
        })
    }

    /// The sample variance, when there is one.
    pub fn variance(&self) -> Option<f64> {
        self.sd.map(|s| s * s)
    }
}

/// The result of Welch's unequal-variances t-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Welch {
    /// `(mean_b - mean_a) / sqrt(var_a/n_a + var_b/n_b)`: positive when B's mean is larger.
    pub t: f64,
    /// Degrees of freedom by the Welch–Satterthwaite equation.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Welch's t-test of B against A. `None` when a side has fewer than two values or both
/// sides have no spread at all (the statistic is undefined, as scipy's `nan`).
pub fn welch(a: &Summary, b: &Summary) -> Option<Welch> {
    let (va, vb) = (a.variance()? / a.n as f64, b.variance()? / b.n as f64);
    let se2 = va + vb;
    if se2 <= 0.0 || !se2.is_finite() {
        return None;
    }
    let t = (b.mean - a.mean) / se2.sqrt();
    let df = se2 * se2 / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    Some(Welch {
        t,
        df,
        p: student_t_two_sided(t, df),
    })
}

/// `P(|T| >= |t|)` for Student's t distribution with `df` degrees of freedom:
/// `I_{df/(df+t²)}(df/2, 1/2)`.
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    let t2 = t * t;
    // x and 1 - x, each computed without cancellation.
    let x = df / (df + t2);
    let y = t2 / (df + t2);
    beta_reg_pair(df / 2.0, 0.5, x, y).clamp(0.0, 1.0)
}

/// The regularized incomplete beta function `I_x(a, b)` for `a, b > 0` and `0 <= x <= 1`.
pub fn beta_reg(a: f64, b: f64, x: f64) -> f64 {
    beta_reg_pair(a, b, x, 1.0 - x)
}

/// `I_x(a, b)` given both `x` and `y = 1 - x` (the caller may know `y` more precisely).
fn beta_reg_pair(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if x.is_nan() || a <= 0.0 || b <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 0.0;
    }
    if y <= 0.0 {
        return 1.0;
    }
    // x^a y^b / (a B(a, b)), in logarithms.
    let ln_front = a * x.ln() + b * y.ln() + ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b);
    // The continued fraction converges fast for x < (a+1)/(a+b+2); otherwise use the
    // symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, y) / b
    }
}

/// The continued fraction of the incomplete beta function, by the modified Lentz method.
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const EPS: f64 = 1e-16;
    const TINY: f64 = 1e-300;
    const MAX_ITER: usize = 10_000;
    let nonzero = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - qab * x / qap);
    let mut h = d;
    // One Lentz step with coefficient `aa`: updates c and d, returns the factor for h.
    let mut step = |aa: f64| {
        d = 1.0 / nonzero(1.0 + aa * d);
        c = nonzero(1.0 + aa / c);
        d * c
    };
    for m in 1..=MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)));
        let del = step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)));
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// `ln Γ(x)` for `x > 0`, by the Lanczos approximation (g = 7, 9 terms; about 15 digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1-x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    //! Reference values from scipy 1.17.1: `scipy.special.betainc(a, b, x)`,
    //! `2 * scipy.stats.t.sf(abs(t), df)`, and for Welch's test
    //! `scipy.stats.ttest_ind(b, a, equal_var=False)` (statistic and pvalue) with the
    //! Welch–Satterthwaite df computed from `numpy.var(ddof=1)`.
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        let err = if want == 0.0 {
            got.abs()
        } else {
            ((got - want) / want).abs()
        };
        assert!(
            err <= rel,
            "got {got:e}, want {want:e} (relative error {err:e})"
        );
    }

    #[test]
    fn ln_gamma_known_values() {
        close(ln_gamma(1.0), 0.0, 1e-15);
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-14);
        // ln(9!) for Γ(10).
        close(ln_gamma(10.0), 362_880f64.ln(), 1e-14);
        close(ln_gamma(0.1), 2.252_712_651_734_206, 1e-13);
    }

    #[test]
    fn incomplete_beta_matches_scipy() {
        for (a, b, x, want) in [
            (0.5, 0.5, 0.3, 0.369_010_119_565_545_36),
            (2.0, 3.0, 0.4, 0.524_799_999_999_999_9),
            (5.0, 0.5, 0.9, 0.316_642_915_020_012_2),
            (10.0, 10.0, 0.5, 0.5),
            (1.5, 0.5, 0.01, 0.000_425_693_286_577_892_5),
            (100.0, 0.5, 0.99, 0.156_775_865_424_440_8),
        ] {
            close(beta_reg(a, b, x), want, 1e-12);
        }
        assert_eq!(beta_reg(2.0, 3.0, 0.0), 0.0);
        assert_eq!(beta_reg(2.0, 3.0, 1.0), 1.0);
    }

    #[test]
    fn student_t_matches_scipy_and_closed_forms() {
        for (t, df, want) in [
            (0.0, 5.0, 1.0),
            (1.0, 1.0, 0.5),
            (2.0, 2.0, 0.183_503_419_072_273_97),
            (2.228_138_851_986, 10.0, 0.050_000_000_000_023_255),
            (1.5, 3.7, 0.213_598_169_202_013_5),
            (-3.2, 7.25, 0.014_371_344_768_516_234),
            (10.0, 30.0, 4.575_251_408_229_618e-11),
            (40.0, 4.0, 2.334_016_322_601_267_8e-6),
            (0.1, 1000.0, 0.920_364_369_023_604_1),
        ] {
            close(student_t_two_sided(t, df), want, 1e-10);
        }
        // df = 1 is the Cauchy distribution: p = 1 - 2 atan(|t|) / π.
        for t in [0.3, 3.0, 25.0] {
            let want = 1.0 - 2.0 * f64::atan(t) / std::f64::consts::PI;
            close(student_t_two_sided(t, 1.0), want, 1e-12);
        }
        // df = 2: p = 1 - |t| / sqrt(2 + t²).
        for t in [0.5, 4.0] {
            close(
                student_t_two_sided(t, 2.0),
                1.0 - t / (2.0 + t * t).sqrt(),
                1e-12,
            );
        }
        assert_eq!(student_t_two_sided(f64::INFINITY, 3.0), 0.0);
    }

    #[test]
    fn summaries() {
        let s = Summary::of(&[19.1, 20.3, 20.9, 19.7]).unwrap();
        assert_eq!(s.n, 4);
        close(s.mean, 20.0, 1e-15);
        close(s.sd.unwrap(), 0.774_596_669_241_482_4, 1e-12);
        assert_eq!((s.min, s.max), (19.1, 20.9));
        let one = Summary::of(&[3.0]).unwrap();
        assert_eq!(one.sd, None);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn welch_matches_scipy() {
        // (A, B, t, df, p)
        type Case<'a> = (&'a [f64], &'a [f64], f64, f64, f64);
        let cases: [Case; 5] = [
            (
                &[10.0, 11.0, 12.0],
                &[20.0, 21.0, 22.0],
                12.247_448_713_915_89,
                4.0,
                0.000_255_216_749_441_926_8,
            ),
            (
                &[100.0, 102.0, 98.0, 101.0, 99.0],
                &[90.0, 91.0, 89.0, 92.0, 88.0],
                -10.0,
                8.0,
                8.488_181_527_628_489e-6,
            ),
            (
                &[5.0, 5.2, 4.8],
                &[5.1, 4.9, 5.3],
                0.612_372_435_695_797_8,
                4.0,
                0.573_392_253_825_354,
            ),
            (
                &[1.0, 2.0, 3.0, 4.0],
                &[2.0, 4.0, 6.0],
                1.133_893_419_027_681_7,
                3.234_718_826_405_868,
                0.333_823_700_077_501_06,
            ),
            (
                &[19.1, 20.3, 20.9, 19.7],
                &[20.5, 21.4, 22.1, 20.9, 21.8],
                2.766_564_465_701_369_7,
                5.924_797_266_529_527,
                0.033_000_989_912_838_7,
            ),
        ];
        for (a, b, t, df, p) in cases {
            let w = welch(&Summary::of(a).unwrap(), &Summary::of(b).unwrap()).unwrap();
            close(w.t, t, 1e-10);
            close(w.df, df, 1e-10);
            close(w.p, p, 1e-8);
        }
    }

    #[test]
    fn welch_needs_two_values_and_some_spread() {
        let one = Summary::of(&[1.0]).unwrap();
        let three = Summary::of(&[1.0, 2.0, 3.0]).unwrap();
        assert!(welch(&one, &three).is_none());
        let flat = Summary::of(&[2.0, 2.0]).unwrap();
        assert!(welch(&flat, &flat).is_none());
        // One flat side is fine: the other carries the variance.
        assert!(welch(&flat, &three).is_some());
    }
}
