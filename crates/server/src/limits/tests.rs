//! The limits' unit tests.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::{refusal::LOGGED_CAPACITY, *};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", v.parse().unwrap());
    }
    h
}

fn proxies(list: &[&str]) -> Vec<Proxy> {
    list.iter().map(|p| p.parse().unwrap()).collect()
}

#[test]
fn forwarded_for_is_read_only_through_a_trusted_peer() {
    let trusted = proxies(&["10.0.0.1", "192.168.0.0/16"]);
    let h = xff(&["198.51.100.7, 203.0.113.9"]);
    // Not through a trusted proxy: the header changes nothing.
    assert_eq!(
        client_ip(ip("203.0.113.1"), &h, &trusted),
        ip("203.0.113.1")
    );
    assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("10.0.0.2"));
    // Through one: the right-most entry that is not trusted, never the client's own
    // left-most claims.
    assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
    let chain = xff(&["1.1.1.1", "203.0.113.9, 192.168.4.4"]);
    assert_eq!(
        client_ip(ip("10.0.0.1"), &chain, &trusted),
        ip("203.0.113.9")
    );
    // Ports, IPv6, mapped IPv4.
    let ported = xff(&["[2001:db8::5]:443"]);
    assert_eq!(
        client_ip(ip("10.0.0.1"), &ported, &trusted),
        ip("2001:db8::5")
    );
    assert_eq!(
        client_ip(ip("::ffff:10.0.0.1"), &xff(&["203.0.113.2:9"]), &trusted),
        ip("203.0.113.2")
    );
    // No header, garbage, all trusted.
    assert_eq!(
        client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
        ip("10.0.0.1")
    );
    assert_eq!(
        client_ip(ip("10.0.0.1"), &xff(&["203.0.113.9, nonsense"]), &trusted),
        ip("10.0.0.1")
    );
    assert_eq!(
        client_ip(ip("10.0.0.1"), &xff(&["192.168.1.1, 10.0.0.1"]), &trusted),
        ip("192.168.1.1")
    );
}

#[test]
fn proxies_parse_as_addresses_or_blocks() {
    assert!(proxies(&["10.0.0.0/8"])[0].contains(ip("10.200.3.4")));
    assert!(!proxies(&["10.0.0.0/8"])[0].contains(ip("11.0.0.1")));
    assert!(proxies(&["::1"])[0].contains(ip("::1")));
    assert!(proxies(&["0.0.0.0/0"])[0].contains(ip("8.8.8.8")));
    assert!(proxies(&["fd00::/8"])[0].contains(ip("fd12::1")));
    assert!(!proxies(&["fd00::/8"])[0].contains(ip("10.0.0.1")));
    for bad in ["", "10.0.0.1/33", "::/129", "host.example", "10.0.0.0/x"] {
        assert!(bad.parse::<Proxy>().is_err(), "{bad}");
    }
}

#[test]
fn ipv6_clients_count_by_their_64() {
    assert_eq!(
        Source::of(ip("2001:db8:1:2::1")),
        Source::of(ip("2001:db8:1:2:ffff::9"))
    );
    assert_ne!(
        Source::of(ip("2001:db8:1:2::1")),
        Source::of(ip("2001:db8:1:3::1"))
    );
    assert_eq!(Source::of(ip("::ffff:1.2.3.4")), Source::of(ip("1.2.3.4")));
    assert_eq!(
        Source::of(ip("2001:db8:1:2::1")).to_string(),
        "2001:db8:1:2::/64"
    );
}

fn limits(args: LimitArgs) -> Arc<Limits> {
    Arc::new(Limits::new(
        args,
        Duration::from_hours(24),
        Arc::new(Metrics::new()),
    ))
}

#[test]
fn connections_are_limited_in_total_and_per_source_and_freed_on_drop() {
    let l = limits(LimitArgs {
        max_connections: 3,
        max_connections_per_ip: 2,
        ..LimitArgs::default()
    });
    let now = Instant::now();
    let a1 = l.admit(ip("192.0.2.1"), &HeaderMap::new(), now).unwrap();
    let a2 = l.admit(ip("192.0.2.1"), &HeaderMap::new(), now).unwrap();
    assert_eq!(
        l.admit(ip("192.0.2.1"), &HeaderMap::new(), now)
            .unwrap_err(),
        Refusal::ConnectionsPerIp
    );
    let b1 = l.admit(ip("192.0.2.2"), &HeaderMap::new(), now).unwrap();
    assert_eq!(
        l.admit(ip("192.0.2.3"), &HeaderMap::new(), now)
            .unwrap_err(),
        Refusal::Connections
    );
    drop(a1);
    let a3 = l.admit(ip("192.0.2.1"), &HeaderMap::new(), now).unwrap();
    drop((a2, a3, b1));
    assert_eq!(l.sources(), 0, "nothing open, buckets full: forgotten");
}

#[test]
fn joins_refill_at_the_rate_per_minute_and_survive_reconnects() {
    let l = limits(LimitArgs {
        max_joins_per_minute_per_ip: 2,
        ..LimitArgs::default()
    });
    let t0 = Instant::now();
    let a = l.admit(ip("192.0.2.1"), &HeaderMap::new(), t0).unwrap();
    assert!(a.try_join(t0) && a.try_join(t0));
    assert!(!a.try_join(t0));
    // A new connection from the same address does not bring a fresh bucket.
    drop(a);
    let a = l.admit(ip("192.0.2.1"), &HeaderMap::new(), t0).unwrap();
    assert!(!a.try_join(t0 + Duration::from_secs(10)));
    assert!(a.try_join(t0 + Duration::from_secs(31)));
    assert!(!a.try_join(t0 + Duration::from_secs(31)));
    // Another address has its own.
    let b = l.admit(ip("192.0.2.2"), &HeaderMap::new(), t0).unwrap();
    assert!(b.try_join(t0));
}

#[test]
fn each_source_is_logged_once_a_minute() {
    let l = limits(LimitArgs::default());
    let t0 = l.start;
    let s = Source::of(ip("192.0.2.1"));
    assert!(l.first_this_minute(Limit::JoinsPerIp, s, t0));
    assert!(!l.first_this_minute(Limit::JoinsPerIp, s, t0 + Duration::from_secs(59)));
    assert!(l.first_this_minute(Limit::ConnectionsPerIp, s, t0));
    assert!(l.first_this_minute(Limit::JoinsPerIp, s, t0 + Duration::from_mins(1)));
    // Bounded: past the capacity, old minutes are forgotten; a full current minute
    // stops logging new sources rather than growing.
    for n in 0..u32::try_from(LOGGED_CAPACITY).unwrap() {
        let s = Source::of(IpAddr::V4(n.into()));
        l.first_this_minute(Limit::Connections, s, t0 + Duration::from_mins(2));
    }
    assert!(l.logged.lock().unwrap().len() <= LOGGED_CAPACITY);
    let late = Source::of(ip("203.0.113.1"));
    assert!(!l.first_this_minute(Limit::Connections, late, t0 + Duration::from_mins(2)));
    assert!(l.first_this_minute(Limit::Connections, late, t0 + Duration::from_mins(3)));
    assert!(l.logged.lock().unwrap().len() <= LOGGED_CAPACITY);
}

#[test]
fn the_default_is_what_no_flags_give() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
    }
    let parsed = <Cli as clap::Parser>::try_parse_from(["meshcall"]).unwrap();
    assert_eq!(parsed.limits, LimitArgs::default());
    let flags =
        <Cli as clap::Parser>::try_parse_from(["meshcall", "--trust-proxy", "10.0.0.1,fd00::/8"])
            .unwrap();
    assert_eq!(flags.limits.trust_proxy.len(), 2);
    assert!(<Cli as clap::Parser>::try_parse_from(["meshcall", "--trust-proxy", "proxy"]).is_err());
}
