//! ChaCha20-Poly1305 for snow that keeps only its 32-byte key.
//!
//! snow's ring cipher holds a ring `LessSafeKey`, which is sized for the
//! largest AEAD ring offers (AES-GCM's key schedule and tables): over half
//! a kilobyte per direction, so over a kilobyte per idle connection. This
//! one stores the key alone and makes ring's ChaCha20 key (a copy of those
//! 32 bytes) for each message, which costs next to nothing. X25519 is
//! [`super::dh::FastDh25519`]; the rest of the primitives come from snow's
//! own resolvers, ring first.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};

const KEY: usize = 32;
const TAG: usize = 16;

/// snow's ring-then-default resolver, with [`SlimChaCha`] as the cipher
/// and [`super::dh::FastDh25519`] as X25519.
pub struct Resolver(FallbackResolver);

impl Resolver {
    pub fn new() -> Resolver {
        Resolver(FallbackResolver::new(
            Box::new(RingResolver),
            Box::new(DefaultResolver),
        ))
    }
}

impl Default for Resolver {
    fn default() -> Resolver {
        Resolver::new()
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        self.0.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            // Cheaper per handshake than snow's: see dh.rs.
            DHChoice::Curve25519 => Some(Box::new(super::dh::FastDh25519::default())),
            other => self.0.resolve_dh(other),
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        self.0.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        match choice {
            CipherChoice::ChaChaPoly => Some(Box::new(SlimChaCha { key: [0; KEY] })),
            other => self.0.resolve_cipher(other),
        }
    }
}

struct SlimChaCha {
    key: [u8; KEY],
}

impl SlimChaCha {
    fn ring_key(&self) -> LessSafeKey {
        LessSafeKey::new(
            UnboundKey::new(&aead::CHACHA20_POLY1305, &self.key).expect("a 32-byte key"),
        )
    }
}

/// Noise's ChaChaPoly nonce: 4 zero bytes, then the counter little-endian.
fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

impl Cipher for SlimChaCha {
    fn name(&self) -> &'static str {
        "ChaChaPoly"
    }

    fn set(&mut self, key: &[u8; KEY]) {
        self.key = *key;
    }

    fn encrypt(&self, n: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        let len = plaintext.len();
        out[..len].copy_from_slice(plaintext);
        let tag = self
            .ring_key()
            .seal_in_place_separate_tag(nonce(n), Aad::from(authtext), &mut out[..len])
            .expect("ChaCha20-Poly1305 seals any message a frame holds");
        out[len..len + TAG].copy_from_slice(tag.as_ref());
        len + TAG
    }

    fn decrypt(
        &self,
        n: u64,
        authtext: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, snow::Error> {
        let key = self.ring_key();
        if out.len() >= ciphertext.len() {
            let in_out = &mut out[..ciphertext.len()];
            in_out.copy_from_slice(ciphertext);
            let plain = key
                .open_in_place(nonce(n), Aad::from(authtext), in_out)
                .map_err(|_| snow::Error::Decrypt)?;
            Ok(plain.len())
        } else {
            let mut in_out = ciphertext.to_vec();
            let plain = key
                .open_in_place(nonce(n), Aad::from(authtext), &mut in_out)
                .map_err(|_| snow::Error::Decrypt)?;
            out[..plain.len()].copy_from_slice(plain);
            Ok(plain.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bytes as snow's own ring cipher, both ways.
    #[test]
    fn agrees_with_snows_ring_cipher() {
        let theirs = |key: &[u8; KEY]| {
            let mut c = RingResolver
                .resolve_cipher(&CipherChoice::ChaChaPoly)
                .unwrap();
            c.set(key);
            c
        };
        let key = [7u8; KEY];
        let mut ours = SlimChaCha { key: [0; KEY] };
        ours.set(&key);
        let theirs = theirs(&key);
        for (n, text) in [(0u64, &b""[..]), (1, b"hello"), (u64::MAX - 1, &[9u8; 300])] {
            let mut a = vec![0; text.len() + TAG];
            let mut b = vec![0; text.len() + TAG];
            assert_eq!(ours.encrypt(n, b"ad", text, &mut a), text.len() + TAG);
            theirs.encrypt(n, b"ad", text, &mut b);
            assert_eq!(a, b);
            let mut plain = vec![0; text.len()];
            assert_eq!(
                theirs.decrypt(n, b"ad", &a, &mut plain).unwrap(),
                text.len()
            );
            assert_eq!(plain, text);
            // An output buffer too short for the ciphertext, long enough
            // for the plaintext: the other path.
            let mut exact = vec![0; text.len()];
            assert_eq!(ours.decrypt(n, b"ad", &b, &mut exact).unwrap(), text.len());
            assert_eq!(exact, text);
            let mut bad = a.clone();
            bad[0] ^= 1;
            assert!(ours.decrypt(n, b"ad", &bad, &mut plain).is_err());
            assert!(ours.decrypt(n + 1, b"ad", &a, &mut plain).is_err());
        }
    }
}
