//! X25519 for snow, with less work on the server's side of a handshake.
//!
//! snow's own X25519 (curve25519-dalek's, from its default resolver) does
//! more than it needs to:
//!
//! - snow sets the server's static private key on every new handshake
//!   state, and the public key is derived from it each time: a base-point
//!   multiplication per login, for a key that never changes. [`FastDh25519`]
//!   keeps the last pair `set` derived, process-wide, and reuses its public
//!   half when the same private key (compared in constant time) comes back.
//!   Ephemeral keys are generated, not set, and skip that cache.
//! - DH is dalek's Montgomery ladder, which is serial code, while dalek
//!   multiplies Edwards points with AVX2 when the CPU has it (detected at
//!   run time). X25519(k, u) is the u-coordinate of [k]P, k clamped, for
//!   the Edwards point P the birational map gives for u: the map is a group
//!   isomorphism, and P and -P have the same u, so either sign will do.
//!   `EdwardsPoint::mul_clamped` multiplies by the clamped integer itself,
//!   not reduced mod ℓ, so a point outside the prime-order subgroup (a peer
//!   may send one) gives what the ladder gives, and a small-order one gives
//!   all zeros, as from the ladder. Both read u modulo p, bit 255 ignored.
//!   A u on the twist has no Edwards point and takes the ladder: that
//!   branch depends on public input only, and both multiplications are
//!   constant-time in k.
//!
//! Cargo.toml also turns on dalek's precomputed base-point tables (snow
//! turns dalek's default features off), for the ephemeral key of each
//! handshake. All three together cut the server's half of a handshake
//! (`handshake` in `benches/core.rs`) by about a third when measured; the
//! figures are in docs/BENCHMARKS.md, "Why the code is the way it is".

use curve25519_dalek::montgomery::MontgomeryPoint;
use snow::types::{Dh, Random};
use std::sync::{Mutex, PoisonError};

const LEN: usize = 32;

/// snow's `25519` DH, done as above.
#[derive(Default)]
pub struct FastDh25519 {
    private: [u8; LEN],
    public: [u8; LEN],
}

/// The (private, public) pair the last `set` derived.
static LAST_SET: Mutex<Option<([u8; LEN], [u8; LEN])>> = Mutex::new(None);

fn public_key(private: [u8; LEN]) -> [u8; LEN] {
    MontgomeryPoint::mul_base_clamped(private).to_bytes()
}

/// [`public_key`], from the cache when `private` is the key set last.
fn public_key_cached(private: [u8; LEN]) -> [u8; LEN] {
    let last = *LAST_SET.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((known, public)) = last
        && same_key(&known, &private)
    {
        return public;
    }
    let public = public_key(private);
    *LAST_SET.lock().unwrap_or_else(PoisonError::into_inner) = Some((private, public));
    public
}

/// Equality in a time that does not depend on where the keys differ.
fn same_key(a: &[u8; LEN], b: &[u8; LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// X25519(k, u), RFC 7748.
fn x25519(k: [u8; LEN], u: [u8; LEN]) -> [u8; LEN] {
    edwards(k, u).unwrap_or_else(|| ladder(k, u))
}

/// X25519 through the Edwards curve; `None` when u is on the twist.
fn edwards(k: [u8; LEN], u: [u8; LEN]) -> Option<[u8; LEN]> {
    let point = MontgomeryPoint(u).to_edwards(0)?;
    Some(point.mul_clamped(k).to_montgomery().to_bytes())
}

/// X25519 with dalek's Montgomery ladder, as snow's default does it.
fn ladder(k: [u8; LEN], u: [u8; LEN]) -> [u8; LEN] {
    MontgomeryPoint(u).mul_clamped(k).to_bytes()
}

impl Dh for FastDh25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        LEN
    }

    fn priv_len(&self) -> usize {
        LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        // As snow's: a shorter key is zero-padded, a longer one panics.
        let mut private = [0; LEN];
        private[..privkey.len()].copy_from_slice(privkey);
        self.private = private;
        self.public = public_key_cached(private);
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut private = [0; LEN];
        rng.try_fill_bytes(&mut private)?;
        self.private = private;
        self.public = public_key(private);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.private
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let u = *pubkey.first_chunk::<LEN>().ok_or(snow::Error::Dh)?;
        out[..LEN].copy_from_slice(&x25519(self.private, u));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::noise::{PATTERN, PROLOGUE};
    use sha2::{Digest, Sha256};
    use snow::Builder;
    use snow::params::DHChoice;
    use snow::resolvers::{CryptoResolver, DefaultResolver};

    fn hex(s: &str) -> [u8; LEN] {
        let mut out = [0; LEN];
        assert_eq!(s.len(), 2 * LEN);
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// Deterministic "random" bytes: SHA-256 of a label and a counter.
    fn bytes(label: &str, i: u32) -> [u8; LEN] {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update(i.to_le_bytes());
        let mut out = [0; LEN];
        out.copy_from_slice(&h.finalize());
        out
    }

    fn ours(private: &[u8; LEN]) -> FastDh25519 {
        let mut dh = FastDh25519::default();
        dh.set(private);
        dh
    }

    fn snows(private: &[u8; LEN]) -> Box<dyn Dh> {
        let mut dh = DefaultResolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        dh.set(private);
        dh
    }

    fn shared(dh: &dyn Dh, public: &[u8]) -> [u8; LEN] {
        let mut out = [0; LEN];
        dh.dh(public, &mut out).unwrap();
        out
    }

    #[test]
    fn rfc7748_section_5_2_vectors() {
        for (k, u, want) in [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ] {
            let (k, u, want) = (hex(k), hex(u), hex(want));
            assert_eq!(x25519(k, u), want);
            assert_eq!(shared(&ours(&k), &u), want);
        }
        // The iterated test, 1 and 1,000 rounds: k, u = X25519(k, u), k.
        let (mut k, mut u) = (hex(&format!("09{}", "00".repeat(31))), [0; LEN]);
        u[0] = 9;
        for round in 1..=1000 {
            (k, u) = (x25519(k, u), k);
            if round == 1 {
                let want = "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079";
                assert_eq!(k, hex(want));
            }
        }
        let want = "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51";
        assert_eq!(k, hex(want));
    }

    #[test]
    fn rfc7748_section_6_1_key_agreement() {
        let alice = ours(&hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = ours(&hex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        let alice_public = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let bob_public = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let want = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(alice.pubkey(), alice_public);
        assert_eq!(bob.pubkey(), bob_public);
        assert_eq!(shared(&alice, &bob_public), want);
        assert_eq!(shared(&bob, &alice_public), want);
    }

    /// The small-order list of <https://cr.yp.to/ecdh.html#validate>: 0,
    /// 1, the two u of order 8, p and p + 1 (0 and 1 again), p - 1 (order
    /// 4 on the twist); then the first ones plus p, which set bit 255:
    /// X25519 ignores that bit, so to it these five are not small-order.
    const SMALL_ORDER: [&str; 12] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
        "4c9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
        "d9ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "daffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "dbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ];

    #[test]
    fn agrees_with_the_ladder() {
        let mut inputs = Vec::new();
        // Random u: about half are on the twist, half have bit 255 set.
        for i in 0..3000 {
            inputs.push((bytes("k", i), bytes("u", i)));
        }
        // Public keys proper, and those with a small-order point added
        // (u of P + T for T of order 8, which the ladder cannot make but
        // the Edwards map can).
        for i in 0..200 {
            let public = MontgomeryPoint::mul_base_clamped(bytes("s", i));
            let torsion = MontgomeryPoint(hex(SMALL_ORDER[2 + (i as usize & 1)]));
            let mixed = public.to_edwards(0).unwrap() + torsion.to_edwards(0).unwrap();
            inputs.push((bytes("k2", i), public.to_bytes()));
            inputs.push((bytes("k3", i), mixed.to_montgomery().to_bytes()));
        }
        // Non-canonical: p + i for the 19 values below 2^255, and every
        // value with and without bit 255.
        let p = hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        for i in 0..19u8 {
            let mut u = p;
            u[0] += i;
            inputs.push((bytes("k4", i.into()), u));
        }
        for (n, u) in SMALL_ORDER.iter().enumerate() {
            for i in 0..20 {
                inputs.push((bytes(&format!("k5 {n}"), i), hex(u)));
            }
        }
        // Scalars at the edges: all zeros, all ones.
        for u in 0..50 {
            inputs.push(([0; LEN], bytes("u6", u)));
            inputs.push(([0xff; LEN], bytes("u6", u)));
        }
        let mut all = inputs.clone();
        all.extend(inputs.iter().map(|&(k, mut u)| {
            u[31] ^= 0x80;
            (k, u)
        }));

        let mut on_curve = 0;
        for &(k, u) in &all {
            let want = ladder(k, u);
            if let Some(got) = edwards(k, u) {
                on_curve += 1;
                assert_eq!(got, want, "k {k:02x?} u {u:02x?}");
            }
            assert_eq!(x25519(k, u), want, "k {k:02x?} u {u:02x?}");
        }
        // Both paths were taken, many times.
        assert!(on_curve > all.len() / 3, "{on_curve} of {}", all.len());
        assert!(on_curve < all.len() * 3 / 4, "{on_curve} of {}", all.len());

        // The small-order points, read as X25519 reads them, give zeros.
        for u in &SMALL_ORDER[..7] {
            for i in 0..20 {
                assert_eq!(x25519(bytes("k7", i), hex(u)), [0; LEN], "u {u}");
            }
        }
    }

    /// Through snow's `Dh` interface, against snow's own X25519.
    #[test]
    fn agrees_with_snows_dh() {
        for i in 0..200 {
            let (k, u) = (bytes("dh k", i), bytes("dh u", i));
            let (a, b) = (ours(&k), snows(&k));
            assert_eq!(a.pubkey(), b.pubkey());
            assert_eq!(a.privkey(), b.privkey());
            assert_eq!(shared(&a, &u), shared(&*b, &u));
            let peer = snows(&bytes("dh peer", i));
            assert_eq!(shared(&a, peer.pubkey()), shared(&*peer, a.pubkey()));
        }
        assert!(FastDh25519::default().dh(&[9; 31], &mut [0; LEN]).is_err());
    }

    #[test]
    fn set_caches_only_the_last_key() {
        let (a, b) = (bytes("cache", 1), bytes("cache", 2));
        // Keys that differ in the last byte only, then the first only.
        let mut c = a;
        c[31] ^= 1;
        let mut d = a;
        d[0] ^= 1;
        for key in [a, b, a, a, b, b, a, c, a, d, a] {
            assert_eq!(ours(&key).pubkey(), snows(&key).pubkey());
            assert_eq!(ours(&key).privkey(), key);
        }
    }

    fn noise(resolver: Box<dyn CryptoResolver + Send>) -> Builder<'static> {
        Builder::with_resolver(PATTERN.parse().unwrap(), resolver)
            .prologue(PROLOGUE)
            .unwrap()
    }

    fn ours_resolver() -> Box<dyn CryptoResolver + Send> {
        Box::new(crate::wire::cipher::Resolver::new())
    }

    /// A full NX handshake, then a message each way.
    fn handshake(client: Builder<'static>, server: Builder<'static>, key: &[u8; LEN]) {
        let mut client = client.build_initiator().unwrap();
        let mut server = server
            .local_private_key(key)
            .unwrap()
            .build_responder()
            .unwrap();
        let (mut buf, mut plain) = (vec![0; 1024], vec![0; 1024]);
        let n = client.write_message(&[], &mut buf).unwrap();
        server.read_message(&buf[..n], &mut plain).unwrap();
        let n = server.write_message(b"hi", &mut buf).unwrap();
        assert_eq!(client.read_message(&buf[..n], &mut plain).unwrap(), 2);
        assert_eq!(&plain[..2], b"hi");
        assert_eq!(client.get_remote_static().unwrap(), snows(key).pubkey());
        let (mut client, mut server) = (
            client.into_transport_mode().unwrap(),
            server.into_transport_mode().unwrap(),
        );
        let n = client.write_message(b"ping", &mut buf).unwrap();
        let m = server.read_message(&buf[..n], &mut plain).unwrap();
        assert_eq!(&plain[..m], b"ping");
        let n = server.write_message(b"pong", &mut buf).unwrap();
        let m = client.read_message(&buf[..n], &mut plain).unwrap();
        assert_eq!(&plain[..m], b"pong");
    }

    #[test]
    fn noise_handshakes_with_snows_default_resolver() {
        for i in 0..4 {
            let key = bytes("server key", i);
            let default = || noise(Box::new(DefaultResolver));
            handshake(default(), noise(ours_resolver()), &key);
            handshake(noise(ours_resolver()), default(), &key);
            handshake(noise(ours_resolver()), noise(ours_resolver()), &key);
        }
    }
}
