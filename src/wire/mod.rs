//! The chatapp wire protocol, as pure functions and state machines over
//! byte buffers: no sockets here.
//!
//! A connection is a Noise `NX` handshake ([`noise`]) followed by frames
//! ([`frame`]) whose plaintext is one MessagePack value ([`msg`]).
//! `docs/PROTOCOL.md` describes the same thing for other implementations.

// Public only so that the fuzz targets can hold them up against reference
// implementations (fuzz/logic.rs); nothing else outside `wire` uses them.
pub mod bus;
pub mod cipher;
pub mod dh;
pub mod frame;
pub mod msg;
pub mod noise;

use std::fmt;

/// Everything that can go wrong on the wire. The text says what happened;
/// the caller closes the connection.
#[derive(Debug)]
pub enum WireError {
    /// The peer's first message or reply did not complete a handshake.
    Handshake(snow::Error),
    /// A transport frame failed to decrypt: corrupted, replayed or forged.
    Decrypt,
    /// Decrypted bytes that are not one well-formed message of ours.
    Decode(String),
    /// A message of ours that would not fit a frame (a bug, not bad input).
    TooLarge(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Handshake(e) => write!(
                f,
                "noise handshake failed ({e}): the peer is not a chatapp of this protocol version"
            ),
            WireError::Decrypt => f.write_str("a frame failed to decrypt"),
            WireError::Decode(e) => write!(f, "malformed message: {e}"),
            WireError::TooLarge(n) => write!(f, "a {n}-byte message does not fit in one frame"),
        }
    }
}

impl std::error::Error for WireError {}
