//! The numbers the server holds every client to, and the small counters
//! that enforce them: token buckets for message and request rates, and
//! failure counts for login throttling. Pure: times come in as arguments.
//!
//! Every default limit is a constant here, and only here: [`Limits`] and
//! the event loop's `NetLimits` start from them, and `chatapp serve`'s
//! options take them as their defaults (which `--help` shows), so that
//! changing one changes it everywhere. The product's own rules (the
//! longest message, a room's capacity) are in `crate::model`.

use crate::model::Millis;

/// From connecting to being logged in.
pub const LOGIN_TIMEOUT: Millis = 10_000;
/// Silence after which a client is pinged.
pub const IDLE_PING: Millis = 60_000;
/// Silence after which a client is dropped.
pub const IDLE_CLOSE: Millis = 120_000;
/// Chat messages a client may send at once.
pub const MESSAGE_BURST: u32 = 10;
/// Chat messages a client may send a second, after its burst.
pub const MESSAGES_PER_SECOND: u32 = 5;
/// Requests of any kind a client may send at once.
pub const REQUEST_BURST: u32 = 50;
/// Requests of any kind a client may send a second, after its burst.
pub const REQUESTS_PER_SECOND: u32 = 20;
/// Failed logins (per account, and per address) before they slow down.
pub const FREE_LOGIN_FAILURES: u32 = 3;
/// The longest a throttled login is held back.
pub const MAX_LOGIN_DELAY: Millis = 30_000;
/// How often deadlines are checked.
pub const SWEEP: Millis = 1_000;
/// How long a member whose connection dropped (without leaving) keeps
/// their place in their room; an admin's room stays open as long.
pub const GRACE: Millis = 60_000;
/// How often servers sharing a database look for places in rooms that no
/// running server keeps (a server killed for good), at most: a short
/// grace period is checked more often (see [`Limits::orphan_check`]).
pub const ORPHAN_CHECK: Millis = 5_000;
/// How long the store must list a place as kept by no running server
/// before it is held (see `hub::orphans`): longer than [`ORPHAN_CHECK`],
/// so that a running server that lost its database connection has asked
/// again, and so taken its id slot's lock again, by then.
pub const ORPHAN_SETTLE: Millis = ORPHAN_CHECK + 2_000;
/// A dropped member's absence shorter than this is not told to the room:
/// a blip is not a departure.
pub const QUIET_BLIP: Millis = 10_000;
/// Days a resume token may go unused before it expires (`--resume-days`).
pub const RESUME_DAYS: u32 = 30;
/// Devices (resume tokens) one account may hold; a password login past
/// this many revokes the one used least recently.
pub const MAX_DEVICES: usize = 32;
/// A day, in milliseconds.
pub const DAY: Millis = 24 * 60 * 60 * 1000;
/// How often devices past their expiry are looked for and deleted (one
/// that is presented is refused and deleted at once anyway).
pub const DEVICE_PURGE: Millis = 60 * 60 * 1000;
/// Connections one address may hold at once (loopback is exempt).
pub const MAX_PER_ADDRESS: usize = 16;

/// Unsent bytes one client may have queued before it is cut off: a client
/// that stops reading must not make the server hold a room's traffic for it.
pub const MAX_UNSENT: usize = 1 << 20;
/// Output queued for a connection above which the server reads no more of
/// its requests until it has taken some: a client that sends faster than
/// it reads (a member of a busy room talking at full speed) is slowed
/// down, as TCP slows any sender, instead of being cut off at
/// [`MAX_UNSENT`].
pub const HIGH_WATER: usize = 512 * 1024;
/// Messages of one room waiting for the store (see
/// `Hub::room_uncommitted`) above which the room's members are not read
/// until a commit: what one commit releases into each member's output at
/// once, so that with [`HIGH_WATER`] it stays under [`MAX_UNSENT`].
pub const MAX_ROOM_UNCOMMITTED: usize = 256 * 1024;
/// Messages waiting for the store in all (see `Hub::uncommitted`) above
/// which no requests are read at all until a commit: bounds the store's
/// queue.
pub const MAX_UNCOMMITTED: usize = 4 << 20;

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
    /// How long a dropped member keeps their place (0: they leave at once).
    pub grace: Millis,
    /// How long a dropped member's absence goes untold.
    pub quiet_blip: Millis,
    /// How long a resume token may go unused before it expires.
    pub resume_expiry: Millis,
    /// Devices (resume tokens) one account may hold.
    pub max_devices: usize,
    /// How long a place no running server keeps is listed before it is
    /// held ([`ORPHAN_SETTLE`]).
    pub orphan_settle: Millis,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            login_timeout: LOGIN_TIMEOUT,
            idle_ping: IDLE_PING,
            idle_close: IDLE_CLOSE,
            message_burst: MESSAGE_BURST,
            messages_per_second: MESSAGES_PER_SECOND,
            request_burst: REQUEST_BURST,
            requests_per_second: REQUESTS_PER_SECOND,
            free_login_failures: FREE_LOGIN_FAILURES,
            max_login_delay: MAX_LOGIN_DELAY,
            sweep: SWEEP,
            grace: GRACE,
            quiet_blip: QUIET_BLIP,
            resume_expiry: Millis::from(RESUME_DAYS) * DAY,
            max_devices: MAX_DEVICES,
            orphan_settle: ORPHAN_SETTLE,
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
        self.sweep = SWEEP.min(login_timeout / 4).min(idle_ping / 4).max(10);
        self
    }

    /// How often places no running server keeps are looked for: four
    /// times a grace period, at most every [`ORPHAN_CHECK`].
    pub fn orphan_check(&self) -> Millis {
        ORPHAN_CHECK.min(self.grace / 4).max(100)
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
