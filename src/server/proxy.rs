//! The PROXY protocol, version 2: the binary header a TCP load balancer
//! (HAProxy's `send-proxy-v2`) writes at the start of each connection it
//! opens to a node, naming the client it stands for. Without it every
//! client behind the balancer would come from the balancer's address, and
//! the per-address limits (connections, failed logins) would treat all of
//! them as one. Only connections from the addresses given to
//! `--proxy-protocol` are read this way (`net.rs`); anyone else could
//! otherwise claim any address.
//!
//! The format is HAProxy's "The PROXY protocol" specification, section 2.2:
//! a 12-byte signature, a version-and-command byte, an address-family
//! byte, a 16-bit big-endian length, then that many bytes of addresses
//! (and optional TLVs, which are skipped).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family, length.
const FIXED: usize = 16;
/// The longest header accepted: addresses of the largest family (AF_UNIX,
/// 216 bytes) and room for a balancer's usual TLVs. A longer one is
/// refused rather than buffered.
pub const MAX_HEADER: usize = 536;

/// What a whole header says.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// The balancer relays this client.
    Proxied(SocketAddr),
    /// The balancer speaks for itself (a health check), or relays a client
    /// of a family that has no IP address: the connection's own address
    /// stands.
    Local,
}

/// Reads a header from the start of `input`: `Ok(None)` while it is
/// incomplete, else the header and how many bytes it took.
pub fn parse(input: &[u8]) -> Result<Option<(Header, usize)>, String> {
    let seen = input.len().min(SIGNATURE.len());
    if input[..seen] != SIGNATURE[..seen] {
        return Err(
            "a connection from the load balancer did not start with a PROXY protocol \
             version 2 header: set `send-proxy-v2` on the balancer's server lines, or remove \
             its address from --proxy-protocol"
                .into(),
        );
    }
    if input.len() < FIXED {
        return Ok(None);
    }
    let (version, command) = (input[12] >> 4, input[12] & 0x0f);
    if version != 2 {
        return Err(format!(
            "PROXY protocol version {version} is not supported: only version 2 (send-proxy-v2)"
        ));
    }
    let len = usize::from(u16::from_be_bytes([input[14], input[15]]));
    if FIXED + len > MAX_HEADER {
        return Err(format!(
            "a PROXY protocol header of {} bytes is longer than the {MAX_HEADER} accepted",
            FIXED + len
        ));
    }
    if input.len() < FIXED + len {
        return Ok(None);
    }
    let body = &input[FIXED..FIXED + len];
    let header = match command {
        0 => Header::Local,
        1 => address(input[13], body)?,
        other => return Err(format!("unknown PROXY protocol command {other}")),
    };
    Ok(Some((header, FIXED + len)))
}

/// The client's address from a PROXY command's body.
fn address(family: u8, body: &[u8]) -> Result<Header, String> {
    let short = |need: usize| {
        format!(
            "a PROXY protocol address block of {} bytes, {need} needed",
            body.len()
        )
    };
    match family >> 4 {
        // AF_INET: source, destination, source port, destination port.
        1 => {
            let b: &[u8; 12] = body
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| short(12))?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            let port = u16::from_be_bytes([b[8], b[9]]);
            Ok(Header::Proxied(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        // AF_INET6.
        2 => {
            let b: &[u8; 36] = body
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| short(36))?;
            let octets: [u8; 16] = b[..16].try_into().expect("16 bytes");
            let port = u16::from_be_bytes([b[32], b[33]]);
            Ok(Header::Proxied(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        // AF_UNSPEC or AF_UNIX: no IP address to count the client under.
        _ => Ok(Header::Local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn a_tcp4_header_names_the_client_and_what_follows_is_left() {
        let mut body = vec![203, 0, 113, 7, 10, 0, 0, 2];
        body.extend_from_slice(&54321u16.to_be_bytes());
        body.extend_from_slice(&7878u16.to_be_bytes());
        let mut input = header(1, 0x11, &body);
        let len = input.len();
        input.extend_from_slice(b"noise");
        assert_eq!(
            parse(&input),
            Ok(Some((
                Header::Proxied("203.0.113.7:54321".parse().unwrap()),
                len
            )))
        );
        // Every prefix is incomplete, not wrong.
        for cut in 0..len {
            assert_eq!(parse(&input[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn a_tcp6_header_with_tlvs_names_the_client_and_skips_them() {
        let client: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let mut body = client.octets().to_vec();
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&443u16.to_be_bytes());
        body.extend_from_slice(&7878u16.to_be_bytes());
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // a NOOP TLV
        let input = header(1, 0x21, &body);
        assert_eq!(
            parse(&input),
            Ok(Some((
                Header::Proxied("[2001:db8::7]:443".parse().unwrap()),
                input.len()
            )))
        );
    }

    #[test]
    fn a_health_check_or_a_unix_client_keeps_the_connection_s_address() {
        let local = header(0, 0x00, &[]);
        assert_eq!(parse(&local), Ok(Some((Header::Local, 16))));
        let unix = header(1, 0x31, &[0; 216]);
        assert_eq!(parse(&unix), Ok(Some((Header::Local, 232))));
    }

    #[test]
    fn anything_else_is_refused_with_what_to_do() {
        let no_header = parse(b"\x00\x20noise handshake").unwrap_err();
        assert!(no_header.contains("send-proxy-v2"), "{no_header}");
        let v1 = parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n").unwrap_err();
        assert!(v1.contains("send-proxy-v2"), "{v1}");
        let mut v3 = header(1, 0x11, &[0; 12]);
        v3[12] = 0x31;
        assert!(parse(&v3).unwrap_err().contains("version 3"));
        let short = header(1, 0x11, &[0; 4]);
        assert!(parse(&short).unwrap_err().contains("4 bytes, 12 needed"));
        let mut long = header(1, 0x11, &[]);
        long[14..16].copy_from_slice(&1000u16.to_be_bytes());
        assert!(parse(&long).unwrap_err().contains("longer than"));
        let mut command = header(1, 0x11, &[0; 12]);
        command[12] = 0x2f;
        assert!(parse(&command).unwrap_err().contains("command 15"));
    }
}
