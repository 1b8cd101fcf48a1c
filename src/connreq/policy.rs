//! Which addresses connection requests may go to.
//!
//! A CPE reports its own `ConnectionRequestURL` (and `UDPConnectionRequestAddress`), so
//! without a guard any device could make the ACS send requests to the ACS host itself, to
//! cloud metadata services or to anything else the ACS can reach (server-side request
//! forgery). Every address a target resolves to is checked before any connection is made:
//!
//! 1. An address of one of ferroacs's own listeners (its port on a loopback, unspecified
//!    or local address) is always refused.
//! 2. Otherwise the most specific matching network of the allow and deny lists decides;
//!    on equal prefix lengths the allow list wins, and an address on neither list is
//!    allowed. Private ranges are allowed by default: CPE address space is often private.
//!
//! IPv4-mapped (`::ffff:127.0.0.1`), NAT64 (`64:ff9b::7f00:1`), IPv4-compatible (`::7f00:1`) and
//! 6to4 (`2002:7f00:1::`) addresses are checked as
//! the IPv4 address they carry too. Host names in the loose forms `inet_aton` accepts
//! (`2130706433`, `0x7f.1`, `017700000001`) are read as the address they denote, never
//! handed to a resolver.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Networks refused by default: loopback, unspecified, link-local (cloud metadata
/// services live there), multicast, reserved and broadcast, and the metadata addresses
/// clouds put elsewhere (one large cloud's IPv6 one; Alibaba Cloud's in the shared
/// address space, 100.100.100.200, whose /10 carrier-grade NAT CPEs do live in).
pub const DEFAULT_DENY: &str = "0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 240.0.0.0/4, \
     100.100.100.200/32, ::/128, ::1/128, fe80::/10, ff00::/8, fd00:ec2::254/128";

/// One network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a list of networks separated by commas or spaces: `10.0.0.0/8, 192.0.2.7,
/// fe80::/10`. A bare address is a single-address network.
pub fn parse_networks(text: &str) -> Result<Vec<Net>, String> {
    let mut out = Vec::new();
    for item in text
        .split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (addr, prefix) = match item.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (item, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{item}` is not an IP address or network such as 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("`{item}`: the prefix length must be 0 to {max}")),
            },
        };
        out.push(Net { addr, prefix });
    }
    Ok(out)
}

/// Why a target was refused (for logs; operators see only `refused_by_policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// One of ferroacs's own listeners.
    OwnListener(SocketAddr),
    /// In a denied network.
    Denied(SocketAddr, Net),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::OwnListener(a) => write!(f, "{a} is a listener of this ACS"),
            Refusal::Denied(a, n) => write!(f, "{a} is in the denied network {n}"),
        }
    }
}

/// The allow/deny lists and this ACS's own listeners.
#[derive(Debug, Clone)]
pub struct TargetPolicy {
    allow: Vec<Net>,
    deny: Vec<Net>,
    own: Vec<SocketAddr>,
}

impl Default for TargetPolicy {
    /// The default deny list, nothing explicitly allowed, no own listeners known.
    fn default() -> Self {
        TargetPolicy {
            allow: Vec::new(),
            deny: parse_networks(DEFAULT_DENY).unwrap_or_default(),
            own: Vec::new(),
        }
    }
}

impl TargetPolicy {
    /// A policy from the configured lists.
    pub fn new(allow: &str, deny: &str) -> Result<TargetPolicy, String> {
        Ok(TargetPolicy {
            allow: parse_networks(allow)?,
            deny: parse_networks(deny)?,
            own: Vec::new(),
        })
    }

    /// Refuse these listener addresses too (the ACS's own CWMP and admin listeners).
    #[must_use]
    pub fn with_own_listeners(mut self, own: &[SocketAddr]) -> TargetPolicy {
        self.own.extend_from_slice(own);
        self
    }

    /// Checks one resolved address.
    pub fn check(&self, target: SocketAddr) -> Result<(), Refusal> {
        if self.is_own_listener(target) {
            return Err(Refusal::OwnListener(target));
        }
        let mut candidates = vec![target.ip()];
        if let Some(v4) = embedded_v4(target.ip()) {
            candidates.push(IpAddr::V4(v4));
        }
        for ip in candidates {
            let deny = self
                .deny
                .iter()
                .filter(|n| n.contains(ip))
                .max_by_key(|n| n.prefix);
            let Some(deny) = deny else { continue };
            let allowed = self
                .allow
                .iter()
                .any(|n| n.contains(ip) && n.prefix >= deny.prefix);
            if !allowed {
                return Err(Refusal::Denied(target, *deny));
            }
        }
        Ok(())
    }

    fn is_own_listener(&self, target: SocketAddr) -> bool {
        let ip = canonical(target.ip());
        self.own.iter().any(|own| {
            own.port() == target.port()
                && (canonical(own.ip()) == ip
                    || ip.is_unspecified()
                    || ip.is_loopback()
                    || (own.ip().is_unspecified() && is_local_address(ip)))
        })
    }
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (RFC
/// 6052 well-known prefix `64:ff9b::/96`), IPv4-compatible (`::a.b.c.d`, deprecated but
/// still routed by some stacks) and 6to4 (`2002:AABB:CCDD::/48`, RFC 3056).
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let o = v6.octets();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1)) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

fn canonical(ip: IpAddr) -> IpAddr {
    match embedded_v4(ip) {
        Some(v4) => IpAddr::V4(v4),
        None => ip,
    }
}

/// Whether `ip` belongs to this host: binding a socket to it succeeds only then.
fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Reads a host name in one of the forms `inet_aton` accepts as an IPv4 address: one to
/// four dot-separated numbers, each decimal, octal (leading `0`) or hex (`0x`), the last
/// one filling the remaining bytes (`2130706433`, `0x7f.1`, `127.1`, `017700000001`).
pub fn parse_ipv4_loose(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        let n = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    let mut value: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        if *n > 255 {
            return None;
        }
        value |= n << (24 - 8 * i);
    }
    let room = 32 - 8 * head.len() as u32;
    if *last >= 1u64 << room {
        return None;
    }
    value |= last;
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// Reads a literal address: a standard one, or a loose IPv4 form.
pub fn literal_address(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    parse_ipv4_loose(host).map(IpAddr::V4)
}

/// Resolves `host` (a literal in any form, or a name) and checks every address. `Err`
/// carries `Ok(refusal)` when the policy refused one of the addresses, `Err(text)` when
/// the name cannot be resolved.
pub async fn resolve_checked(
    policy: &TargetPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Result<Refusal, String>> {
    let addrs: Vec<SocketAddr> = match literal_address(host) {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Err(format!("cannot resolve the host name: {e}")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(Err("the host name has no address".into()));
    }
    for a in &addrs {
        policy.check(*a).map_err(Ok)?;
    }
    Ok(addrs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_refuse_local_and_metadata_but_allow_private() {
        let p = TargetPolicy::default();
        for bad in [
            "127.0.0.1:80",
            "127.8.9.10:7547",
            "0.0.0.0:7547",
            "[::1]:80",
            "[::]:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "[ff02::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::7f00:1]:80",
            "[fd00:ec2::254]:80",
            "100.100.100.200:80",
            "[::7f00:1]:80",
            "[::a9fe:a9fe]:80",
            "[2002:7f00:1::1]:80",
            "[2002:a9fe:a9fe::]:80",
        ] {
            assert!(p.check(sa(bad)).is_err(), "{bad} must be refused");
        }
        for good in [
            "10.1.2.3:7547",
            "192.168.1.1:7547",
            "172.16.0.9:30005",
            "100.64.0.1:7547",
            "198.51.100.7:7547",
            "[2001:db8::1]:7547",
            "[fd12:3456::1]:7547",
            "100.100.100.199:7547",
            "[::c633:6407]:7547",
            "[2002:c633:6407::1]:7547",
        ] {
            assert!(p.check(sa(good)).is_ok(), "{good} must be allowed");
        }
    }

    #[test]
    fn most_specific_network_wins_and_allow_wins_ties() {
        let p = TargetPolicy::new(
            "127.0.0.1, 10.0.0.0/8",
            &format!("{DEFAULT_DENY}, 10.9.0.0/16"),
        )
        .unwrap();
        assert!(p.check(sa("127.0.0.1:9")).is_ok());
        assert!(p.check(sa("127.0.0.2:9")).is_err());
        assert!(p.check(sa("10.1.0.1:9")).is_ok());
        assert!(p.check(sa("10.9.0.1:9")).is_err());
        // Deny everything but the CPE ranges.
        let p = TargetPolicy::new("10.0.0.0/8", "0.0.0.0/0, ::/0").unwrap();
        assert!(p.check(sa("10.2.3.4:1")).is_ok());
        assert!(p.check(sa("192.0.2.1:1")).is_err());
        assert!(p.check(sa("[2001:db8::1]:1")).is_err());
    }

    #[test]
    fn own_listeners_are_refused_even_when_allowed() {
        let p = TargetPolicy::new("127.0.0.0/8, 0.0.0.0/8", "")
            .unwrap()
            .with_own_listeners(&[sa("127.0.0.1:7557"), sa("0.0.0.0:7547")]);
        assert!(p.check(sa("127.0.0.1:7557")).is_err());
        assert!(p.check(sa("127.0.0.1:7547")).is_err());
        assert!(p.check(sa("0.0.0.0:7547")).is_err());
        assert!(p.check(sa("[::ffff:127.0.0.1]:7557")).is_err());
        assert!(p.check(sa("127.0.0.1:7548")).is_ok());
        // Port 7547 on a CPE elsewhere is ordinary.
        assert!(p.check(sa("198.51.100.7:7547")).is_ok());
    }

    #[test]
    fn loose_ipv4_forms() {
        let lo = Some(Ipv4Addr::new(127, 0, 0, 1));
        for form in [
            "2130706433",
            "0x7f.1",
            "017700000001",
            "127.1",
            "0x7f000001",
            "0177.0.0.1",
            "127.0.0.1",
        ] {
            assert_eq!(parse_ipv4_loose(form), lo, "{form}");
        }
        assert_eq!(parse_ipv4_loose("0"), Some(Ipv4Addr::UNSPECIFIED));
        for not in [
            "cpe.example",
            "1.2.3.4.5",
            "256.1.1.1",
            "4294967296",
            "08",
            "",
            "1..2",
        ] {
            assert_eq!(parse_ipv4_loose(not), None, "{not}");
        }
    }

    #[tokio::test]
    async fn every_resolved_address_is_checked() {
        let p = TargetPolicy::default();
        assert!(matches!(
            resolve_checked(&p, "2130706433", 80).await,
            Err(Ok(Refusal::Denied(..)))
        ));
        assert!(matches!(
            resolve_checked(&p, "localhost", 80).await,
            Err(Ok(Refusal::Denied(..)))
        ));
        assert_eq!(
            resolve_checked(&p, "192.0.2.1", 80).await.unwrap(),
            vec![sa("192.0.2.1:80")]
        );
    }

    #[test]
    fn bad_lists_are_explained() {
        assert!(parse_networks("10.0.0.0/33")
            .unwrap_err()
            .contains("prefix"));
        assert!(parse_networks("nonsense").unwrap_err().contains("nonsense"));
        assert_eq!(parse_networks("").unwrap(), vec![]);
    }
}
