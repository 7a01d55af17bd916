//! Devices and their resume tokens: each place an account logged in from
//! with its password holds one token of 256 random bits, known here (and
//! in the store) only by its SHA-256. A resume replaces the token; the
//! hash of the one it replaced is kept, so that presenting that one again
//! (a copied token) is recognised and revokes the device. Which device
//! each logged-in connection came from is kept too, for `logout`.
//!
//! The randomness is a CSPRNG the hub is given at construction, seeded
//! by its owner: from the OS in the server, from a fixed seed in tests.

use super::effects::{ConnId, ConnMap};
use crate::model::{DeviceId, IdSpace, Millis, UserId};
use crate::store::{DeviceRow, Origin, TokenHash};
use rand::Rng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Characters of a token as sent: 32 bytes in lowercase hex.
pub(super) const TOKEN_CHARS: usize = 64;

pub(super) struct Device {
    pub user: UserId,
    pub token_hash: TokenHash,
    pub previous_hash: Option<TokenHash>,
    pub last_used: Millis,
    /// The highest client id of a message from this device accepted.
    pub last_client_id: u64,
}

/// What a message's client id says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// No id (or no device to hold it): a message like any other.
    Unnumbered,
    /// A new message, recorded as its device's latest.
    New(Origin),
    /// An id the device sent before: the same message again.
    Repeat,
}

/// What a presented token turned out to be.
pub(super) enum Presented {
    /// Not 64 hex characters.
    Malformed,
    /// No device holds it, now or before its last resume.
    Unknown,
    /// The device's current token, unused for longer than the expiry: the
    /// device is gone.
    Expired { device: DeviceId, user: UserId },
    /// A token the device held before its last resume: someone copied it.
    /// The device is gone; `sessions` were logged in from it.
    Reused {
        device: DeviceId,
        user: UserId,
        sessions: Vec<ConnId>,
    },
    /// The device's current token: it now holds `token` instead.
    Resumed {
        device: DeviceId,
        user: UserId,
        token: String,
        token_hash: TokenHash,
        previous_hash: TokenHash,
    },
}

/// A device just made for a password login.
pub(super) struct Created {
    pub device: DeviceId,
    pub token: String,
    pub token_hash: TokenHash,
    /// Devices of the same account revoked to stay within the cap, least
    /// recently used first.
    pub evicted: Vec<DeviceId>,
}

pub(super) struct Devices {
    devices: HashMap<DeviceId, Device>,
    by_token: HashMap<TokenHash, DeviceId>,
    by_previous: HashMap<TokenHash, DeviceId>,
    by_user: HashMap<UserId, Vec<DeviceId>>,
    /// The device each logged-in connection came from.
    sessions: ConnMap<DeviceId>,
    next_device: i64,
    ids: IdSpace,
    rng: StdRng,
}

impl Devices {
    pub fn new(rows: Vec<DeviceRow>, rng: StdRng) -> Devices {
        let mut devices = Devices {
            devices: HashMap::new(),
            by_token: HashMap::new(),
            by_previous: HashMap::new(),
            by_user: HashMap::new(),
            sessions: ConnMap::default(),
            next_device: 1,
            ids: IdSpace::ALONE,
            rng,
        };
        for row in rows {
            devices.next_device = devices.next_device.max(row.id.0 + 1);
            devices.insert(
                row.id,
                Device {
                    user: row.user,
                    token_hash: row.token_hash,
                    previous_hash: row.previous_hash,
                    last_used: row.last_used,
                    last_client_id: row.last_client_id,
                },
            );
        }
        devices
    }

    /// Devices made from now on take ids of `ids` only.
    pub fn use_ids(&mut self, ids: IdSpace) {
        self.ids = ids;
        self.next_device = ids.at_or_after(self.next_device);
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    fn insert(&mut self, id: DeviceId, device: Device) {
        self.by_token.insert(device.token_hash, id);
        if let Some(previous) = device.previous_hash {
            self.by_previous.insert(previous, id);
        }
        self.by_user.entry(device.user).or_default().push(id);
        self.devices.insert(id, device);
    }

    /// A new device for `user`, with a fresh token; past `cap` devices the
    /// account's least recently used ones are revoked.
    pub fn create(&mut self, user: UserId, now: Millis, cap: usize) -> Created {
        let (token, token_hash) = self.fresh_token();
        let device = DeviceId(self.next_device);
        self.next_device += self.ids.step;
        let mut evicted = Vec::new();
        let mine = self.by_user.get(&user).map_or(0, Vec::len);
        for _ in cap.max(1)..=mine {
            let oldest = self.by_user[&user]
                .iter()
                .min_by_key(|id| (self.devices[id].last_used, **id))
                .copied();
            if let Some(id) = oldest {
                self.remove(id);
                evicted.push(id);
            }
        }
        let new = Device {
            user,
            token_hash,
            previous_hash: None,
            last_used: now,
            last_client_id: 0,
        };
        self.insert(device, new);
        Created {
            device,
            token,
            token_hash,
            evicted,
        }
    }

    /// Looks a presented token up and acts on what it finds: a current
    /// token is replaced (or, expired, its device removed), a replaced one
    /// revokes its device.
    pub fn present(&mut self, token: &str, now: Millis, expiry: Millis) -> Presented {
        let Some(bytes) = parse_token(token) else {
            return Presented::Malformed;
        };
        let hash = hash_token(&bytes);
        if let Some(&device) = self.by_token.get(&hash) {
            let d = &self.devices[&device];
            let user = d.user;
            if now - d.last_used > expiry {
                self.remove(device);
                return Presented::Expired { device, user };
            }
            let (token, token_hash) = self.fresh_token();
            let d = self.devices.get_mut(&device).expect("found by its token");
            if let Some(old) = d.previous_hash.replace(hash) {
                self.by_previous.remove(&old);
            }
            d.token_hash = token_hash;
            d.last_used = now;
            self.by_token.remove(&hash);
            self.by_token.insert(token_hash, device);
            self.by_previous.insert(hash, device);
            return Presented::Resumed {
                device,
                user,
                token,
                token_hash,
                previous_hash: hash,
            };
        }
        if let Some(&device) = self.by_previous.get(&hash) {
            let user = self.devices[&device].user;
            let sessions = self.sessions_of(device);
            self.remove(device);
            return Presented::Reused {
                device,
                user,
                sessions,
            };
        }
        Presented::Unknown
    }

    /// A device another server made (a password login there): false if
    /// it is known already.
    pub fn learn(
        &mut self,
        id: DeviceId,
        user: UserId,
        token_hash: TokenHash,
        now: Millis,
    ) -> bool {
        if self.devices.contains_key(&id) || self.by_token.contains_key(&token_hash) {
            return false;
        }
        let device = Device {
            user,
            token_hash,
            previous_hash: None,
            last_used: now,
            last_client_id: 0,
        };
        self.insert(id, device);
        true
    }

    /// A device as the shared store holds it (looked up by its token).
    pub fn learn_row(&mut self, row: DeviceRow) {
        let device = Device {
            user: row.user,
            token_hash: row.token_hash,
            previous_hash: row.previous_hash,
            last_used: row.last_used,
            last_client_id: row.last_client_id,
        };
        self.insert(row.id, device);
    }

    /// A device resumed on another server: it holds `token_hash` now, and
    /// the token it replaced counts as used (presenting it again revokes
    /// the device). The sessions it has here, if any, are the caller's to
    /// end. False if the device is not known here.
    pub fn rotated(
        &mut self,
        id: DeviceId,
        token_hash: TokenHash,
        previous: TokenHash,
        used: Millis,
    ) -> bool {
        let Some(device) = self.devices.get(&id) else {
            return false;
        };
        let user = device.user;
        let last_client_id = device.last_client_id;
        self.remove(id);
        let device = Device {
            user,
            token_hash,
            previous_hash: Some(previous),
            last_used: used,
            last_client_id,
        };
        self.insert(id, device);
        true
    }

    /// Forgets a device (and which sessions came from it); false if it was
    /// gone already.
    pub fn remove(&mut self, id: DeviceId) -> bool {
        let Some(device) = self.devices.remove(&id) else {
            return false;
        };
        self.by_token.remove(&device.token_hash);
        if let Some(previous) = device.previous_hash {
            self.by_previous.remove(&previous);
        }
        if let Some(list) = self.by_user.get_mut(&device.user) {
            list.retain(|&d| d != id);
            if list.is_empty() {
                self.by_user.remove(&device.user);
            }
        }
        self.sessions.retain(|_, d| *d != id);
        true
    }

    /// Removes every device unused for longer than `expiry`; returns them,
    /// in id order.
    pub fn expire(&mut self, now: Millis, expiry: Millis) -> Vec<DeviceId> {
        let mut gone: Vec<DeviceId> = self
            .devices
            .iter()
            .filter(|(_, d)| now - d.last_used > expiry)
            .map(|(id, _)| *id)
            .collect();
        gone.sort();
        for &id in &gone {
            self.remove(id);
        }
        gone
    }

    /// Checks a message's client id against its connection's device, and
    /// records a new one. Ids of one device only go up, so any id not
    /// above the last one accepted is a repeat.
    pub fn sent(&mut self, conn: ConnId, client_id: u64) -> Sent {
        if client_id == 0 {
            return Sent::Unnumbered;
        }
        let Some(&device) = self.sessions.get(&conn) else {
            return Sent::Unnumbered;
        };
        let Some(d) = self.devices.get_mut(&device) else {
            return Sent::Unnumbered;
        };
        if client_id <= d.last_client_id {
            return Sent::Repeat;
        }
        d.last_client_id = client_id;
        Sent::New(Origin { device, client_id })
    }

    /// A message from the device was stored through another server: a
    /// repeat of its client id here is a repeat too.
    pub fn noted(&mut self, origin: Origin) {
        if let Some(d) = self.devices.get_mut(&origin.device) {
            d.last_client_id = d.last_client_id.max(origin.client_id);
        }
    }

    /// The connection is logged in from this device.
    pub fn attach(&mut self, conn: ConnId, device: DeviceId) {
        self.sessions.insert(conn, device);
    }

    /// The connection's session ended; the device it came from, if any.
    pub fn detach(&mut self, conn: ConnId) -> Option<DeviceId> {
        self.sessions.remove(&conn)
    }

    /// The connections logged in from this device.
    pub fn sessions_of(&self, device: DeviceId) -> Vec<ConnId> {
        let mut conns: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, d)| **d == device)
            .map(|(c, _)| *c)
            .collect();
        conns.sort();
        conns
    }

    fn fresh_token(&mut self) -> (String, TokenHash) {
        let mut bytes = [0u8; 32];
        self.rng.fill_bytes(&mut bytes);
        (to_hex(&bytes), hash_token(&bytes))
    }
}

/// The SHA-256 of a token's 32 bytes: what the store keeps of it.
pub fn hash_token(bytes: &[u8; 32]) -> TokenHash {
    Sha256::digest(bytes).into()
}

/// A token's 32 bytes, if it is 64 hex characters (either case).
pub fn parse_token(token: &str) -> Option<[u8; 32]> {
    let text = token.as_bytes();
    if text.len() != TOKEN_CHARS {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(bytes)
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
