//! Who is calling, when reverse proxies stand between the client and inkcart.
//!
//! A proxy appends the address it was called from to `X-Forwarded-For`; whatever the client
//! sent is kept in front of it. Only the hops appended by proxies we trust can be believed, so
//! the client is the right-most hop that is not one of them.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

static X_FORWARDED_FOR: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-forwarded-proto");

/// The proxies whose `X-Forwarded-*` headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Off: the socket peer is the client, whatever the headers say.
    enabled: bool,
    /// Empty: the socket peer only (one proxy in front).
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// `trust_proxy` and the configured list of proxy addresses (empty: the peer only).
    pub fn new(enabled: bool, nets: Vec<IpNet>) -> Self {
        Self { enabled, nets }
    }

    /// Whether the forwarding headers of a request from `peer` are believed. Without a known
    /// peer (in-process calls, as in tests) the request is taken as coming from a proxy.
    pub fn trusts_peer(&self, peer: Option<IpAddr>) -> bool {
        self.enabled
            && (self.nets.is_empty() || peer.is_none_or(|ip| self.is_proxy(ip.to_canonical())))
    }

    fn is_proxy(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer, or when the peer is trusted, the right-most
    /// `X-Forwarded-For` hop that is not a trusted proxy (the left-most hop when all are). A hop
    /// that is not an address stops the walk at the last address before it.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(|ip| ip.to_canonical());
        if !self.trusts_peer(peer) {
            return peer;
        }
        let mut client = peer;
        // Several header lines are one list, in order; walk it from the end.
        let lines: Vec<&[u8]> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(axum::http::HeaderValue::as_bytes)
            .collect();
        for hop in lines
            .iter()
            .rev()
            .flat_map(|line| line.rsplit(|b| *b == b','))
        {
            let Some(ip) = parse_hop(hop) else { break };
            client = Some(ip);
            if !self.is_proxy(ip) {
                break;
            }
        }
        client
    }

    /// The scheme the client used, as the nearest trusted proxy reports it in
    /// `X-Forwarded-Proto` (its right-most value), lower-cased.
    pub fn forwarded_proto(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<String> {
        if !self.trusts_peer(peer) {
            return None;
        }
        let line = headers.get_all(&X_FORWARDED_PROTO).iter().next_back()?;
        let value = line.to_str().ok()?.rsplit(',').next()?.trim();
        (!value.is_empty()).then(|| value.to_ascii_lowercase())
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`)
/// or in brackets (`[::1]`), as some proxies write them.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(&X_FORWARDED_FOR, line.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    const PEER: &str = "10.0.0.1";

    fn client(proxies: &TrustedProxies, lines: &[&str]) -> IpAddr {
        proxies.client_ip(Some(ip(PEER)), &headers(lines)).unwrap()
    }

    #[test]
    fn without_trust_the_peer_is_the_client_whatever_the_headers_say() {
        let off = TrustedProxies::new(false, Vec::new());
        assert_eq!(client(&off, &["1.1.1.1"]), ip(PEER));
        assert_eq!(off.client_ip(None, &headers(&["1.1.1.1"])), None);
    }

    #[test]
    fn behind_one_proxy_the_right_most_hop_is_the_client_and_a_forged_first_hop_is_ignored() {
        let peer_only = TrustedProxies::new(true, Vec::new());
        assert_eq!(client(&peer_only, &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            client(&peer_only, &["6.6.6.6, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(&peer_only, &["6.6.6.6", "7.7.7.7, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // No header: the proxy itself.
        assert_eq!(client(&peer_only, &[]), ip(PEER));
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let chain = TrustedProxies::new(true, nets(&["10.0.0.0/8", "192.0.2.10/32"]));
        assert_eq!(
            client(&chain, &["6.6.6.6, 203.0.113.7, 192.0.2.10, 10.1.2.3"]),
            ip("203.0.113.7")
        );
        // Every hop a proxy: the left-most one.
        assert_eq!(client(&chain, &["10.9.9.9, 10.1.2.3"]), ip("10.9.9.9"));
    }

    #[test]
    fn a_peer_outside_the_list_is_the_client() {
        let chain = TrustedProxies::new(true, nets(&["192.0.2.0/24"]));
        assert_eq!(client(&chain, &["203.0.113.7"]), ip(PEER));
        assert_eq!(
            chain.client_ip(Some(ip("192.0.2.5")), &headers(&["203.0.113.7"])),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn hops_with_ports_brackets_and_mapped_addresses_are_read() {
        let peer_only = TrustedProxies::new(true, Vec::new());
        assert_eq!(client(&peer_only, &["203.0.113.7:5555"]), ip("203.0.113.7"));
        assert_eq!(
            client(&peer_only, &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(client(&peer_only, &[" [2001:db8::2] "]), ip("2001:db8::2"));
        assert_eq!(
            client(&peer_only, &["::ffff:203.0.113.9"]),
            ip("203.0.113.9")
        );
        let chain = TrustedProxies::new(true, nets(&["10.0.0.0/8"]));
        assert_eq!(
            chain.client_ip(Some(ip("::ffff:10.0.0.1")), &headers(&["203.0.113.7"])),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn a_hop_that_is_not_an_address_stops_the_walk() {
        let chain = TrustedProxies::new(true, nets(&["10.0.0.0/8"]));
        assert_eq!(
            client(&chain, &["203.0.113.7, unknown, 10.1.2.3"]),
            ip("10.1.2.3")
        );
        let peer_only = TrustedProxies::new(true, Vec::new());
        assert_eq!(client(&peer_only, &["203.0.113.7, not-an-ip"]), ip(PEER));
    }

    #[test]
    fn the_forwarded_scheme_is_believed_from_trusted_peers_only() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_PROTO, "https, HTTP".parse().unwrap());
        let peer_only = TrustedProxies::new(true, Vec::new());
        assert_eq!(
            peer_only.forwarded_proto(Some(ip(PEER)), &h).as_deref(),
            Some("http")
        );
        let off = TrustedProxies::new(false, Vec::new());
        assert_eq!(off.forwarded_proto(Some(ip(PEER)), &h), None);
        let chain = TrustedProxies::new(true, nets(&["192.0.2.0/24"]));
        assert_eq!(chain.forwarded_proto(Some(ip(PEER)), &h), None);
    }
}
