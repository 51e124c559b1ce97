//! The outgoing address policy: may we open a connection to this IP address?
//!
//! Input: an `IpAddr` that is about to be dialled (after DNS, for every redirect hop) and
//! the operator's `allowed_private_networks`. Output: allow or refuse. Uses only std and
//! `ipnet`.
//!
//! Only global unicast is allowed by default. The special-purpose ranges come from the IANA
//! IPv4 and IPv6 special-purpose address registries (RFC 6890 and its updates). IPv4
//! hidden in IPv6 (mapped, compatible, NAT64, 6to4, Teredo) is unwrapped and judged as
//! IPv4, so `[::ffff:127.0.0.1]` or `[64:ff9b::7f00:1]` cannot reach loopback. `std`'s
//! `is_global` is still unstable, so the tables are written out here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The decision procedure, built once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct IpPolicy {
    allowed: Vec<IpNet>,
}

impl IpPolicy {
    pub fn new(allowed_private_networks: Vec<IpNet>) -> Self {
        IpPolicy {
            allowed: allowed_private_networks,
        }
    }

    /// True when a connection to `ip` may be opened.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let unwrapped = unwrap_embedded(ip);
        let listed = |addr: IpAddr| self.allowed.iter().any(|net| net.contains(&addr));
        if listed(ip) || unwrapped.map(IpAddr::V4).is_some_and(listed) {
            return true;
        }
        is_global(ip)
    }
}

/// Is `ip` a global unicast address (reachable on the public internet)?
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

/// IPv4 ranges that are not global unicast.
const V4_BLOCKED: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, incl. cloud metadata 169.254.169.254
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 31, 196, 0], 24), // AS112
    ([192, 52, 193, 0], 24), // AMT
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([192, 175, 48, 0], 24), // direct delegation AS112
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, incl. broadcast 255.255.255.255
];

fn is_global_v4(ip: Ipv4Addr) -> bool {
    !V4_BLOCKED
        .iter()
        .any(|&(net, prefix)| in_v4(ip, net, prefix))
}

/// IPv6 ranges inside 2000::/3 (the only global unicast block) that are still not global.
const V6_BLOCKED_IN_GLOBAL: &[([u16; 8], u8)] = &[
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments (Teredo handled apart)
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation (RFC 9637)
];

fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = unwrap_embedded_v6(ip) {
        return is_global_v4(v4) && teredo_server(ip).is_none_or(is_global_v4);
    }
    // 64:ff9b:1::/48 (local-use NAT64) and everything else outside 2000::/3 — ::, ::1,
    // fc00::/7, fe80::/10, fec0::/10, ff00::/8, 100::/64 — is not global.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return false;
    }
    !V6_BLOCKED_IN_GLOBAL
        .iter()
        .any(|&(net, prefix)| in_v6(ip, net, prefix))
}

/// The IPv4 address an IPv6 address stands for, if it is one of the embedding forms.
pub fn unwrap_embedded(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => unwrap_embedded_v6(v6),
    }
}

fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    // The low 32 bits, by definition of u128 → u32 truncation.
    Ipv4Addr::from((u128::from(ip) & 0xFFFF_FFFF) as u32)
}

fn unwrap_embedded_v6(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let bits = u128::from(ip);
    // ::ffff:a.b.c.d (mapped)
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // ::a.b.c.d (compatible, deprecated); :: and ::1 stay IPv6 (and are not global).
    if bits >> 32 == 0 && bits > 1 {
        return Some(low_v4(ip));
    }
    // 64:ff9b::/96 (well-known NAT64 prefix)
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return Some(low_v4(ip));
    }
    // 2002:AABB:CCDD::/48 (6to4)
    if s[0] == 0x2002 {
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    // 2001:0000::/32 (Teredo): the client address is the last 32 bits, inverted.
    if teredo_server(ip).is_some() {
        return Some(Ipv4Addr::from(!(bits as u32)));
    }
    None
}

/// For a Teredo address, the Teredo server's IPv4 address (bits 32–63).
fn teredo_server(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    (s[0] == 0x2001 && s[1] == 0).then(|| {
        let [a, b] = s[2].to_be_bytes();
        let [c, d] = s[3].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address parses")
    }

    #[test]
    fn default_policy_blocks_everything_not_global() {
        let policy = IpPolicy::default();
        let blocked = [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "2001:db8::1",
            "3fff::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            // Teredo with client 127.0.0.1 (inverted: 80ff:fffe) and a public server.
            "2001:0:0808:0808::80ff:fffe",
            // Teredo with a public client but a private server.
            "2001:0:0a00:0001::f7f7:f7f7",
        ];
        for s in blocked {
            assert!(!policy.permits(ip(s)), "{s} must be blocked");
        }
    }

    #[test]
    fn default_policy_allows_global_unicast() {
        let policy = IpPolicy::default();
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            // Teredo with public server 8.8.8.8 and public client 8.8.4.4 (inverted).
            "2001:0:808:808::f7f7:fbfb",
        ];
        for s in allowed {
            assert!(policy.permits(ip(s)), "{s} must be allowed");
        }
    }

    #[test]
    fn allowed_networks_open_exact_ranges_in_both_families() {
        let policy = IpPolicy::new(vec![
            "127.0.0.2/32".parse().expect("cidr"),
            "fd00:1::/64".parse().expect("cidr"),
        ]);
        assert!(policy.permits(ip("127.0.0.2")));
        assert!(
            policy.permits(ip("::ffff:127.0.0.2")),
            "mapped form of an allowed v4"
        );
        assert!(!policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("fd00:1::5")));
        assert!(!policy.permits(ip("fd00:2::5")));
    }

    #[test]
    fn embedded_forms_unwrap_to_the_right_ipv4() {
        let cases = [
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("::1.2.3.4", "1.2.3.4"),
            ("64:ff9b::102:304", "1.2.3.4"),
            ("2002:102:304::", "1.2.3.4"),
            ("2001:0:4136:e378:8000:63bf:fefd:fcfb", "1.2.3.4"),
        ];
        for (v6, v4) in cases {
            assert_eq!(
                unwrap_embedded(ip(v6)),
                Some(v4.parse().expect("v4")),
                "{v6} embeds {v4}"
            );
        }
        assert_eq!(unwrap_embedded(ip("::1")), None);
        assert_eq!(unwrap_embedded(ip("2606:4700::1111")), None);
    }
}
