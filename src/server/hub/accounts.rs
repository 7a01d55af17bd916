//! Accounts and who is logged in: the users (names and password hashes)
//! with the case-blind keys that keep names unique, names reserved while
//! a registration is being hashed, the connections each user is logged in
//! on (up to [`MAX_SESSIONS`]), and login throttling (failures counted by account and by address,
//! and the password checks held back because of them).

use super::effects::{AuthJob, Caller, ConnId};
use crate::model::{self, IdSpace, Millis, UserId};
use crate::server::limits::{FAILURE_MEMORY, Failures, Limits};
use crate::store::UserRow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Sessions one account may have at once (devices, or windows). A login
/// beyond them ends the oldest, so a half-open connection can never lock
/// its owner out.
pub const MAX_SESSIONS: usize = 8;

pub(super) struct User {
    /// Shared by every line the user writes.
    pub name: Arc<str>,
    pub hash: String,
}

pub(super) struct Accounts {
    users: HashMap<UserId, User>,
    by_key: HashMap<String, UserId>,
    /// Names whose registration is being hashed.
    reserved: HashSet<String>,
    /// Each user's sessions, oldest first.
    online: HashMap<UserId, Vec<ConnId>>,
    next_user: i64,
    ids: IdSpace,
    /// Failed logins by account key and by address.
    failures: HashMap<String, Failures>,
    /// Logins held back by throttling, with the time they may go ahead.
    held: Vec<(Millis, Held)>,
}

/// A login held back by throttling.
pub(super) enum Held {
    /// A password check, for the scrypt threads.
    Auth(AuthJob),
    /// A resume, which the hub answers itself.
    Resume { caller: Caller, token: String },
}

impl Accounts {
    pub fn new(rows: Vec<UserRow>, next_user: UserId) -> Accounts {
        let mut accounts = Accounts {
            users: HashMap::new(),
            by_key: HashMap::new(),
            reserved: HashSet::new(),
            online: HashMap::new(),
            next_user: next_user.0,
            ids: IdSpace::ALONE,
            failures: HashMap::new(),
            held: Vec::new(),
        };
        for row in rows {
            accounts.by_key.insert(model::user_key(&row.name), row.id);
            accounts.users.insert(
                row.id,
                User {
                    name: row.name.into(),
                    hash: row.password_hash,
                },
            );
        }
        accounts
    }

    /// Users made from now on take ids of `ids` only.
    pub fn use_ids(&mut self, ids: IdSpace) {
        self.ids = ids;
        self.next_user = ids.at_or_after(self.next_user);
    }

    pub fn exists(&self, user: UserId) -> bool {
        self.users.contains_key(&user)
    }

    /// The user's name, shared. Only for users known to exist.
    pub fn name(&self, user: UserId) -> &Arc<str> {
        &self.users[&user].name
    }

    /// The user's name, or a stand-in for one that is gone.
    pub fn name_of(&self, user: UserId) -> String {
        self.users
            .get(&user)
            .map_or_else(|| format!("user {user}"), |u| u.name.to_string())
    }

    /// Whether a name is free to register: not taken, not being taken.
    pub fn is_free(&self, key: &str) -> bool {
        !self.by_key.contains_key(key) && !self.reserved.contains(key)
    }

    pub fn reserve(&mut self, key: String) {
        self.reserved.insert(key);
    }

    pub fn unreserve(&mut self, key: &str) {
        self.reserved.remove(key);
    }

    /// The account a key names, with its hash, for a password check.
    pub fn with_hash(&self, key: &str) -> Option<(UserId, String)> {
        self.by_key
            .get(key)
            .map(|&uid| (uid, self.users[&uid].hash.clone()))
    }

    /// The user a typed name means, found by its [`model::user_key`]
    /// without allocating (every message names its recipient): a longer
    /// name than any user's names nobody.
    pub fn named(&self, name: &str) -> Option<UserId> {
        let mut buf = [0u8; model::MAX_USER_NAME];
        let key = buf.get_mut(..name.len())?;
        key.copy_from_slice(name.as_bytes());
        key.make_ascii_lowercase();
        let key = std::str::from_utf8(key).ok()?;
        self.by_key.get(key).copied()
    }

    /// An account another server made: false if its id or its name is
    /// known already.
    pub fn learn(&mut self, user: UserId, name: &str, hash: String) -> bool {
        let key = model::user_key(name);
        if self.users.contains_key(&user) || self.by_key.contains_key(&key) {
            return false;
        }
        self.by_key.insert(key, user);
        let name = name.into();
        self.users.insert(user, User { name, hash });
        true
    }

    /// Makes a new account with the next free id.
    pub fn create(&mut self, key: String, name: &str, hash: String) -> UserId {
        let user = UserId(self.next_user);
        self.next_user += self.ids.step;
        self.by_key.insert(key, user);
        self.users.insert(
            user,
            User {
                name: name.into(),
                hash,
            },
        );
        user
    }

    /// Forgets an account that could not be stored.
    pub fn forget(&mut self, user: UserId) {
        if let Some(u) = self.users.remove(&user) {
            self.by_key.remove(&model::user_key(&u.name));
        }
    }

    /// The connections the user is logged in on, oldest first.
    pub fn sessions(&self, user: UserId) -> &[ConnId] {
        self.online.get(&user).map_or(&[], Vec::as_slice)
    }

    pub fn is_online(&self, user: UserId) -> bool {
        self.online.contains_key(&user)
    }

    pub fn go_online(&mut self, user: UserId, conn: ConnId) {
        self.online.entry(user).or_default().push(conn);
    }

    /// The user is no longer online on `conn`.
    pub fn go_offline(&mut self, user: UserId, conn: ConnId) {
        if let Some(conns) = self.online.get_mut(&user) {
            conns.retain(|&c| c != conn);
            if conns.is_empty() {
                self.online.remove(&user);
            }
        }
    }

    /// How long a login for this account (by key) from this address waits
    /// before it is checked: after a few failures for either, each attempt
    /// waits longer (unknown names included, so the delay tells nothing
    /// about which names exist).
    pub fn login_delay(&self, now: Millis, key: &str, ip: &str, limits: &Limits) -> Millis {
        [account_key(key), address_key(ip)]
            .iter()
            .map(|k| self.delay(now, k, limits))
            .max()
            .unwrap_or(0)
    }

    /// How long a resume from this address waits before its token is
    /// looked at: as long as a login from there would.
    pub fn address_delay(&self, now: Millis, ip: &str, limits: &Limits) -> Millis {
        self.delay(now, &address_key(ip), limits)
    }

    fn delay(&self, now: Millis, key: &str, limits: &Limits) -> Millis {
        let Some(f) = self.failures.get(key) else {
            return 0;
        };
        if now - f.last > FAILURE_MEMORY || f.count < limits.free_login_failures {
            return 0;
        }
        let doublings = (f.count - limits.free_login_failures).min(16);
        (1000i64 << doublings).min(limits.max_login_delay)
    }

    /// A failed login for this account key from this address.
    pub fn failed(&mut self, now: Millis, key: &str, ip: &str) {
        for k in [account_key(key), address_key(ip)] {
            self.count_failure(now, k);
        }
    }

    /// A failed resume from this address (it names no account).
    pub fn failed_from(&mut self, now: Millis, ip: &str) {
        self.count_failure(now, address_key(ip));
    }

    fn count_failure(&mut self, now: Millis, k: String) {
        let f = self.failures.entry(k).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now - f.last > FAILURE_MEMORY {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
    }

    /// A successful login clears the account's failures (not the
    /// address's: one right guess does not excuse the others).
    pub fn succeeded(&mut self, key: &str) {
        self.failures.remove(&account_key(key));
    }

    pub fn hold(&mut self, until: Millis, job: Held) {
        self.held.push((until, job));
    }

    /// The held logins whose time has come.
    pub fn due(&mut self, now: Millis) -> Vec<Held> {
        let (due, held): (Vec<_>, Vec<_>) = self.held.drain(..).partition(|(at, _)| *at <= now);
        self.held = held;
        due.into_iter().map(|(_, job)| job).collect()
    }

    /// When the next held login may go ahead.
    pub fn next_due(&self) -> Option<Millis> {
        self.held.iter().map(|(at, _)| *at).min()
    }
}

fn account_key(user_key: &str) -> String {
    format!("user:{user_key}")
}

fn address_key(ip: &str) -> String {
    format!("ip:{ip}")
}
