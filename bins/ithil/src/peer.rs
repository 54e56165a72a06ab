//! Who is on the other end of the socket.
//!
//! Development shortcuts answer only to a loopback peer, decided from the address that
//! `accept()` returned: headers such as `X-Forwarded-For` or `Host` are written by the client and
//! prove nothing.

use std::net::IpAddr;

/// Tells whether a peer address is a loopback address: IPv4 `127.0.0.0/8`, IPv6 `::1`, or an
/// IPv4-mapped IPv6 address of `127.0.0.0/8` (`::ffff:127.0.0.1`, which a dual-stack listener
/// reports for IPv4 clients).
pub fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_loopback_range_is_loopback() {
        assert!(is_loopback(ip("127.0.0.1")));
        assert!(is_loopback(ip("127.1.2.3")));
        assert!(is_loopback(ip("127.255.255.254")));
    }

    #[test]
    fn ipv6_loopback_is_loopback() {
        assert!(is_loopback(ip("::1")));
    }

    #[test]
    fn ipv4_mapped_loopback_is_loopback() {
        assert!(is_loopback(ip("::ffff:127.0.0.1")));
        assert!(is_loopback(ip("::ffff:127.9.9.9")));
    }

    #[test]
    fn other_addresses_are_not_loopback() {
        for text in [
            "0.0.0.0",
            "10.0.0.1",
            "128.0.0.1",
            "126.255.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "::",
            "::2",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:192.168.0.1",
            // The deprecated IPv4-compatible form is not a mapped address.
            "::127.0.0.1",
            "2001:db8::1",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_loopback(ip(text)), "{text}");
        }
    }
}
