//! `autorun compare A B`: the perf keyvals of two jobs side by side, test by test (matched
//! by subdir), with summaries, the relative change of the mean and Welch's t-test; as a
//! terminal table or as JSON (schema in docs/compare.md).

use std::path::Path;

use serde::Serialize;

use crate::error::{exit, Error};
use crate::results::{JobResults, Node};
use crate::stats::{self, Summary};
use crate::table::{self, Align, Table};

/// Key name endings (compared without case) that mark lower-is-better keys: times and
/// latencies.
pub const LOWER_IS_BETTER_SUFFIXES: [&str; 10] = [
    "_ns", "_us", "_ms", "_s", "_sec", "_secs", "_seconds", "latency", "time", "duration",
];

/// Which way a perf key improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Throughputs, rates, scores: the default.
    HigherIsBetter,
    /// Times and latencies: keys whose name ends in one of [`LOWER_IS_BETTER_SUFFIXES`].
    LowerIsBetter,
}

/// The direction of `key`: lower is better for names ending in a time unit or in
/// `latency`, `time` or `duration`, unless the name holds `_per_` (a rate such as
/// `ops_per_s`); higher is better for every other key.
pub fn direction(key: &str) -> Direction {
    let k = key.to_ascii_lowercase();
    if !k.contains("_per_") && LOWER_IS_BETTER_SUFFIXES.iter().any(|s| k.ends_with(s)) {
        Direction::LowerIsBetter
    } else {
        Direction::HigherIsBetter
    }
}

/// How B's mean stands against A's, given the key's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// B's mean is better.
    Better,
    /// B's mean is worse.
    Worse,
    /// The means are equal.
    Unchanged,
}

/// One perf key of one test, present in both jobs.
#[derive(Debug, Clone, Serialize)]
pub struct KeyComparison {
    /// The test's folder (the match between the jobs).
    pub subdir: String,
    /// The test's name (operation) in job A.
    pub test: String,
    /// The perf key, without `{perf}`.
    pub key: String,
    /// Which way the key improves.
    pub direction: Direction,
    /// Job A's values.
    pub a: Summary,
    /// Job B's values.
    pub b: Summary,
    /// `(mean_b - mean_a) / |mean_a| * 100`; `null` when A's mean is 0 and B's is not.
    pub change_pct: Option<f64>,
    /// Welch's t statistic (positive when B's mean is larger); `null` without a t-test.
    pub t: Option<f64>,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: Option<f64>,
    /// Two-sided p-value.
    pub p: Option<f64>,
    /// `p < 0.05`.
    pub significant: bool,
    /// Better, worse or unchanged, by the key's direction.
    pub verdict: Verdict,
    /// Worse by more than `--fail-on-regression` percent.
    pub regression: bool,
}

/// A test, or a key of a test, found in one job only.
#[derive(Debug, Clone, Serialize)]
pub struct Unmatched {
    /// The test's folder.
    pub subdir: String,
    /// The perf key; `null` when the whole test is missing from the other job.
    pub key: Option<String>,
}

/// The whole comparison of two jobs.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Job folder A (the baseline).
    pub a: String,
    /// Job folder B.
    pub b: String,
    /// Job A's status.
    pub a_status: String,
    /// Job B's status.
    pub b_status: String,
    /// The `--fail-on-regression` threshold in percent, if given.
    pub fail_on_regression: Option<f64>,
    /// How many keys are regressions.
    pub regressions: usize,
    /// Every key present in both jobs, in job A's test order, keys sorted.
    pub keys: Vec<KeyComparison>,
    /// Tests and keys of A that B lacks.
    pub only_in_a: Vec<Unmatched>,
    /// Tests and keys of B that A lacks.
    pub only_in_b: Vec<Unmatched>,
}

/// Tests by subdir in start order; a subdir seen twice keeps its last run.
fn by_subdir(r: &JobResults) -> Vec<(&str, &Node)> {
    let mut out: Vec<(&str, &Node)> = Vec::new();
    for t in r.tests() {
        let Some(sub) = t.subdir.as_deref() else {
            continue;
        };
        match out.iter_mut().find(|(s, _)| *s == sub) {
            Some(slot) => slot.1 = t,
            None => out.push((sub, t)),
        }
    }
    out
}

/// Compares job B against job A; `threshold` is `--fail-on-regression`'s percentage.
pub fn compare(a: &JobResults, b: &JobResults, threshold: Option<f64>) -> Comparison {
    let (tests_a, tests_b) = (by_subdir(a), by_subdir(b));
    let mut keys = Vec::new();
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    for (sub, ta) in &tests_a {
        let Some((_, tb)) = tests_b.iter().find(|(s, _)| s == sub) else {
            only_a.push(Unmatched {
                subdir: sub.to_string(),
                key: None,
            });
            continue;
        };
        let (sa, sb) = (ta.perf_samples(), tb.perf_samples());
        for (key, va) in &sa {
            let Some(vb) = sb.get(key) else {
                only_a.push(Unmatched {
                    subdir: sub.to_string(),
                    key: Some(key.clone()),
                });
                continue;
            };
            if let (Some(a), Some(b)) = (Summary::of(va), Summary::of(vb)) {
                keys.push(compare_key(sub, &ta.name, key, a, b, threshold));
            }
        }
        for key in sb.keys().filter(|k| !sa.contains_key(*k)) {
            only_b.push(Unmatched {
                subdir: sub.to_string(),
                key: Some(key.clone()),
            });
        }
    }
    for (sub, _) in tests_b
        .iter()
        .filter(|(s, _)| !tests_a.iter().any(|(x, _)| x == s))
    {
        only_b.push(Unmatched {
            subdir: sub.to_string(),
            key: None,
        });
    }
    Comparison {
        a: a.dir.display().to_string(),
        b: b.dir.display().to_string(),
        a_status: a.status.clone(),
        b_status: b.status.clone(),
        fail_on_regression: threshold,
        regressions: keys.iter().filter(|k| k.regression).count(),
        keys,
        only_in_a: only_a,
        only_in_b: only_b,
    }
}

fn compare_key(
    subdir: &str,
    test: &str,
    key: &str,
    a: Summary,
    b: Summary,
    threshold: Option<f64>,
) -> KeyComparison {
    let direction = direction(key);
    let change_pct = if a.mean != 0.0 {
        Some((b.mean - a.mean) / a.mean.abs() * 100.0)
    } else if b.mean == 0.0 {
        Some(0.0)
    } else {
        None
    };
    let welch = stats::welch(&a, &b);
    let p = welch.map(|w| w.p);
    let verdict = match (b.mean.partial_cmp(&a.mean), direction) {
        (Some(std::cmp::Ordering::Greater), Direction::HigherIsBetter)
        | (Some(std::cmp::Ordering::Less), Direction::LowerIsBetter) => Verdict::Better,
        (Some(std::cmp::Ordering::Less), Direction::HigherIsBetter)
        | (Some(std::cmp::Ordering::Greater), Direction::LowerIsBetter) => Verdict::Worse,
        _ => Verdict::Unchanged,
    };
    // A worse key with no relative change (A's mean is 0) is worse by any percentage.
    let regression = verdict == Verdict::Worse
        && threshold.is_some_and(|pct| change_pct.map_or(true, |c| c.abs() > pct));
    KeyComparison {
        subdir: subdir.to_string(),
        test: test.to_string(),
        key: key.to_string(),
        direction,
        a,
        b,
        change_pct,
        t: welch.map(|w| w.t),
        df: welch.map(|w| w.df),
        p,
        significant: p.is_some_and(|p| p < stats::ALPHA),
        verdict,
        regression,
    }
}

/// The terminal report: per test, two rows per key (A, then B with the change and the
/// t-test), then notes on unmatched tests and keys, regressions and the summary.
pub fn render(c: &Comparison) -> String {
    let mut out = format!(
        "A: {} (job {})\nB: {} (job {})\n\n",
        c.a, c.a_status, c.b, c.b_status
    );
    if c.keys.is_empty() {
        out.push_str("No perf keys in common.\n");
    } else {
        use Align::{Left, Right};
        let mut t = Table::new(&[
            Left, Left, Left, Right, Right, Right, Right, Right, Right, Right, Right, Right, Left,
        ]);
        t.row([
            "KEY", "BETTER", "", "N", "MEAN", "SD", "MIN", "MAX", "CHANGE", "T", "DF", "P", "",
        ]);
        let mut last_subdir = None;
        for k in &c.keys {
            if last_subdir != Some(&k.subdir) {
                let title = if k.test == k.subdir {
                    k.subdir.clone()
                } else {
                    format!("{} ({})", k.subdir, k.test)
                };
                t.line(title);
                last_subdir = Some(&k.subdir);
            }
            let better = match k.direction {
                Direction::HigherIsBetter => "higher",
                Direction::LowerIsBetter => "lower",
            };
            let mut row_a = vec![format!("  {}", k.key), better.into(), "A".into()];
            row_a.extend(summary_cells(&k.a));
            t.row(row_a);
            let mut row_b = vec![String::new(), String::new(), "B".into()];
            row_b.extend(summary_cells(&k.b));
            row_b.push(
                k.change_pct
                    .map(|c| format!("{c:+.2}%"))
                    .unwrap_or("-".into()),
            );
            row_b.push(k.t.map(|t| format!("{t:.3}")).unwrap_or("-".into()));
            row_b.push(k.df.map(|d| format!("{d:.2}")).unwrap_or("-".into()));
            row_b.push(k.p.map(table::p_value).unwrap_or("-".into()));
            row_b.push(verdict_text(k, c.fail_on_regression));
            t.row(row_b);
        }
        out.push_str(&t.render());
        out.push('\n');
        out.push_str(&counts_line(c));
        out.push_str(
            "P is the two-sided p-value of Welch's t-test (significant below 0.05; \
             '-' when a side has fewer than 2 values or neither varies).\n",
        );
    }
    for (side, list) in [("A", &c.only_in_a), ("B", &c.only_in_b)] {
        if !list.is_empty() {
            let items: Vec<String> = list
                .iter()
                .map(|u| match &u.key {
                    Some(k) => format!("{} {k}", u.subdir),
                    None => format!("{} (whole test)", u.subdir),
                })
                .collect();
            out.push_str(&format!("Only in {side}: {}.\n", items.join(", ")));
        }
    }
    if let Some(pct) = c.fail_on_regression {
        let pct = table::num(pct);
        if c.regressions == 0 {
            out.push_str(&format!("No key got worse by more than {pct}%.\n"));
        } else {
            let items: Vec<String> = c
                .keys
                .iter()
                .filter(|k| k.regression)
                .map(|k| {
                    let change = k
                        .change_pct
                        .map(|c| format!("{c:+.2}%"))
                        .unwrap_or("from 0".into());
                    format!("{} {} ({change})", k.subdir, k.key)
                })
                .collect();
            out.push_str(&format!(
                "{} {} worse by more than {pct}%: {}.\n",
                c.regressions,
                if c.regressions == 1 {
                    "key got"
                } else {
                    "keys got"
                },
                items.join(", ")
            ));
        }
    }
    out
}

fn summary_cells(s: &Summary) -> Vec<String> {
    vec![
        s.n.to_string(),
        table::num(s.mean),
        s.sd.map(table::num).unwrap_or("-".into()),
        table::num(s.min),
        table::num(s.max),
    ]
}

fn verdict_text(k: &KeyComparison, threshold: Option<f64>) -> String {
    let mut v = match k.verdict {
        Verdict::Better => "better",
        Verdict::Worse => "worse",
        Verdict::Unchanged => "unchanged",
    }
    .to_string();
    if k.significant {
        v.push_str(", significant");
    }
    if let (true, Some(pct)) = (k.regression, threshold) {
        v.push_str(&format!(", REGRESSION (> {}%)", table::num(pct)));
    }
    v
}

/// `3 keys compared: 1 better, 1 worse, 1 unchanged; 2 significant.`
fn counts_line(c: &Comparison) -> String {
    let count = |v: Verdict| c.keys.iter().filter(|k| k.verdict == v).count();
    let n = c.keys.len();
    format!(
        "{n} {} compared: {} better, {} worse, {} unchanged; {} significant.\n",
        if n == 1 { "key" } else { "keys" },
        count(Verdict::Better),
        count(Verdict::Worse),
        count(Verdict::Unchanged),
        c.keys.iter().filter(|k| k.significant).count()
    )
}

/// Runs `autorun compare A B [--json] [--fail-on-regression PCT]`: exit 1 when a key got
/// worse by more than PCT percent, else 0.
pub fn run(a: &Path, b: &Path, json: bool, threshold: Option<f64>) -> Result<i32, Error> {
    if let Some(pct) = threshold {
        if !pct.is_finite() || pct < 0.0 {
            return Err(Error::Usage(format!(
                "--fail-on-regression takes a percentage of 0 or more, not {pct}"
            )));
        }
    }
    let ra = crate::show::load(a)?;
    let rb = crate::show::load(b)?;
    let c = compare(&ra, &rb, threshold);
    if json {
        let text = serde_json::to_string_pretty(&c)
            .map_err(|e| Error::Io(format!("cannot render the comparison as JSON: {e}")))?;
        table::print(&format!("{text}\n"));
    } else {
        table::print(&render(&c));
    }
    Ok(if c.regressions > 0 {
        exit::TEST_FAILED
    } else {
        exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::parse_iterations;

    fn job(dir: &str, tests: &[(&str, &str)]) -> JobResults {
        let mut log = String::from("START\t----\t----\ttimestamp=1\tlocaltime=x\t\n");
        for (sub, _) in tests {
            log.push_str(&format!(
                "\tSTART\t{sub}\t{sub}\ttimestamp=1\tlocaltime=x\t\n\tEND GOOD\t{sub}\t{sub}\ttimestamp=2\tlocaltime=x\t\n"
            ));
        }
        log.push_str("END GOOD\t----\t----\ttimestamp=3\tlocaltime=x\t\n");
        let mut r = JobResults::from_log(Path::new(dir), &log);
        for (node, (_, kv)) in r.nodes.iter_mut().zip(tests) {
            node.iterations = parse_iterations(kv);
        }
        r
    }

    #[test]
    fn directions() {
        for k in [
            "latency_ms",
            "wall_time",
            "boot_seconds",
            "P99_LATENCY",
            "t_s",
            "x_ns",
        ] {
            assert_eq!(direction(k), Direction::LowerIsBetter, "{k}");
        }
        for k in [
            "throughput",
            "ops_per_s",
            "mb_per_sec",
            "score",
            "seconds_slept",
        ] {
            assert_eq!(direction(k), Direction::HigherIsBetter, "{k}");
        }
    }

    #[test]
    fn compares_matched_keys() {
        let a = job(
            "/a",
            &[
                ("bench", "tput=100\nlat_ms=5.0\n\ntput=102\nlat_ms=5.2\n\ntput=98\nlat_ms=4.8\n\ntput=101\n\ntput=99\n\nonly_a=1\n"),
                ("gone", "x=1\n"),
            ],
        );
        let b = job(
            "/b",
            &[
                ("bench", "tput=90\nlat_ms=5.1\n\ntput=91\nlat_ms=4.9\n\ntput=89\nlat_ms=5.3\n\ntput=92\n\ntput=88\n\nonly_b=1\n"),
                ("new", "x=1\n"),
            ],
        );
        let c = compare(&a, &b, Some(5.0));
        let keys: Vec<&str> = c.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["lat_ms", "tput"]);
        let lat = &c.keys[0];
        assert_eq!(lat.direction, Direction::LowerIsBetter);
        assert_eq!(lat.verdict, Verdict::Worse);
        assert!(!lat.significant && !lat.regression);
        assert!((lat.p.unwrap() - 0.573_392_253_825_354).abs() < 1e-9);
        let tput = &c.keys[1];
        assert_eq!((tput.a.n, tput.a.mean, tput.b.mean), (5, 100.0, 90.0));
        assert!((tput.change_pct.unwrap() + 10.0).abs() < 1e-12);
        assert!((tput.t.unwrap() + 10.0).abs() < 1e-9);
        assert!((tput.df.unwrap() - 8.0).abs() < 1e-9);
        assert!(tput.significant && tput.regression);
        assert_eq!(c.regressions, 1);
        let un = |l: &[Unmatched]| -> Vec<String> {
            l.iter()
                .map(|u| format!("{} {:?}", u.subdir, u.key))
                .collect()
        };
        assert_eq!(un(&c.only_in_a), ["bench Some(\"only_a\")", "gone None"]);
        assert_eq!(un(&c.only_in_b), ["bench Some(\"only_b\")", "new None"]);
        let text = render(&c);
        assert!(
            text.contains("worse, significant, REGRESSION (> 5%)"),
            "{text}"
        );
        assert!(
            text.contains("1 key got worse by more than 5%: bench tput (-10.00%)."),
            "{text}"
        );
        assert!(
            text.contains("Only in A: bench only_a, gone (whole test)."),
            "{text}"
        );
        // A higher threshold: the same change is no regression.
        assert_eq!(compare(&a, &b, Some(10.5)).regressions, 0);
        assert_eq!(compare(&a, &b, None).regressions, 0);
    }

    #[test]
    fn single_values_and_zero_means() {
        let a = job("/a", &[("t", "one=3\nzero=0\nz2=0\nwait_ms=0\n")]);
        let b = job("/b", &[("t", "one=4\nzero=2\nz2=0\nwait_ms=2\n")]);
        let c = compare(&a, &b, Some(1000.0));
        let get = |k: &str| c.keys.iter().find(|x| x.key == k).unwrap().clone();
        let one = get("one");
        assert_eq!((one.a.sd, one.p, one.significant), (None, None, false));
        let zero = get("zero");
        assert_eq!((zero.change_pct, zero.verdict), (None, Verdict::Better));
        let z2 = get("z2");
        assert_eq!((z2.change_pct, z2.verdict), (Some(0.0), Verdict::Unchanged));
        // From 0 to something worse is a regression at any threshold.
        let wait = get("wait_ms");
        assert_eq!((wait.verdict, wait.regression), (Verdict::Worse, true));
        assert_eq!(c.regressions, 1);
        let text = render(&c);
        assert!(text.contains("t wait_ms (from 0)"), "{text}");
    }
}
