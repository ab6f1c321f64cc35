//! Status codes of the status log and of test outcomes, with autotest's severity order.

use std::fmt;
use std::str::FromStr;

/// One status code as it appears in the status log (without `END `).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Status {
    /// The test does not apply to this machine.
    #[serde(rename = "TEST_NA")]
    TestNa,
    /// The job (or a group) was aborted.
    #[serde(rename = "ABORT")]
    Abort,
    /// The test could not run properly.
    #[serde(rename = "ERROR")]
    Error,
    /// The test ran and failed.
    #[serde(rename = "FAIL")]
    Fail,
    /// The test passed with a warning.
    #[serde(rename = "WARN")]
    Warn,
    /// The test passed.
    #[serde(rename = "GOOD")]
    Good,
    /// The test found a bug in itself.
    #[serde(rename = "BUG")]
    Bug,
    /// An alert (kept for compatibility with autotest parsers).
    #[serde(rename = "ALERT")]
    Alert,
    /// Still running.
    #[serde(rename = "RUNNING")]
    Running,
    /// No status known.
    #[serde(rename = "NOSTATUS")]
    NoStatus,
}

/// Every status in autotest's severity order (most severe first).
pub const ALL: [Status; 10] = [
    Status::TestNa,
    Status::Abort,
    Status::Error,
    Status::Fail,
    Status::Warn,
    Status::Good,
    Status::Bug,
    Status::Alert,
    Status::Running,
    Status::NoStatus,
];

impl Status {
    /// The code as written in the status log.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::TestNa => "TEST_NA",
            Status::Abort => "ABORT",
            Status::Error => "ERROR",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
            Status::Good => "GOOD",
            Status::Bug => "BUG",
            Status::Alert => "ALERT",
            Status::Running => "RUNNING",
            Status::NoStatus => "NOSTATUS",
        }
    }

    /// Statuses a script may end a test with (`test_fail`, ...), as the strings it throws.
    pub fn from_outcome_str(s: &str) -> Option<Status> {
        match s {
            "FAIL" | "ERROR" | "TEST_NA" | "WARN" | "BUG" | "ABORT" | "GOOD" => s.parse().ok(),
            _ => None,
        }
    }

    /// True for FAIL and ERROR: the statuses that make `autorun` exit 1.
    pub fn fails_run(self) -> bool {
        matches!(self, Status::Fail | Status::Error)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("status code '{s}' is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_code() {
        for st in ALL {
            assert_eq!(st.as_str().parse::<Status>().unwrap(), st);
        }
        assert!("PASS".parse::<Status>().is_err());
    }
}
