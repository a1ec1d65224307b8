//! The policy in force, and what is built from it and the zone: the rate limiters and the
//! fast path. A reload replaces it whole; each request reads it once.

use std::sync::Arc;

use zones::Directory;
use zones::identity::CallingCode;
use zones::key::TsigKey;

use crate::config::{Denial, LookupPolicy, Settings};
use crate::fast::FastPath;
use crate::ratelimit::{Buckets, ResponseRateLimit};

/// Who may do what, and how often.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub lookups: LookupPolicy,
    pub transfer_keys: Vec<TsigKey>,
    /// UDP answers per second per client prefix (RRL); 0: no limit.
    pub rate_limit: u32,
    /// Every n-th answer over the limit is sent truncated; 0: none.
    pub rate_limit_slip: u32,
    /// Updates per second per terminal key (bursts of twice as many); 0: no limit.
    pub update_rate_limit: u32,
    /// How a signed zone denies existence.
    pub denial: Denial,
}

impl From<&Settings> for Policy {
    fn from(s: &Settings) -> Self {
        Self {
            lookups: s.lookups,
            transfer_keys: s.transfer_keys.clone(),
            rate_limit: s.rate_limit,
            rate_limit_slip: s.rate_limit_slip,
            update_rate_limit: s.update_rate_limit,
            denial: s.denial,
        }
    }
}

/// The policy in force, and what is built from it and from the zone.
#[derive(Debug)]
pub struct Live {
    pub policy: Policy,
    pub rrl: Option<Arc<ResponseRateLimit>>,
    pub update_limit: Option<Arc<Buckets<CallingCode>>>,
    /// The wire-level path for common answers (offered only what [`super::admit`] lets an
    /// anonymous query ask).
    pub fast: Arc<FastPath>,
}

impl Live {
    /// Built for `policy` and the directory's zone as it is now. Rate-limit state carries
    /// over from `old` when its limits did not change, so a reload resets no client's budget.
    pub fn new(directory: &Directory, policy: Policy, old: Option<&Live>) -> Self {
        let same_rrl = old.filter(|o| {
            (o.policy.rate_limit, o.policy.rate_limit_slip)
                == (policy.rate_limit, policy.rate_limit_slip)
        });
        let rrl = match same_rrl {
            Some(old) => old.rrl.clone(),
            None => (policy.rate_limit > 0).then(|| {
                Arc::new(ResponseRateLimit::new(
                    policy.rate_limit,
                    policy.rate_limit_slip,
                ))
            }),
        };
        let same_updates = old.filter(|o| o.policy.update_rate_limit == policy.update_rate_limit);
        let update_limit = match same_updates {
            Some(old) => old.update_limit.clone(),
            None => (policy.update_rate_limit > 0).then(|| {
                let rate = policy.update_rate_limit;
                Arc::new(Buckets::new(rate, rate.saturating_mul(2)))
            }),
        };
        let fast = Arc::new(FastPath::new(&directory.zone()));
        Self {
            policy,
            rrl,
            update_limit,
            fast,
        }
    }

    /// True when a signed zone denies by compact denial (RFC 9824).
    pub fn compact(&self, directory: &Directory) -> bool {
        self.policy.denial == Denial::Compact && directory.is_signed()
    }
}
