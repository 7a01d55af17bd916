//! Domain vocabulary shared by the hub and the store: ids, times, names and
//! the product's fixed limits. No I/O here.

use std::fmt;

/// Milliseconds since the Unix epoch. The hub never reads the clock; the
/// event loop passes this in.
pub type Millis = i64;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A row of `users`.
    UserId
);
id_type!(
    /// A row of `rooms`; shown to people as `#<id>`.
    RoomId
);
id_type!(
    /// A row of `messages`.
    MessageId
);
id_type!(
    /// A row of `devices`: one place an account logged in from with its
    /// password, holding a resume token.
    DeviceId
);

/// How a server numbers the rows it creates (users, rooms, messages,
/// devices): ids `slot`, `slot + step`, `slot + 2 step`, ... from where
/// the store left off. Alone on its database a server counts 1, 2, 3
/// ([`IdSpace::ALONE`]); servers sharing one count in steps of the most
/// servers there may be, each in a slot of its own, so that no two pick
/// the same id without having to ask each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdSpace {
    pub slot: i64,
    pub step: i64,
}

impl IdSpace {
    pub const ALONE: IdSpace = IdSpace { slot: 0, step: 1 };

    /// The first id of this space at or after `from`.
    pub fn at_or_after(self, from: i64) -> i64 {
        from + (self.slot - from).rem_euclid(self.step)
    }
}

/// A message's number in its conversation (a room, or the dialogue of two
/// users): 1, 2, 3, ... in the order the server accepted them, with no gaps
/// among stored messages. History and catch-up select by it, never by time.
pub type Seq = u64;

/// Longest chat text, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Room capacity bounds.
pub const MIN_CAPACITY: u32 = 2;
pub const MAX_CAPACITY: u32 = 1000;
/// Messages of a room that a joining member is shown.
pub const ROOM_HISTORY: usize = 20;
/// Private messages shown when a dialogue is opened.
pub const DIALOGUE_HISTORY: usize = 50;
/// The most messages one `history` reply carries (fewer when their texts
/// would not fit one frame).
pub const HISTORY_PAGE: usize = 200;

/// Why a name was refused. The `Display` text is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub &'static str);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The key under which a user name is unique: ASCII lowercase, since names
/// are ASCII by construction (see [`check_user_name`]).
pub fn user_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The key under which an open room's name is unique: trimmed and lowercased.
pub fn room_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The longest user name, in characters (and so in bytes: names are ASCII).
pub const MAX_USER_NAME: usize = 32;

/// A user name is 3 to [`MAX_USER_NAME`] ASCII letters, digits, `_`, `-` or
/// `.`. ASCII only, so that no two names look alike on screen.
pub fn check_user_name(name: &str) -> Result<(), NameError> {
    let len = name.chars().count();
    if !(3..=MAX_USER_NAME).contains(&len) {
        return Err(NameError("a user name is 3 to 32 characters long"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(NameError(
            "a user name may hold only letters (a-z, A-Z), digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// A room name is 1 to 50 characters after trimming, with no control
/// characters.
pub fn check_room_name(name: &str) -> Result<(), NameError> {
    let name = name.trim();
    let len = name.chars().count();
    if !(1..=50).contains(&len) {
        return Err(NameError("a room name is 1 to 50 characters long"));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError("a room name may not hold control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        assert!(check_user_name("bob").is_ok());
        assert!(check_user_name("a.b-c_9").is_ok());
        assert!(check_user_name("ab").is_err());
        assert!(check_user_name(&"x".repeat(33)).is_err());
        assert!(check_user_name("bad name").is_err());
        assert!(check_user_name("bøb").is_err());
        assert_eq!(user_key("BoB"), "bob");
    }

    #[test]
    fn room_names() {
        assert!(check_room_name("Osagie's chatroom").is_ok());
        assert!(check_room_name("   ").is_err());
        assert!(check_room_name(&"r".repeat(51)).is_err());
        assert!(check_room_name("a\u{7}b").is_err());
        assert_eq!(room_key("  Lobby "), "lobby");
    }
}

#[cfg(test)]
mod id_tests {
    use super::IdSpace;

    #[test]
    fn an_id_space_gives_ids_of_its_slot_only() {
        assert_eq!(IdSpace::ALONE.at_or_after(7), 7);
        let third = IdSpace { slot: 2, step: 4 };
        assert_eq!(third.at_or_after(1), 2);
        assert_eq!(third.at_or_after(2), 2);
        assert_eq!(third.at_or_after(3), 6);
        assert_eq!(third.at_or_after(11), 14);
    }
}
