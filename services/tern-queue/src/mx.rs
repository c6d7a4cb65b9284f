//! MX resolution: where the queue sends a remote domain's mail (RFC 5321 §5.1, RFC 7505).
//!
//! [`MxResolver::destinations`] turns a recipient domain into the hosts to try, in order,
//! each with its addresses, or into a verdict the queue can act on without interpreting DNS:
//! [`MxError::Permanent`] bounces (the domain does not exist, or says it takes no mail, or
//! has nowhere to deliver), [`MxError::Temporary`] defers and retries later (the DNS is
//! broken or slow *now*).
//!
//! Decisions, and why:
//! - **hickory-resolver**, a stub resolver talking to the system's recursive resolvers
//!   (`/etc/resolv.conf`, i.e. the cluster DNS in Kubernetes) or to the servers given. Names
//!   are always queried fully qualified and `ndots` is 0, so `example.net` is never tried as
//!   `example.net.<namespace>.svc.cluster.local` first (Kubernetes' `ndots:5` would make
//!   every MX lookup cost several useless queries and could route mail to a local name).
//!   `/etc/hosts` is never consulted: MTAs route by DNS.
//! - **One time budget per call.** The `timeout` given to [`MxResolver::new`] bounds a whole
//!   [`MxResolver::destinations`] call (MX lookup plus the A/AAAA lookups of all hosts,
//!   which run concurrently), so a delivery worker's lease is never eaten by a lame DNS
//!   server. Each query attempt gets a third of it: one attempt and two retries fit.
//! - **NXDOMAIN vs. no records.** hickory 0.25 reports NXDOMAIN, NODATA *and* SERVFAIL /
//!   REFUSED as `ProtoErrorKind::NoRecordsFound`; only its `response_code` tells them apart.
//!   `NXDomain` is permanent, `NoError` (NODATA) means "no records of this type", anything
//!   else is temporary.
//! - **Partial failures.** An MX host whose addresses cannot be looked up right now is
//!   skipped when another host is usable (a backup MX exists for exactly that); when no host
//!   is usable, any temporary failure makes the verdict temporary, so a DNS hiccup never
//!   bounces mail.
//! - **Addresses** come A first, then AAAA: in container networks IPv6 egress is often
//!   missing, and the delivery worker tries them in order. The unspecified, multicast and
//!   broadcast addresses are dropped (connecting to `0.0.0.0` would reach the local host).
//! - **Cache:** small (256 records) with short TTL caps (60 s positive, 30 s negative), so a
//!   burst to one domain costs one lookup but an operator who fixes a zone is not kept
//!   waiting by a stale NXDOMAIN.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::future::join_all;
use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use rand::seq::SliceRandom;
use tokio::time::{timeout_at, Instant};

/// Retries after a failed attempt (hickory's `attempts`): three tries in all.
const ATTEMPTS: u32 = 2;
/// Records kept in the resolver's cache.
const CACHE_SIZE: usize = 256;
/// Cap on how long a positive answer is cached, whatever its TTL.
const POSITIVE_MAX_TTL: Duration = Duration::from_secs(60);
/// Cap on how long NXDOMAIN/NODATA is cached, whatever the SOA says.
const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(30);

/// Resolves recipient domains to delivery destinations; cheap to clone (one shared resolver
/// and cache), so every delivery task of a worker can hold one.
#[derive(Clone)]
pub struct MxResolver {
    resolver: TokioResolver,
    timeout: Duration,
}

impl fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut servers: Vec<SocketAddr> = Vec::new();
        for config in self.resolver.config().name_servers() {
            if !servers.contains(&config.socket_addr) {
                servers.push(config.socket_addr);
            }
        }
        f.debug_struct("MxResolver")
            .field("nameservers", &servers)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One host to deliver to: what the SMTP client connects to, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The MX host name (ASCII, lower case, no trailing dot), or the domain itself for an
    /// implicit MX, or the IP address for an address literal: what TLS verifies and logs show.
    pub host: String,
    /// The MX preference (0 for an implicit MX or an address literal); lower goes first.
    pub preference: u16,
    /// The host's addresses, A records first, then AAAA; never empty.
    pub addrs: Vec<IpAddr>,
}

/// Why a domain has no destination: decides between bouncing and retrying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MxError {
    /// Try again later: SERVFAIL, REFUSED, timeouts, unreachable DNS servers, or a
    /// configuration that could not be read.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
    /// Bounce: the domain does not exist, publishes a null MX, or has no usable host.
    #[error("{0}")]
    Permanent(String),
}

/// What a negative DNS answer means for a lookup.
enum Negative {
    /// The name does not exist.
    NxDomain,
    /// The name exists without records of the asked type.
    NoData,
}

/// `Some` for the authoritative negative answers, `None` for everything temporary
/// (SERVFAIL and REFUSED also arrive as `NoRecordsFound` in hickory 0.25).
fn negative(err: &ResolveError) -> Option<Negative> {
    match err.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
            ResponseCode::NXDomain => Some(Negative::NxDomain),
            ResponseCode::NoError => Some(Negative::NoData),
            _ => None,
        },
        _ => None,
    }
}

/// A temporary failure in words an operator can act on: hickory's own text for SERVFAIL is
/// "no records found for Query { .. }", which reads like NODATA.
fn describe(err: &ResolveError) -> String {
    match err.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => {
            let code = u16::from(*response_code);
            format!("the DNS server answered {response_code} (rcode {code})")
        }
        Some(ProtoErrorKind::Timeout) => "the DNS server did not answer in time".into(),
        _ => err.to_string(),
    }
}

/// The addresses of one host, and the temporary failure that may hide some of them.
struct HostAddrs {
    addrs: Vec<IpAddr>,
    temporary: Option<String>,
}

impl MxResolver {
    /// A resolver for the queue. `nameservers` empty = the system's (/etc/resolv.conf);
    /// otherwise only these (UDP, with TCP fallback on truncation and I/O errors), e.g. a
    /// test's server on `127.0.0.1:port`. `timeout` bounds a whole
    /// [`destinations`](Self::destinations) call. Fails (temporarily: the file may be fixed)
    /// only if the system configuration cannot be read.
    pub fn new(nameservers: &[SocketAddr], timeout: Duration) -> Result<Self, MxError> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| {
                MxError::Temporary(format!("cannot read the system DNS configuration: {e}"))
            })?
        } else {
            let mut group = NameServerConfigGroup::with_capacity(2 * nameservers.len());
            for addr in nameservers {
                for protocol in [Protocol::Udp, Protocol::Tcp] {
                    group.push(NameServerConfig::new(*addr, protocol));
                }
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                provider,
            )
        };
        let opts = builder.options_mut();
        opts.timeout = (timeout / (ATTEMPTS + 1)).max(Duration::from_millis(10));
        opts.attempts = ATTEMPTS as usize;
        opts.ndots = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.try_tcp_on_error = true;
        opts.cache_size = CACHE_SIZE;
        opts.positive_max_ttl = Some(POSITIVE_MAX_TTL);
        opts.negative_max_ttl = Some(NEGATIVE_MAX_TTL);
        Ok(Self {
            resolver: builder.build(),
            timeout,
        })
    }

    /// RFC 5321 §5.1: the domain's MX hosts in preference order (equal preferences shuffled,
    /// to spread load as the RFC asks), each with its addresses (A and AAAA); no MX records →
    /// the domain itself as implicit MX (preference 0) with its A/AAAA; a null MX (RFC 7505: a
    /// single MX with exchange ".") → Permanent; NXDOMAIN → Permanent; MX hosts without any
    /// address are skipped; if none has an address → Permanent ("no usable MX"), unless a
    /// lookup failed temporarily; SERVFAIL/timeouts/refused → Temporary. An address literal
    /// like `[192.0.2.1]` or `[IPv6:2001:db8::1]` resolves to that address without DNS.
    pub async fn destinations(&self, domain: &str) -> Result<Vec<Destination>, MxError> {
        let domain = domain.trim();
        if domain.starts_with('[') {
            return address_literal(domain);
        }
        let name = parse_domain(domain)?;
        let deadline = Instant::now() + self.timeout;
        let shown = show(&name);
        let records = match timeout_at(deadline, self.resolver.mx_lookup(name.clone())).await {
            Err(_) => {
                return Err(MxError::Temporary(format!(
                    "MX lookup of {shown} timed out after {:?}",
                    self.timeout
                )))
            }
            Ok(Ok(lookup)) => lookup
                .iter()
                .map(|mx| (mx.preference(), mx.exchange().clone()))
                .collect(),
            Ok(Err(e)) => match negative(&e) {
                Some(Negative::NxDomain) => {
                    return Err(MxError::Permanent(format!(
                        "domain {shown} does not exist (NXDOMAIN)"
                    )))
                }
                Some(Negative::NoData) => Vec::new(),
                None => {
                    return Err(MxError::Temporary(format!(
                        "MX lookup of {shown} failed: {}",
                        describe(&e)
                    )))
                }
            },
        };

        if records.is_empty() {
            // RFC 5321 §5.1: no MX → the domain is its own (implicit) MX.
            let found = self.addresses(&name, deadline).await;
            if !found.addrs.is_empty() {
                tracing::debug!(domain = %shown, "no MX records; using the implicit MX");
                return Ok(vec![Destination {
                    host: shown,
                    preference: 0,
                    addrs: found.addrs,
                }]);
            }
            return Err(match found.temporary {
                Some(why) => MxError::Temporary(why),
                None => {
                    MxError::Permanent(format!("{shown} has no MX records and no A/AAAA records"))
                }
            });
        }
        if let [(_, exchange)] = records.as_slice() {
            if exchange.is_root() {
                return Err(MxError::Permanent(format!(
                    "{shown} accepts no mail (null MX, RFC 7505)"
                )));
            }
        }

        let hosts = order(records);
        let lookups = join_all(hosts.iter().map(|(_, host)| self.addresses(host, deadline))).await;
        let mut destinations = Vec::new();
        let mut temporary = Vec::new();
        for ((preference, host), found) in hosts.into_iter().zip(lookups) {
            if let Some(why) = found.temporary {
                temporary.push(why);
            }
            if found.addrs.is_empty() {
                tracing::debug!(domain = %shown, host = %show(&host), "MX host has no address; skipped");
                continue;
            }
            destinations.push(Destination {
                host: show(&host),
                preference,
                addrs: found.addrs,
            });
        }
        if destinations.is_empty() {
            return Err(match temporary.into_iter().next() {
                Some(why) => MxError::Temporary(why),
                None => MxError::Permanent(format!(
                    "no usable MX for {shown}: no MX host has an address"
                )),
            });
        }
        if !temporary.is_empty() {
            tracing::warn!(
                domain = %shown,
                failures = ?temporary,
                "some MX hosts could not be resolved now; using the others"
            );
        }
        Ok(destinations)
    }

    /// A and AAAA of `host`, looked up concurrently, both bounded by `deadline`.
    async fn addresses(&self, host: &Name, deadline: Instant) -> HostAddrs {
        let shown = show(host);
        let (v4, v6) = futures::join!(
            timeout_at(deadline, self.resolver.ipv4_lookup(host.clone())),
            timeout_at(deadline, self.resolver.ipv6_lookup(host.clone())),
        );
        let mut found = HostAddrs {
            addrs: Vec::new(),
            temporary: None,
        };
        let mut note = |kind: &str, failure: String| {
            found
                .temporary
                .get_or_insert_with(|| format!("{kind} lookup of {shown} failed: {failure}"));
        };
        let mut addrs = Vec::new();
        match v4 {
            Ok(Ok(lookup)) => addrs.extend(lookup.iter().map(|a| IpAddr::V4(a.0))),
            Ok(Err(e)) if negative(&e).is_some() => {}
            Ok(Err(e)) => note("A", describe(&e)),
            Err(_) => note("A", "timed out".into()),
        }
        match v6 {
            Ok(Ok(lookup)) => addrs.extend(lookup.iter().map(|a| IpAddr::V6(a.0))),
            Ok(Err(e)) if negative(&e).is_some() => {}
            Ok(Err(e)) => note("AAAA", describe(&e)),
            Err(_) => note("AAAA", "timed out".into()),
        }
        let mut seen = HashSet::new();
        found.addrs = addrs
            .into_iter()
            .filter(|ip| usable(*ip) && seen.insert(*ip))
            .collect();
        found
    }
}

/// MX records → hosts in delivery order: the null-MX root exchange dropped (it can only
/// appear next to other MX records, a misconfiguration), a host listed twice kept at its
/// best preference, equal preferences in random order.
fn order(records: Vec<(u16, Name)>) -> Vec<(u16, Name)> {
    let mut hosts: Vec<(u16, Name)> = Vec::with_capacity(records.len());
    for (preference, exchange) in records {
        if exchange.is_root() {
            continue;
        }
        let mut exchange = exchange.to_lowercase();
        exchange.set_fqdn(true);
        match hosts.iter_mut().find(|(_, h)| *h == exchange) {
            Some(known) => known.0 = known.0.min(preference),
            None => hosts.push((preference, exchange)),
        }
    }
    hosts.shuffle(&mut rand::thread_rng());
    // Stable: the shuffle survives among equal preferences.
    hosts.sort_by_key(|(preference, _)| *preference);
    hosts
}

/// Addresses mail may be sent to: not the unspecified address (it means "this host" to
/// `connect`), not multicast or broadcast.
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3) → one destination, no DNS.
fn address_literal(domain: &str) -> Result<Vec<Destination>, MxError> {
    let invalid = || MxError::Permanent(format!("invalid address literal {domain:?}"));
    let inner = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .ok_or_else(invalid)?;
    let ip = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..]
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| invalid())?,
        _ => inner
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| invalid())?,
    };
    if !usable(ip) {
        return Err(MxError::Permanent(format!(
            "address literal {domain} is not a deliverable address"
        )));
    }
    Ok(vec![Destination {
        host: ip.to_string(),
        preference: 0,
        addrs: vec![ip],
    }])
}

/// A recipient domain → a fully qualified, lower-case DNS name (IDNs to punycode).
fn parse_domain(domain: &str) -> Result<Name, MxError> {
    let bare = domain.strip_suffix('.').unwrap_or(domain);
    if bare.is_empty() {
        return Err(MxError::Permanent("empty domain".into()));
    }
    let name = Name::from_str_relaxed(bare)
        .map_err(|e| MxError::Permanent(format!("invalid domain {domain:?}: {e}")))?;
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

/// A name as hosts and messages show it: ASCII, no trailing dot.
fn show(name: &Name) -> String {
    let text = name.to_ascii();
    match text.strip_suffix('.') {
        Some(bare) if !bare.is_empty() => bare.to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use tern_testkit::dns::{DnsServer, Zone};

    const V4_1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const V4_2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const V6_1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

    async fn setup(zone: Zone, timeout: Duration) -> (DnsServer, MxResolver) {
        let server = DnsServer::start(zone).await.unwrap();
        let resolver = MxResolver::new(&[server.addr], timeout).unwrap();
        (server, resolver)
    }

    fn hosts(dests: &[Destination]) -> Vec<(&str, u16)> {
        dests
            .iter()
            .map(|d| (d.host.as_str(), d.preference))
            .collect()
    }

    #[tokio::test]
    async fn mx_hosts_come_in_preference_order_with_their_addresses() {
        let zone = Zone::new()
            .mx("example.net", 20, "mx2.example.net")
            .mx("example.net", 10, "mx1.example.net")
            .a("mx1.example.net", V4_1)
            .aaaa("mx1.example.net", V6_1)
            .a("mx2.example.net", V4_2);
        let (_server, mx) = setup(zone, Duration::from_secs(2)).await;
        let dests = mx.destinations("Example.NET.").await.unwrap();
        assert_eq!(
            dests,
            vec![
                Destination {
                    host: "mx1.example.net".into(),
                    preference: 10,
                    addrs: vec![V4_1.into(), V6_1.into()],
                },
                Destination {
                    host: "mx2.example.net".into(),
                    preference: 20,
                    addrs: vec![V4_2.into()],
                },
            ]
        );
    }

    #[tokio::test]
    async fn equal_preferences_are_all_present_and_shuffled() {
        let mut zone = Zone::new()
            .mx("example.net", 5, "first.example.net")
            .a("first.example.net", Ipv4Addr::new(192, 0, 2, 100));
        for i in 1..=3u8 {
            let host = format!("mx{i}.example.net");
            zone = zone
                .mx("example.net", 10, &host)
                .a(&host, Ipv4Addr::new(192, 0, 2, i));
        }
        let (_server, mx) = setup(zone, Duration::from_secs(2)).await;
        let mut orders = BTreeSet::new();
        for _ in 0..40 {
            let dests = mx.destinations("example.net").await.unwrap();
            assert_eq!(hosts(&dests[..1]), vec![("first.example.net", 5)]);
            let rest: Vec<&str> = dests[1..].iter().map(|d| d.host.as_str()).collect();
            assert!(dests[1..].iter().all(|d| d.preference == 10));
            let set: BTreeSet<&str> = rest.iter().copied().collect();
            assert_eq!(
                set,
                BTreeSet::from(["mx1.example.net", "mx2.example.net", "mx3.example.net"])
            );
            orders.insert(rest.join(","));
        }
        assert!(orders.len() > 1, "equal preferences were never shuffled");
    }

    #[tokio::test]
    async fn no_mx_means_the_domain_is_its_own_mx() {
        let zone = Zone::new()
            .a("plain.example", V4_1)
            .aaaa("plain.example", V6_1);
        let (_server, mx) = setup(zone, Duration::from_secs(2)).await;
        assert_eq!(
            mx.destinations("plain.example").await.unwrap(),
            vec![Destination {
                host: "plain.example".into(),
                preference: 0,
                addrs: vec![V4_1.into(), V6_1.into()],
            }]
        );
    }

    #[tokio::test]
    async fn no_mx_and_no_address_is_permanent() {
        // The name exists (a host below it has records) but has neither MX nor A/AAAA.
        let zone = Zone::new().a("host.empty.example", V4_1);
        let (_server, mx) = setup(zone, Duration::from_secs(2)).await;
        let err = mx.destinations("empty.example").await.unwrap_err();
        assert!(matches!(err, MxError::Permanent(_)), "{err:?}");
    }

    #[tokio::test]
    async fn null_mx_is_permanent() {
        let (_server, mx) = setup(
            Zone::new().null_mx("nomail.example"),
            Duration::from_secs(2),
        )
        .await;
        let err = mx.destinations("nomail.example").await.unwrap_err();
        assert!(
            matches!(&err, MxError::Permanent(why) if why.contains("null MX")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn nxdomain_is_permanent() {
        let zone = Zone::new()
            .mx("example.net", 10, "mx1.example.net")
            .a("mx1.example.net", V4_1);
        let (_server, mx) = setup(zone, Duration::from_secs(2)).await;
        let err = mx.destinations("nosuch.example.net").await.unwrap_err();
        assert!(
            matches!(&err, MxError::Permanent(why) if why.contains("NXDOMAIN")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn servfail_is_temporary() {
        let (server, mx) = setup(
            Zone::new().servfail("broken.example"),
            Duration::from_secs(2),
        )
        .await;
        let err = mx.destinations("broken.example").await.unwrap_err();
        assert!(matches!(err, MxError::Temporary(_)), "{err:?}");
        assert!(server.queries() >= 1);
    }

    #[tokio::test]
    async fn refused_is_temporary() {
        // The server is not authoritative for elsewhere.org and says so.
        let (_server, mx) =
            setup(Zone::new().a("a.example.net", V4_1), Duration::from_secs(2)).await;
        let err = mx.destinations("elsewhere.org").await.unwrap_err();
        assert!(matches!(err, MxError::Temporary(_)), "{err:?}");
    }

    #[tokio::test]
    async fn unreachable_nameserver_is_temporary_within_the_timeout() {
        let closed = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        };
        let timeout = Duration::from_millis(600);
        let mx = MxResolver::new(&[closed], timeout).unwrap();
        let started = std::time::Instant::now();
        let err = mx.destinations("example.net").await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, MxError::Temporary(_)), "{err:?}");
        assert!(took < timeout + Duration::from_millis(400), "took {took:?}");
    }

    #[tokio::test]
    async fn silent_nameserver_is_temporary_within_the_timeout() {
        let timeout = Duration::from_millis(600);
        let (server, mx) = setup(Zone::new().unresponsive("silent.example"), timeout).await;
        let started = std::time::Instant::now();
        let err = mx.destinations("silent.example").await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, MxError::Temporary(_)), "{err:?}");
        assert!(took < timeout + Duration::from_millis(400), "took {took:?}");
        // One attempt and two retries (per-attempt timeout = a third of the budget).
        assert!(server.queries() >= 2, "{} queries", server.queries());
    }

    #[tokio::test]
    async fn address_literals_need_no_dns() {
        let (server, mx) = setup(Zone::new(), Duration::from_secs(2)).await;
        assert_eq!(
            mx.destinations("[192.0.2.1]").await.unwrap(),
            vec![Destination {
                host: "192.0.2.1".into(),
                preference: 0,
                addrs: vec![V4_1.into()],
            }]
        );
        assert_eq!(
            mx.destinations("[IPv6:2001:db8::1]").await.unwrap()[0].addrs,
            vec![IpAddr::from(V6_1)]
        );
        for bad in [
            "[300.1.1.1]",
            "[2001:db8::1]",
            "[192.0.2.1",
            "[0.0.0.0]",
            "[]",
        ] {
            let err = mx.destinations(bad).await.unwrap_err();
            assert!(matches!(err, MxError::Permanent(_)), "{bad}: {err:?}");
        }
        assert_eq!(server.queries(), 0);
    }

    #[tokio::test]
    async fn mx_hosts_without_addresses_are_skipped() {
        let zone = Zone::new()
            .mx("example.net", 10, "gone.example.net")
            .mx("example.net", 20, "mx2.example.net")
            .a("mx2.example.net", V4_2)
            .mx("dead.example", 10, "gone.dead.example")
            .mx("dead.example", 20, "nothing.example.net");
        let (_server, mx) = setup(zone, Duration::from_secs(2)).await;
        let dests = mx.destinations("example.net").await.unwrap();
        assert_eq!(hosts(&dests), vec![("mx2.example.net", 20)]);
        let err = mx.destinations("dead.example").await.unwrap_err();
        assert!(
            matches!(&err, MxError::Permanent(why) if why.contains("no usable MX")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_mx_host_failing_now_makes_an_otherwise_unusable_domain_temporary() {
        let zone = Zone::new()
            .mx("example.net", 10, "mx.broken.example")
            .mx("example.net", 20, "gone.example.net")
            .servfail("broken.example");
        let (_server, mx) = setup(zone, Duration::from_secs(2)).await;
        let err = mx.destinations("example.net").await.unwrap_err();
        assert!(matches!(err, MxError::Temporary(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_silent_mx_host_does_not_hide_the_others() {
        let timeout = Duration::from_millis(600);
        let zone = Zone::new()
            .mx("example.net", 10, "mx.silent.example")
            .mx("example.net", 20, "mx2.example.net")
            .a("mx2.example.net", V4_2)
            .unresponsive("silent.example");
        let (_server, mx) = setup(zone, timeout).await;
        let started = std::time::Instant::now();
        let dests = mx.destinations("example.net").await.unwrap();
        assert_eq!(hosts(&dests), vec![("mx2.example.net", 20)]);
        assert!(started.elapsed() < timeout + Duration::from_millis(400));
    }

    #[tokio::test]
    async fn large_mx_sets_fall_back_to_tcp() {
        let mut zone = Zone::new();
        for i in 0..40u8 {
            let host = format!("mx{i}.big.example");
            zone = zone
                .mx("big.example", u16::from(i), &host)
                .a(&host, Ipv4Addr::new(192, 0, 2, i));
        }
        let (_server, mx) = setup(zone, Duration::from_secs(3)).await;
        let dests = mx.destinations("big.example").await.unwrap();
        assert_eq!(dests.len(), 40);
        assert!(dests.windows(2).all(|w| w[0].preference < w[1].preference));
        assert_eq!(
            dests[7].addrs,
            vec![IpAddr::from(Ipv4Addr::new(192, 0, 2, 7))]
        );
    }

    #[tokio::test]
    async fn internationalized_domains_are_looked_up_as_punycode() {
        let zone = Zone::new()
            .mx("xn--bcher-kva.example", 10, "mx.xn--bcher-kva.example")
            .a("mx.xn--bcher-kva.example", V4_1);
        let (_server, mx) = setup(zone, Duration::from_secs(2)).await;
        let dests = mx.destinations("Bücher.example").await.unwrap();
        assert_eq!(hosts(&dests), vec![("mx.xn--bcher-kva.example", 10)]);
    }

    #[test]
    fn the_resolver_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        fn send<T: Send>(_: &T) {}
        shareable::<MxResolver>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let mx =
            MxResolver::new(&["127.0.0.1:9".parse().unwrap()], Duration::from_secs(1)).unwrap();
        send(&mx.destinations("example.net"));
    }

    #[tokio::test]
    async fn invalid_domains_are_permanent_without_dns() {
        let (server, mx) = setup(Zone::new(), Duration::from_secs(2)).await;
        for bad in ["", ".", "a..b", " "] {
            let err = mx.destinations(bad).await.unwrap_err();
            assert!(matches!(err, MxError::Permanent(_)), "{bad:?}: {err:?}");
        }
        assert_eq!(server.queries(), 0);
    }
}
