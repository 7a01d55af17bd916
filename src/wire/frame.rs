//! Framing: every Noise message travels as a 16-bit big-endian length
//! followed by that many bytes. Noise caps a message at 65535 bytes, so the
//! length field can express nothing larger and a reader never has to guess.

/// Largest frame body (one Noise message).
pub const MAX_FRAME: usize = 65535;
/// Bytes Noise adds to every transport message (the AEAD tag).
pub const TAG: usize = 16;
/// Bytes of the length prefix.
pub const HEADER: usize = 2;
/// Largest plaintext one transport frame carries (Noise adds a 16-byte tag).
pub const MAX_PLAINTEXT: usize = MAX_FRAME - TAG;

/// Looks for one whole frame at the start of `buf`. Returns its body and the
/// number of bytes it occupies, or `None` if more bytes are needed. Nothing
/// is allocated: an incomplete frame is not an error, just not yet.
pub fn parse(buf: &[u8]) -> Option<(&[u8], usize)> {
    let header: [u8; HEADER] = buf.get(..HEADER)?.try_into().ok()?;
    let len = u16::from_be_bytes(header) as usize;
    let body = buf.get(HEADER..HEADER + len)?;
    Some((body, HEADER + len))
}

/// Appends `body` to `out` as one frame.
///
/// # Panics
/// If `body` is longer than [`MAX_FRAME`]; callers produce bodies with
/// snow, which refuses to make longer ones.
pub fn push(out: &mut Vec<u8>, body: &[u8]) {
    let len = u16::try_from(body.len()).expect("frame body fits in 16 bits");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_input() {
        let mut out = Vec::new();
        push(&mut out, b"hello");
        push(&mut out, b"");
        assert_eq!(out.len(), 2 + 5 + 2);
        for cut in 0..7 {
            assert_eq!(parse(&out[..cut]), None, "cut at {cut}");
        }
        let (body, used) = parse(&out).unwrap();
        assert_eq!((body, used), (&b"hello"[..], 7));
        assert_eq!(parse(&out[used..]), Some((&b""[..], 2)));
    }

    #[test]
    fn largest_length_waits_for_all_bytes() {
        let mut buf = vec![0xff, 0xff];
        buf.resize(2 + 65534, 0);
        assert_eq!(parse(&buf), None);
        buf.push(0);
        assert_eq!(parse(&buf).unwrap().1, 2 + 65535);
    }
}
