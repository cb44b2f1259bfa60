//! The configuration gate both binaries put in front of their running
//! configuration: MetalLB's rules for accepting a new one, in one place.
//!
//! - The **last good** configuration keeps serving until a new one is admitted.
//! - A configuration that does not parse is **rejected**; one that parses but
//!   that the running state cannot take (MetalLB: it would take an assigned IP
//!   away) is rejected too. Either way the binary runs on the last good one and
//!   is **stale** until a good one comes.
//! - Each rejection reason is **reported once** (an Event on the ConfigMap),
//!   not on every look.
//! - A configuration rejected by the running state (not by the parser) is
//!   **retried** whenever the caller says the cluster changed, and admitted as
//!   soon as it fits (the stranded Service was deleted or moved), without
//!   waiting for its text to change.
//!
//! Pure: the caller brings the configuration's revision (for the ConfigMap, its
//! text; for custom resources, whatever identifies the set), a parse function
//! and an admission check; the gate says what happened ([`Verdict`]). It never
//! touches the cluster.

use crate::Config;

/// A configuration offered to the gate that is not in force, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejection {
    reason: String,
    /// Parsed but not admitted (retried when the cluster changes).
    retry: Option<Config>,
}

/// What the gate did with an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing new: the same revision as before, with the same outcome (or a
    /// new revision equal in content to the running configuration).
    Unchanged,
    /// A new configuration is in force (see [`ConfigGate::current`]).
    Applied,
    /// The offered configuration is not in force. `report` is the reason when
    /// it has not been reported yet (publish it once), `None` when it has.
    Rejected {
        /// Why.
        reason: String,
        /// The reason again if it is new, for the one report.
        report: Option<String>,
    },
}

/// The running configuration and the state of the last offer.
#[derive(Debug, Clone, Default)]
pub struct ConfigGate {
    current: Option<Config>,
    /// Revision of the last offer (`None` before any).
    seen: Option<Option<String>>,
    rejected: Option<Rejection>,
    /// The rejection reason last reported.
    reported: Option<String>,
}

/// Reason given when the configuration source is missing.
pub const MISSING: &str = "configuration not found (ConfigMap missing or without key \"config\")";

impl ConfigGate {
    /// A gate with no configuration loaded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration in force, if one was ever admitted.
    pub fn current(&self) -> Option<&Config> {
        self.current.as_ref()
    }

    /// A configuration was admitted at least once
    /// (`metallb_k8s_client_config_loaded_bool`).
    pub fn loaded(&self) -> bool {
        self.current.is_some()
    }

    /// Running on an older configuration because the latest was rejected
    /// (`metallb_k8s_client_config_stale_bool`).
    pub fn stale(&self) -> bool {
        self.current.is_some() && self.rejected.is_some()
    }

    /// Why the latest offer is not in force, if it is not.
    pub fn rejection(&self) -> Option<&str> {
        self.rejected.as_ref().map(|r| r.reason.as_str())
    }

    /// True when the latest offer parsed but was not admitted, so that
    /// [`ConfigGate::retry`] may still admit it.
    pub fn retry_pending(&self) -> bool {
        self.rejected.as_ref().is_some_and(|r| r.retry.is_some())
    }

    /// Offer a configuration. `revision` identifies it (`None`: the source is
    /// missing, rejected with [`MISSING`]); when it equals the last offer's,
    /// `parse` is not called again and only a pending retry is re-examined.
    /// `admit(current, next)` is the running state's check (and may apply
    /// `next` to that state when it returns `Ok`): an `Err` rejects `next`
    /// with that reason and keeps it for [`ConfigGate::retry`].
    pub fn offer(
        &mut self,
        revision: Option<&str>,
        parse: impl FnOnce(&str) -> Result<Config, String>,
        admit: impl FnOnce(Option<&Config>, &Config) -> Result<(), String>,
    ) -> Verdict {
        // The speaker offers on every pass: compare before copying.
        if self.seen.as_ref().map(Option::as_deref) == Some(revision) {
            return self.retry(admit);
        }
        self.seen = Some(revision.map(str::to_string));
        let parsed = match revision {
            None => Err(MISSING.to_string()),
            Some(text) => parse(text),
        };
        match parsed {
            Err(reason) => self.reject(reason, None),
            Ok(next) => self.admit(next, admit),
        }
    }

    /// Re-examine a configuration rejected by the running state (call it when
    /// the cluster changed). `Unchanged` when nothing is pending or it still
    /// does not fit with the same reason.
    pub fn retry(
        &mut self,
        admit: impl FnOnce(Option<&Config>, &Config) -> Result<(), String>,
    ) -> Verdict {
        let Some(next) = self.rejected.as_mut().and_then(|r| r.retry.take()) else {
            return Verdict::Unchanged;
        };
        let before = self.rejected.as_ref().map(|r| r.reason.clone());
        match self.admit(next, admit) {
            Verdict::Rejected { ref reason, .. } if Some(reason) == before.as_ref() => {
                Verdict::Unchanged
            }
            v => v,
        }
    }

    fn admit(
        &mut self,
        next: Config,
        admit: impl FnOnce(Option<&Config>, &Config) -> Result<(), String>,
    ) -> Verdict {
        if self.current.as_ref() == Some(&next) {
            self.rejected = None;
            self.reported = None;
            return Verdict::Unchanged;
        }
        match admit(self.current.as_ref(), &next) {
            Ok(()) => {
                self.current = Some(next);
                self.rejected = None;
                self.reported = None;
                Verdict::Applied
            }
            Err(reason) => self.reject(reason, Some(next)),
        }
    }

    fn reject(&mut self, reason: String, retry: Option<Config>) -> Verdict {
        let report = (self.reported.as_ref() != Some(&reason)).then(|| reason.clone());
        if report.is_some() {
            self.reported = Some(reason.clone());
        }
        self.rejected = Some(Rejection {
            reason: reason.clone(),
            retry,
        });
        Verdict::Rejected { reason, report }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text).map_err(|e| e.to_string())
    }

    const A: &str = "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24]}\n";
    const B: &str = "address-pools:\n- {name: b, protocol: bgp, addresses: [10.0.1.0/24]}\n";
    const A_COMMENTED: &str =
        "# same pools\naddress-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/24]}\n";
    const BAD: &str = "address-pools:\n- {name: a, protocol: bgp, addresses: [10.0.0.0/33]}\n";

    fn ok(_: Option<&Config>, _: &Config) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn first_good_config_applies_and_same_text_is_not_parsed_again() {
        let mut g = ConfigGate::new();
        assert!(!g.loaded() && !g.stale());
        assert_eq!(g.offer(Some(A), parse, ok), Verdict::Applied);
        assert!(g.loaded() && !g.stale());
        assert_eq!(g.current().unwrap().pools[0].name, "a");
        let v = g.offer(Some(A), |_| panic!("parsed twice"), ok);
        assert_eq!(v, Verdict::Unchanged);
    }

    #[test]
    fn invalid_config_keeps_the_last_good_one_and_is_reported_once() {
        let mut g = ConfigGate::new();
        g.offer(Some(A), parse, ok);
        let Verdict::Rejected { reason, report } = g.offer(Some(BAD), parse, ok) else {
            panic!("not rejected")
        };
        assert!(reason.contains("10.0.0.0/33"), "{reason}");
        assert_eq!(report.as_deref(), Some(reason.as_str()));
        assert!(g.stale());
        assert_eq!(g.current().unwrap().pools[0].name, "a");
        // Seen again (every speaker pass looks): no new report, no re-parse.
        assert_eq!(g.offer(Some(BAD), |_| panic!(), ok), Verdict::Unchanged);
        // A different invalid text with the same reason is not reported again.
        let again = g.offer(Some(&format!("{BAD}\n")), parse, ok);
        assert!(
            matches!(again, Verdict::Rejected { report: None, .. }),
            "{again:?}"
        );
        // A good one clears staleness.
        assert_eq!(g.offer(Some(B), parse, ok), Verdict::Applied);
        assert!(!g.stale() && g.rejection().is_none());
        // The same bad text after a good one is reported again.
        assert!(matches!(
            g.offer(Some(BAD), parse, ok),
            Verdict::Rejected {
                report: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn no_config_at_all_is_not_loaded_and_not_stale() {
        let mut g = ConfigGate::new();
        let v = g.offer(None, parse, ok);
        assert_eq!(
            v,
            Verdict::Rejected {
                reason: MISSING.into(),
                report: Some(MISSING.into())
            }
        );
        assert!(!g.loaded() && !g.stale());
        assert_eq!(g.rejection(), Some(MISSING));
    }

    #[test]
    fn an_equal_config_in_other_words_changes_nothing_and_clears_staleness() {
        let mut g = ConfigGate::new();
        g.offer(Some(A), parse, ok);
        g.offer(Some(BAD), parse, ok);
        assert!(g.stale());
        let v = g.offer(Some(A_COMMENTED), parse, |_, _| panic!("admit called"));
        assert_eq!(v, Verdict::Unchanged);
        assert!(!g.stale());
    }

    #[test]
    fn rejected_by_the_running_state_is_retried_when_the_cluster_changes() {
        let mut g = ConfigGate::new();
        g.offer(Some(A), parse, ok);
        // The running state holds 10.0.0.7 for ns/web: B would strand it.
        let mut held = vec!["10.0.0.7".parse().unwrap()];
        fn strands(
            held: &[std::net::IpAddr],
        ) -> impl FnOnce(Option<&Config>, &Config) -> Result<(), String> + '_ {
            move |cur, next| {
                let s = cur.unwrap().strands(next, [("ns/web", held)]);
                if s.is_empty() {
                    Ok(())
                } else {
                    Err(crate::stranded_message(&s))
                }
            }
        }
        let v = g.offer(Some(B), parse, strands(&held));
        let Verdict::Rejected { reason, report } = v else {
            panic!("{v:?}")
        };
        assert!(reason.contains("ns/web") && report.is_some(), "{reason}");
        assert!(g.retry_pending() && g.stale());
        // Nothing moved: a retry (or the same text again) changes nothing, reports nothing.
        assert_eq!(g.retry(strands(&held)), Verdict::Unchanged);
        assert_eq!(
            g.offer(Some(B), |_| panic!(), strands(&held)),
            Verdict::Unchanged
        );
        assert!(g.retry_pending());
        // The Service is deleted: the retry admits B.
        held.clear();
        assert_eq!(g.retry(strands(&held)), Verdict::Applied);
        assert_eq!(g.current().unwrap().pools[0].name, "b");
        assert!(!g.stale() && !g.retry_pending());
        assert_eq!(g.retry(ok), Verdict::Unchanged);
    }

    #[test]
    fn a_parse_error_is_not_retried() {
        let mut g = ConfigGate::new();
        g.offer(Some(A), parse, ok);
        g.offer(Some(BAD), parse, ok);
        assert!(!g.retry_pending());
        assert_eq!(g.retry(|_, _| panic!("admit called")), Verdict::Unchanged);
    }
}
