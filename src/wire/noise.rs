//! The Noise handshake and transport, as types: a [`Transport`] only exists
//! once a handshake has finished, so nothing can be sent in the clear by
//! mistake, and the client's handshake yields a [`PendingTrust`] that must be
//! accepted (after the server key was checked) before it becomes a
//! transport.
//!
//! The pattern is `NX`: the client is anonymous at this layer (it proves
//! who it is by logging in, inside the channel) and learns the server's
//! static key in the second message. The prologue names the protocol
//! version, so peers of different versions fail the handshake instead of
//! misreading each other.

use super::WireError;
use super::frame::{self, MAX_FRAME, MAX_PLAINTEXT};
use base64ct::{Base64Unpadded, Encoding};
use sha2::{Digest, Sha256};
use snow::{Builder, HandshakeState, TransportState};

pub const PATTERN: &str = "Noise_NX_25519_ChaChaPoly_BLAKE2s";
/// Mixed into the handshake hash; a peer with another prologue fails.
pub const PROLOGUE: &[u8] = b"chatapp protocol 3";
/// Bytes of an X25519 key.
pub const KEY_LEN: usize = 32;

fn builder() -> Builder<'static> {
    Builder::with_resolver(
        PATTERN.parse().expect("the pattern name is valid"),
        Box::new(super::cipher::Resolver::new()),
    )
}

/// The server's long-term X25519 key pair.
#[derive(Clone)]
pub struct StaticKey {
    private: [u8; KEY_LEN],
    public: [u8; KEY_LEN],
}

impl StaticKey {
    pub fn generate() -> StaticKey {
        let pair = builder().generate_keypair().expect("key generation");
        StaticKey {
            private: pair.private.try_into().expect("32-byte private key"),
            public: pair.public.try_into().expect("32-byte public key"),
        }
    }

    /// The key file's format: private key then public key, 64 bytes.
    pub fn to_bytes(&self) -> [u8; 2 * KEY_LEN] {
        let mut out = [0; 2 * KEY_LEN];
        out[..KEY_LEN].copy_from_slice(&self.private);
        out[KEY_LEN..].copy_from_slice(&self.public);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<StaticKey> {
        if bytes.len() != 2 * KEY_LEN {
            return None;
        }
        Some(StaticKey {
            private: bytes[..KEY_LEN].try_into().ok()?,
            public: bytes[KEY_LEN..].try_into().ok()?,
        })
    }

    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public)
    }
}

/// `SHA256:<base64>` of a public key, as SSH shows host keys.
pub fn fingerprint(public: &[u8]) -> String {
    format!(
        "SHA256:{}",
        Base64Unpadded::encode_string(&Sha256::digest(public))
    )
}

/// The server's half of a handshake: it answers the client's first message.
pub struct ServerHandshake(HandshakeState);

impl ServerHandshake {
    pub fn new(key: &StaticKey) -> ServerHandshake {
        let state = builder()
            .local_private_key(&key.private)
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_responder())
            .expect("responder from a valid key");
        ServerHandshake(state)
    }

    /// Reads the client's first message; returns the frame body of the reply
    /// and the finished transport.
    pub fn respond(mut self, first: &[u8]) -> Result<(Vec<u8>, Transport), WireError> {
        // The first message is the client's ephemeral key and an empty
        // payload: exactly 32 bytes. Anything else is not one of ours, and
        // refusing it here closes junk connections at once.
        if first.len() != KEY_LEN {
            return Err(WireError::Handshake(snow::Error::Input));
        }
        let mut scratch = vec![0; MAX_FRAME];
        self.0
            .read_message(first, &mut scratch)
            .map_err(WireError::Handshake)?;
        let len = self
            .0
            .write_message(&[], &mut scratch)
            .map_err(WireError::Handshake)?;
        scratch.truncate(len);
        let transport = self.0.into_transport_mode().map_err(WireError::Handshake)?;
        Ok((scratch, Transport(transport)))
    }
}

/// The client's half of a handshake.
pub struct ClientHandshake(HandshakeState);

impl ClientHandshake {
    /// Starts a handshake; returns the first message's frame body to send.
    pub fn start() -> (ClientHandshake, Vec<u8>) {
        let mut state = builder()
            .prologue(PROLOGUE)
            .and_then(|b| b.build_initiator())
            .expect("initiator");
        let mut first = vec![0; MAX_FRAME];
        let len = state.write_message(&[], &mut first).expect("first message");
        first.truncate(len);
        (ClientHandshake(state), first)
    }

    /// Reads the server's reply. The result names the server's key; the
    /// caller checks it against what it trusts before calling
    /// [`PendingTrust::accept`].
    pub fn finish(mut self, reply: &[u8]) -> Result<PendingTrust, WireError> {
        let mut scratch = vec![0; MAX_FRAME];
        self.0
            .read_message(reply, &mut scratch)
            .map_err(WireError::Handshake)?;
        let server_key = self
            .0
            .get_remote_static()
            .and_then(|k| <[u8; KEY_LEN]>::try_from(k).ok())
            .ok_or(WireError::Handshake(snow::Error::Input))?;
        let transport = self.0.into_transport_mode().map_err(WireError::Handshake)?;
        Ok(PendingTrust {
            transport,
            server_key,
        })
    }
}

/// A finished client handshake whose server key has not been accepted yet.
pub struct PendingTrust {
    transport: TransportState,
    server_key: [u8; KEY_LEN],
}

impl PendingTrust {
    pub fn server_key(&self) -> &[u8; KEY_LEN] {
        &self.server_key
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.server_key)
    }

    /// The caller has checked the key: the channel may now be used.
    pub fn accept(self) -> Transport {
        Transport(self.transport)
    }
}

/// An established channel: encrypts outgoing and decrypts incoming frames.
pub struct Transport(TransportState);

impl Transport {
    /// Encrypts `plaintext` and appends it to `out` as one frame.
    pub fn seal_into(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(WireError::TooLarge(plaintext.len()));
        }
        let start = out.len();
        out.resize(start + frame::HEADER + plaintext.len() + frame::TAG, 0);
        let len = self
            .0
            .write_message(plaintext, &mut out[start + frame::HEADER..])
            .map_err(|_| WireError::TooLarge(plaintext.len()))?;
        out.truncate(start + frame::HEADER + len);
        let len = u16::try_from(len).expect("noise message fits in a frame");
        out[start..start + frame::HEADER].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Decrypts one frame body into `out` (cleared first).
    pub fn open_into(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
        out.clear();
        out.resize(body.len(), 0);
        let len = self
            .0
            .read_message(body, out)
            .map_err(|_| WireError::Decrypt)?;
        out.truncate(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &StaticKey) -> (Transport, Transport, String) {
        let (client, first) = ClientHandshake::start();
        let (reply, server) = ServerHandshake::new(key).respond(&first).unwrap();
        let pending = client.finish(&reply).unwrap();
        let seen = pending.fingerprint();
        (pending.accept(), server, seen)
    }

    #[test]
    fn handshake_shows_the_server_key_and_carries_frames_both_ways() {
        let key = StaticKey::generate();
        let (mut client, mut server, seen) = pair(&key);
        assert_eq!(seen, key.fingerprint());
        assert!(seen.starts_with("SHA256:") && seen.len() == 7 + 43);

        let mut wire = Vec::new();
        client.seal_into(b"ping", &mut wire).unwrap();
        client.seal_into(b"again", &mut wire).unwrap();
        let mut plain = Vec::new();
        let (body, used) = frame::parse(&wire).unwrap();
        server.open_into(body, &mut plain).unwrap();
        assert_eq!(plain, b"ping");
        let (body, _) = frame::parse(&wire[used..]).unwrap();
        server.open_into(body, &mut plain).unwrap();
        assert_eq!(plain, b"again");

        wire.clear();
        server.seal_into(b"pong", &mut wire).unwrap();
        client
            .open_into(frame::parse(&wire).unwrap().0, &mut plain)
            .unwrap();
        assert_eq!(plain, b"pong");
    }

    #[test]
    fn tampered_or_replayed_frames_fail() {
        let key = StaticKey::generate();
        let (mut client, mut server, _) = pair(&key);
        let mut wire = Vec::new();
        client.seal_into(b"hello", &mut wire).unwrap();
        let mut bad = wire.clone();
        *bad.last_mut().unwrap() ^= 1;
        let mut plain = Vec::new();
        assert!(server.open_into(&bad[2..], &mut plain).is_err());
        // A failed decrypt does not advance the nonce; the real frame still opens once.
        server.open_into(&wire[2..], &mut plain).unwrap();
        assert!(server.open_into(&wire[2..], &mut plain).is_err());
    }

    #[test]
    fn another_prologue_fails_the_handshake() {
        let key = StaticKey::generate();
        let mut other = builder()
            .prologue(b"chatapp protocol 0")
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut first = vec![0; MAX_FRAME];
        let n = other.write_message(&[], &mut first).unwrap();
        let (reply, _) = ServerHandshake::new(&key).respond(&first[..n]).unwrap();
        let mut scratch = vec![0; MAX_FRAME];
        assert!(other.read_message(&reply, &mut scratch).is_err());
    }

    #[test]
    fn garbage_first_message_is_an_error_not_a_panic() {
        let key = StaticKey::generate();
        for junk in [
            &b""[..],
            b"x",
            &[0u8; 31],
            &[0u8; 33],
            &[7u8; 200],
            &[1u8; 65535],
        ] {
            assert!(ServerHandshake::new(&key).respond(junk).is_err());
        }
        // 32 bytes are an ephemeral key to NX, whatever their value.
        assert!(ServerHandshake::new(&key).respond(&[7u8; 32]).is_ok());
    }

    #[test]
    fn key_bytes_round_trip() {
        let key = StaticKey::generate();
        let back = StaticKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(back.public(), key.public());
        assert!(StaticKey::from_bytes(&[0; 63]).is_none());
    }
}
