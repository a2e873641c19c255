//! STUN Binding requests (RFC 5389) to the TURN server: the round-trip time, the loss and
//! the public address it saw. The message format is small enough to write here: a 20-byte
//! header (type, length, magic cookie `0x2112A442`, a 96-bit transaction ID), and in the
//! answer an XOR-MAPPED-ADDRESS (or the older MAPPED-ADDRESS) attribute.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

/// RFC 5389 §6.
pub const MAGIC: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// A Binding request with this transaction ID.
pub fn request(id: [u8; 12]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // Length 0: no attributes.
    out[4..8].copy_from_slice(&MAGIC.to_be_bytes());
    out[8..20].copy_from_slice(&id);
    out
}

/// The mapped address in a Binding success answer to `id`; `None` for anything else (a
/// different transaction, an error answer, a malformed message).
pub fn mapped_address(answer: &[u8], id: [u8; 12]) -> Option<Option<SocketAddr>> {
    let header = answer.get(..20)?;
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if kind != BINDING_SUCCESS || header[4..8] != MAGIC.to_be_bytes() || header[8..20] != id {
        return None;
    }
    let mut attrs = answer.get(20..20 + length)?;
    let mut plain = None;
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let len = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + len)?;
        match kind {
            XOR_MAPPED_ADDRESS => return Some(address(value, Some(id))),
            MAPPED_ADDRESS => plain = address(value, None),
            _ => {}
        }
        // Attributes are padded to 4 bytes.
        let next = (4 + len).div_ceil(4) * 4;
        attrs = attrs.get(next..).unwrap_or_default();
    }
    Some(plain)
}

/// An address attribute's value: family, port, address; XORed with the cookie (and the
/// transaction ID for IPv6) when `xor` carries the ID.
fn address(value: &[u8], xor: Option<[u8; 12]>) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let mut port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]);
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC.to_be_bytes());
    if let Some(id) = xor {
        port ^= (MAGIC >> 16) as u16;
        key[4..].copy_from_slice(&id);
    }
    let xored = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .iter()
            .zip(key.iter())
            .map(|(b, k)| if xor.is_some() { b ^ k } else { *b })
            .collect()
    };
    let ip = match family {
        1 => {
            let b = xored(value.get(4..8)?);
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        2 => {
            let b: [u8; 16] = xored(value.get(4..20)?).try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// What `count` Binding requests to `target` got: each answered request's round-trip time,
/// and the mapped address of the last answer. Each request waits at most `wait`.
pub async fn probe(
    target: SocketAddr,
    count: usize,
    wait: Duration,
) -> std::io::Result<(Vec<Duration>, Option<SocketAddr>)> {
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(target).await?;
    let mut rtts = Vec::new();
    let mut mapped = None;
    let mut buf = [0u8; 1500];
    for n in 0..count {
        let id = transaction_id(n);
        let sent = Instant::now();
        socket.send(&request(id)).await?;
        let deadline = sent + wait;
        // Answers to earlier requests may still arrive; only this one's counts.
        while let Ok(Ok(len)) =
            tokio::time::timeout_at(deadline.into(), socket.recv(&mut buf)).await
        {
            if let Some(address) = mapped_address(&buf[..len], id) {
                rtts.push(sent.elapsed());
                mapped = address.or(mapped);
                break;
            }
        }
    }
    Ok((rtts, mapped))
}

/// A transaction ID: the process ID, the time and the request's number (unique enough to
/// tell this check's answers from stray ones; not a secret).
fn transaction_id(n: usize) -> [u8; 12] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&std::process::id().to_be_bytes());
    id[4..8].copy_from_slice(&nanos.to_be_bytes());
    id[8..].copy_from_slice(&(n as u32).to_be_bytes());
    id
}

/// A Binding success answer for `id` naming `seen` (for the tests' responder).
pub fn answer(id: [u8; 12], seen: SocketAddr) -> Vec<u8> {
    let mut value = vec![0u8, if seen.is_ipv4() { 1 } else { 2 }];
    value.extend_from_slice(&(seen.port() ^ (MAGIC >> 16) as u16).to_be_bytes());
    let mut key = MAGIC.to_be_bytes().to_vec();
    key.extend_from_slice(&id);
    let ip = match seen.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    value.extend(ip.iter().zip(key.iter()).map(|(b, k)| b ^ k));
    let mut out = Vec::new();
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&id);
    out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(&value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_the_rfc_header() {
        let r = request([7; 12]);
        assert_eq!(&r[..8], &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]);
        assert_eq!(&r[8..], &[7; 12]);
    }

    #[test]
    fn xor_mapped_addresses_round_trip_for_both_families() {
        for seen in ["203.0.113.9:54321", "[2001:db8::7]:3478"] {
            let seen: SocketAddr = seen.parse().unwrap();
            let id = [3; 12];
            assert_eq!(mapped_address(&answer(id, seen), id), Some(Some(seen)));
        }
    }

    #[test]
    fn rfc_5769_sample_response_decodes() {
        // RFC 5769 §2.2 sample IPv4 response, XOR-MAPPED-ADDRESS 192.0.2.1:32853 (the
        // SOFTWARE attribute before it is skipped).
        let id = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let mut msg = vec![0x01, 0x01, 0x00, 0x1c, 0x21, 0x12, 0xa4, 0x42];
        msg.extend_from_slice(&id);
        msg.extend_from_slice(&[0x80, 0x22, 0x00, 0x0b]);
        msg.extend_from_slice(b"test vector\x20");
        msg.extend_from_slice(&[
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
        ]);
        let got = mapped_address(&msg, id).unwrap().unwrap();
        assert_eq!(got, "192.0.2.1:32853".parse().unwrap());
    }

    #[test]
    fn other_transactions_errors_and_garbage_are_not_answers() {
        let seen: SocketAddr = "1.2.3.4:5".parse().unwrap();
        let good = answer([1; 12], seen);
        assert_eq!(mapped_address(&good, [2; 12]), None);
        let mut error = good.clone();
        error[0..2].copy_from_slice(&0x0111u16.to_be_bytes());
        assert_eq!(mapped_address(&error, [1; 12]), None);
        assert_eq!(mapped_address(&good[..10], [1; 12]), None);
        let mut short = good.clone();
        short.truncate(26);
        assert_eq!(mapped_address(&short, [1; 12]), None);
    }
}
