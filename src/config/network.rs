//! `network`: the SSRF guard's policy (private ranges, allow and deny lists, HTTPS only).

use super::schema::RawNetwork;
use crate::error::{Error, Result};
use crate::network::NetworkPolicy;

impl RawNetwork {
    pub(super) fn build(self) -> Result<NetworkPolicy> {
        let cidrs = |name: &str, list: Vec<String>| {
            list.iter()
                .enumerate()
                .map(|(i, text)| {
                    cidr(text).ok_or_else(|| {
                        Error::config(
                            format!("network.{name}[{i}]"),
                            "is not a CIDR (e.g. 10.0.0.0/8, 127.0.0.1/32, fc00::/7)",
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        Ok(NetworkPolicy {
            deny_private: self.deny_private,
            allow: cidrs("allow", self.allow)?,
            deny: cidrs("deny", self.deny)?,
            require_https: self.require_https,
        })
    }
}

/// A CIDR, or a single address (as /32 or /128).
pub(super) fn cidr(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}
