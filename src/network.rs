//! The SSRF guard: which addresses deliveries may connect to. Checked on every address a
//! name resolves to, at connect time (a resolver that filters, so DNS rebinding cannot slip
//! past a check made earlier), and on literal-IP URLs, which never reach a resolver. With a
//! proxy, the proxy's own address is what the resolver sees: allow it explicitly when
//! `deny_private` is on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What a denied destination fails with (no retry).
pub const DENIED: &str = "destination denied by network policy";

/// Always denied unless listed in `allow`: link-local (cloud metadata endpoints), "this
/// network", unspecified, broadcast and multicast.
const ALWAYS_DENIED: [&str; 7] = [
    "169.254.0.0/16",
    "fe80::/10",
    "0.0.0.0/8",
    "::/128",
    "255.255.255.255/32",
    "224.0.0.0/4",
    "ff00::/8",
];

/// Denied too with `deny_private: true`: loopback, private, shared (CGNAT) and unique-local.
const PRIVATE: [&str; 7] = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

/// The `network` section, ready to decide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub deny_private: bool,
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub require_https: bool,
}

fn within(list: &[&'static str], ip: &IpAddr) -> bool {
    list.iter()
        .any(|n| n.parse::<IpNet>().expect("a valid built-in CIDR").contains(ip))
}

impl NetworkPolicy {
    /// Whether a delivery may connect to `ip` (IPv4-mapped IPv6 addresses are judged as the
    /// IPv4 address they carry).
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        !(within(&ALWAYS_DENIED, &ip)
            || self.deny.iter().any(|n| n.contains(&ip))
            || (self.deny_private && within(&PRIVATE, &ip)))
    }
}

/// The marker error a denied resolution fails with; found again in the error chain so the
/// delivery fails at once instead of being retried.
#[derive(Debug)]
pub struct Denied;

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(DENIED)
    }
}

impl std::error::Error for Denied {}

/// Resolves with the system resolver and keeps only the addresses the policy permits.
pub struct GuardedResolver(pub Arc<NetworkPolicy>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.0);
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let permitted: Vec<SocketAddr> = found.filter(|a| policy.permits(a.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(Denied) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_and_mapped_forms_are_denied_private_only_on_request() {
        let open = NetworkPolicy::default();
        for denied in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "224.0.0.1",
            "::",
        ] {
            assert!(!open.permits(ip(denied)), "{denied}");
        }
        for allowed in ["127.0.0.1", "10.1.2.3", "93.184.216.34", "::1"] {
            assert!(open.permits(ip(allowed)), "{allowed}");
        }
        let private = NetworkPolicy {
            deny_private: true,
            ..Default::default()
        };
        for denied in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "10.0.0.1",
            "172.20.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
            "::1",
        ] {
            assert!(!private.permits(ip(denied)), "{denied}");
        }
        assert!(private.permits(ip("93.184.216.34")));
        let reopened = NetworkPolicy {
            deny_private: true,
            allow: vec![
                "127.0.0.1/32".parse().unwrap(),
                "169.254.169.254/32".parse().unwrap(),
            ],
            deny: vec!["93.184.216.0/24".parse().unwrap()],
            ..Default::default()
        };
        assert!(reopened.permits(ip("127.0.0.1")) && reopened.permits(ip("169.254.169.254")));
        assert!(!reopened.permits(ip("127.0.0.2")) && !reopened.permits(ip("93.184.216.34")));
    }
}
