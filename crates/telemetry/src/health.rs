//! [`Health`]: named readiness checks, set by the stages that own them.
//!
//! Each stage reports its own check (`store`, `bus`, `feed:<provider>`...);
//! `/readyz` is ready when every check is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde::Serialize;

#[derive(Clone, Debug)]
struct Check {
    ok: bool,
    detail: String,
    /// For freshness checks: the last time the stage saw data.
    last_seen: Option<Instant>,
    /// For freshness checks: how long silence is tolerated.
    max_silence: Option<Duration>,
    /// Shown in `/readyz` but does not decide readiness.
    advisory: bool,
}

/// Shared readiness state. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Health {
    checks: Arc<RwLock<BTreeMap<String, Check>>>,
}

/// One check as `/readyz` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct CheckReport {
    pub ok: bool,
    pub detail: String,
    /// Informational: a failing advisory check does not make the process
    /// unready (a symbol silent while its market is closed, say).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub advisory: bool,
}

/// Every check and the verdict.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct HealthReport {
    pub ready: bool,
    pub checks: BTreeMap<String, CheckReport>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a check's state; `detail` says why when it is not ok.
    pub fn set(&self, name: &str, ok: bool, detail: impl Into<String>) {
        let mut checks = self.checks.write();
        let entry = checks.entry(name.to_string()).or_insert(Check {
            ok,
            detail: String::new(),
            last_seen: None,
            max_silence: None,
            advisory: false,
        });
        entry.ok = ok;
        entry.detail = detail.into();
    }

    /// Declares a freshness check: not ready until [`Health::seen`] is called,
    /// and again not ready after `max_silence` without a call.
    pub fn expect_fresh(&self, name: &str, max_silence: Duration) {
        self.insert_fresh(name, max_silence, false);
    }

    /// Like [`Health::expect_fresh`], but only shown: it does not decide
    /// readiness.
    pub fn expect_fresh_advisory(&self, name: &str, max_silence: Duration) {
        self.insert_fresh(name, max_silence, true);
    }

    fn insert_fresh(&self, name: &str, max_silence: Duration, advisory: bool) {
        self.checks.write().insert(
            name.to_string(),
            Check {
                ok: true,
                detail: String::new(),
                last_seen: None,
                max_silence: Some(max_silence),
                advisory,
            },
        );
    }

    /// Records that data arrived for a freshness check.
    pub fn seen(&self, name: &str) {
        if let Some(c) = self.checks.write().get_mut(name) {
            c.last_seen = Some(Instant::now());
        }
    }

    /// Removes a check (a stage that stopped on purpose).
    pub fn remove(&self, name: &str) {
        self.checks.write().remove(name);
    }

    pub fn report(&self) -> HealthReport {
        let now = Instant::now();
        let checks: BTreeMap<String, CheckReport> = self
            .checks
            .read()
            .iter()
            .map(|(name, c)| {
                let report = match (c.max_silence, c.last_seen) {
                    (Some(_), None) => CheckReport {
                        ok: false,
                        detail: "no data received yet".into(),
                        advisory: c.advisory,
                    },
                    (Some(max), Some(seen)) if now.duration_since(seen) > max => CheckReport {
                        ok: false,
                        detail: format!(
                            "silent for {:.1}s (allowed {:.1}s)",
                            now.duration_since(seen).as_secs_f64(),
                            max.as_secs_f64()
                        ),
                        advisory: c.advisory,
                    },
                    _ => CheckReport {
                        ok: c.ok,
                        detail: c.detail.clone(),
                        advisory: c.advisory,
                    },
                };
                (name.clone(), report)
            })
            .collect();
        HealthReport {
            ready: checks.values().all(|c| c.ok || c.advisory),
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_is() {
        let h = Health::new();
        assert!(h.report().ready);
        h.set("store", false, "connection refused");
        let r = h.report();
        assert!(!r.ready);
        assert_eq!(r.checks["store"].detail, "connection refused");
        h.set("store", true, "");
        assert!(h.report().ready);
    }

    #[test]
    fn freshness_checks_need_data() {
        let h = Health::new();
        h.expect_fresh("feed:synthetic", Duration::from_secs(60));
        assert!(!h.report().ready);
        h.seen("feed:synthetic");
        assert!(h.report().ready);
        h.expect_fresh("feed:x", Duration::ZERO);
        h.seen("feed:x");
        std::thread::sleep(Duration::from_millis(5));
        let r = h.report();
        assert!(!r.ready);
        assert!(r.checks["feed:x"].detail.starts_with("silent for"));
    }

    #[test]
    fn advisory_checks_show_but_do_not_decide() {
        let h = Health::new();
        h.expect_fresh_advisory("symbol:finnhub:AAPL", Duration::from_secs(60));
        let r = h.report();
        assert!(r.ready);
        assert!(!r.checks["symbol:finnhub:AAPL"].ok);
        assert!(r.checks["symbol:finnhub:AAPL"].advisory);
    }
}
