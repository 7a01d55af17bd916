//! The numbers the server holds every client to, and the small counters
//! that enforce them: token buckets for message and request rates, and
//! failure counts for login throttling. Pure: times come in as arguments.

use crate::model::Millis;

/// The limits the hub enforces. Times are in milliseconds; tests shorten them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From connecting to being logged in.
    pub login_timeout: Millis,
    /// Silence after which the client is pinged.
    pub idle_ping: Millis,
    /// Silence after which the client is dropped.
    pub idle_close: Millis,
    pub message_burst: u32,
    pub messages_per_second: u32,
    pub request_burst: u32,
    pub requests_per_second: u32,
    /// Failed logins (per account, and per address) before they slow down.
    pub free_login_failures: u32,
    /// The longest a throttled login is held back.
    pub max_login_delay: Millis,
    /// How often deadlines are checked.
    pub sweep: Millis,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            login_timeout: 10_000,
            idle_ping: 60_000,
            idle_close: 120_000,
            message_burst: 10,
            messages_per_second: 5,
            request_burst: 50,
            requests_per_second: 20,
            free_login_failures: 3,
            max_login_delay: 30_000,
            sweep: 1_000,
        }
    }
}

impl Limits {
    /// These limits with other deadlines (milliseconds), and the sweep
    /// made short enough to check each of them a few times over.
    pub fn with_deadlines(
        mut self,
        login_timeout: Millis,
        idle_ping: Millis,
        idle_close: Millis,
    ) -> Limits {
        self.login_timeout = login_timeout;
        self.idle_ping = idle_ping;
        self.idle_close = idle_close;
        self.sweep = Limits::default()
            .sweep
            .min(login_timeout / 4)
            .min(idle_ping / 4)
            .max(10);
        self
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` a second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    /// Tokens, in thousandths, so refills need no floating point.
    milli_tokens: u64,
    at: Millis,
}

impl Bucket {
    pub(crate) fn full(burst: u32, now: Millis) -> Bucket {
        Bucket {
            milli_tokens: u64::from(burst) * 1000,
            at: now,
        }
    }

    pub(crate) fn take(&mut self, burst: u32, rate: u32, now: Millis) -> bool {
        let elapsed = u64::try_from(now - self.at).unwrap_or(0);
        self.at = self.at.max(now);
        self.milli_tokens =
            (self.milli_tokens + elapsed * u64::from(rate)).min(u64::from(burst) * 1000);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// Recent failed logins for one account or one address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failures {
    pub(crate) count: u32,
    pub(crate) last: Millis,
}

/// Failures are forgotten after this long without another.
pub(crate) const FAILURE_MEMORY: Millis = 15 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = Bucket::full(10, 0);
        assert_eq!((0..12).filter(|_| b.take(10, 5, 0)).count(), 10);
        assert!(!b.take(10, 5, 199));
        assert!(b.take(10, 5, 200));
        // Refill never exceeds the burst, however long the pause.
        assert_eq!((0..20).filter(|_| b.take(10, 5, 1_000_000)).count(), 10);
        // A clock that steps back refills nothing.
        assert!(!b.take(10, 5, 500));
    }
}
