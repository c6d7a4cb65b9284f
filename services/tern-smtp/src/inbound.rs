//! The sender-authentication checks of the MX listener. Built so far: SPF (RFC 7208) at
//! MAIL FROM, through Stalwart's `mail-auth`. Its result goes into an
//! `Authentication-Results:` field (RFC 8601) naming this host, at the top of the message;
//! a sender that claims a domain this platform hosts and fails that domain's SPF (`-all`)
//! is refused at MAIL FROM with 550 5.7.23 (RFC 7372), since no one outside may send as a
//! hosted domain. Other failures are recorded, not refused: what to do with them is DMARC's
//! decision, which is not built yet (nor are DKIM and ARC verification).
//!
//! No client address is exempt unless `trusted_networks` lists it (loopback included, so
//! the checks can be exercised on one machine); mail submitted after AUTH is not checked.
//! DNS goes to `dns_servers` when set (tests, air-gapped sites), otherwise to the system's
//! resolvers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticationResults, MessageAuthenticator, SpfOutput, SpfResult};
use tern_smtp_proto::reply::Reply;

/// How long one DNS query may take before SPF says `temperror`.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers kept by the resolver.
const DNS_CACHE: u64 = 4096;

/// The checks of one SMTP node.
pub struct InboundChecks {
    auth: MessageAuthenticator,
    /// This host's name: the authserv-id of the fields it writes.
    hostname: String,
    trusted: Vec<IpNet>,
}

/// The SPF verdict on one transaction's sender.
pub enum SpfVerdict {
    /// Refuse the MAIL command with this reply.
    Refuse(Reply),
    /// Go on; the transaction's message gets this `Authentication-Results:` field (with its
    /// CRLF).
    Accept(String),
}

impl InboundChecks {
    /// Checks that ask `dns_servers` (none: the system's resolvers) and skip clients in
    /// `trusted_networks` (CIDR notation, `192.0.2.0/24`, or single addresses).
    pub fn new(
        hostname: &str,
        dns_servers: &[SocketAddr],
        trusted_networks: &[String],
    ) -> anyhow::Result<Self> {
        let trusted = trusted_networks
            .iter()
            .map(|n| parse_network(n))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let provider = TokioRuntimeProvider::default();
        let mut builder = if dns_servers.is_empty() {
            TokioResolver::builder(provider).context("reading the system DNS configuration")?
        } else {
            let servers = dns_servers
                .iter()
                .map(|addr| {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for c in &mut ns.connections {
                        c.port = addr.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = DNS_TIMEOUT;
        opts.attempts = 1;
        opts.ndots = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.try_tcp_on_error = true;
        opts.cache_size = DNS_CACHE;
        let resolver = builder.build().context("building the DNS resolver")?;
        Ok(Self {
            auth: MessageAuthenticator(resolver),
            hostname: hostname.to_string(),
            trusted,
        })
    }

    /// Whether `ip` is exempt from the checks.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// SPF for a transaction from `ip` that said `helo` and gave the envelope sender `from`
    /// (empty for the null sender: then the HELO identity is checked, RFC 7208 §2.4);
    /// `None` for a trusted client.
    pub async fn spf(&self, ip: IpAddr, helo: &str, from: &str) -> Option<SpfCheck> {
        // An IPv4 client on a dual-stack listener arrives as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        if self.trusts(ip) {
            return None;
        }
        let output = if from.is_empty() {
            self.auth
                .verify_spf(SpfParameters::verify_ehlo(ip, helo, &self.hostname))
                .await
        } else {
            self.auth
                .verify_spf(SpfParameters::verify_mail_from(
                    ip,
                    helo,
                    &self.hostname,
                    from,
                ))
                .await
        };
        crate::metrics::spf_checked(result_name(output.result()));
        let results = AuthenticationResults::new(&self.hostname);
        let field = if from.is_empty() {
            // The null sender: the HELO identity was checked, and is what the field names.
            results.with_spf_ehlo_result(&output, ip, helo)
        } else {
            results.with_spf_mailfrom_result(&output, ip, from, helo)
        };
        Some(SpfCheck {
            refusable: output.result() == SpfResult::Fail && !from.is_empty(),
            refusal: refusal(&output),
            field: format!("Authentication-Results: {field}\r\n"),
        })
    }
}

/// One transaction's SPF result.
pub struct SpfCheck {
    /// A hard fail of a non-null sender: refused if the sender's domain is hosted here.
    refusable: bool,
    refusal: Reply,
    field: String,
}

impl SpfCheck {
    /// Whether the verdict depends on the sender's domain being hosted here (ask only then).
    pub fn needs_hosting(&self) -> bool {
        self.refusable
    }

    /// The verdict, `hosted` saying whether the sender's domain is one this platform hosts.
    pub fn verdict(self, hosted: bool) -> SpfVerdict {
        if self.refusable && hosted {
            SpfVerdict::Refuse(self.refusal)
        } else {
            SpfVerdict::Accept(self.field)
        }
    }
}

/// 550 5.7.23 (RFC 7372 §3.2: "SPF validation failed"), with the domain's explanation when
/// it published one.
fn refusal(output: &SpfOutput) -> Reply {
    // The explanation is the domain's own text from DNS: printable ASCII only, bounded.
    let why = match output.explanation() {
        Some(e) => {
            let e: String = e
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .take(200)
                .collect();
            format!(": {e}")
        }
        None => String::new(),
    };
    Reply::new(
        550,
        "5.7.23",
        format!("SPF check failed for {}{why}", output.domain()),
    )
}

/// The RFC 8601 name of an SPF result, for the metric.
fn result_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// `192.0.2.0/24`, `2001:db8::/32` or a single address.
pub fn parse_network(text: &str) -> anyhow::Result<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    let ip: IpAddr = text
        .parse()
        .with_context(|| format!("trusted network {text:?} is not an address or CIDR"))?;
    Ok(IpNet::from(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_testkit::dns::{DnsServer, Zone};

    const HOST: &str = "mx.tern.test";

    async fn checks(zone: Zone, trusted: &[&str]) -> (DnsServer, InboundChecks) {
        let server = DnsServer::start(zone).await.unwrap();
        let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
        let c = InboundChecks::new(HOST, &[server.addr], &trusted).unwrap();
        (server, c)
    }

    fn zone() -> Zone {
        Zone::new()
            .txt("hosted.test", "v=spf1 ip4:192.0.2.10 -all")
            .txt("remote.example", "v=spf1 ip4:127.0.0.1 -all")
            .txt("strict.example", "v=spf1 -all")
            .a("mx.remote.example", "127.0.0.1".parse().unwrap())
            .servfail("broken.example")
    }

    /// The outcome as the session would act on it, the sender's domain `hosted` or not.
    async fn outcome(c: &InboundChecks, ip: &str, helo: &str, from: &str, hosted: bool) -> String {
        let Some(check) = c.spf(ip.parse().unwrap(), helo, from).await else {
            return "trusted".into();
        };
        match check.verdict(hosted) {
            SpfVerdict::Accept(f) => f,
            SpfVerdict::Refuse(r) => format!("refused {}", r.code),
        }
    }

    #[tokio::test]
    async fn spf_passes_fails_and_refuses_only_hosted_domains() {
        let (_dns, c) = checks(zone(), &[]).await;
        let local = "127.0.0.1";
        let pass = outcome(&c, local, "mx.remote.example", "a@remote.example", false).await;
        assert!(
            pass.starts_with("Authentication-Results: mx.tern.test;"),
            "{pass}"
        );
        assert!(pass.contains("spf=pass"), "{pass}");
        assert!(pass.contains("smtp.mailfrom=a@remote.example"), "{pass}");
        assert!(pass.ends_with("\r\n"));
        // A hosted domain's -all from the wrong address: refused.
        let v = outcome(&c, local, "client", "forger@hosted.test", true).await;
        assert_eq!(v, "refused 550");
        // Someone else's -all: recorded (DMARC decides), not refused.
        let fail = outcome(&c, local, "client", "b@strict.example", false).await;
        assert!(fail.contains("spf=fail"), "{fail}");
        // No record: none. A broken server (SERVFAIL): temperror (RFC 7208 §2.6.6).
        let none = outcome(&c, local, "client", "c@nospf.remote.example", false).await;
        assert!(none.contains("spf=none"), "{none}");
        let temp = outcome(&c, local, "client", "d@broken.example", false).await;
        assert!(temp.contains("spf=temperror"), "{temp}");
        // The null sender: the HELO name is checked.
        let helo = outcome(&c, local, "remote.example", "", true).await;
        assert!(helo.contains("spf=pass"), "{helo}");
        assert!(helo.contains("smtp.helo=remote.example"), "{helo}");
        // An IPv4 client seen through a dual-stack socket is the same client.
        let mapped = outcome(&c, "::ffff:127.0.0.1", "x", "a@remote.example", false).await;
        assert!(mapped.contains("spf=pass"), "{mapped}");
    }

    #[tokio::test]
    async fn trusted_networks_are_not_checked() {
        let (dns, c) = checks(zone(), &["127.0.0.0/8", "2001:db8::1"]).await;
        let v = outcome(&c, "127.0.0.2", "x", "forger@hosted.test", true).await;
        assert_eq!(v, "trusted");
        assert_eq!(dns.queries(), 0, "no DNS for a trusted client");
        assert!(c.trusts("2001:db8::1".parse().unwrap()));
        assert!(!c.trusts("2001:db8::2".parse().unwrap()));
        assert!(InboundChecks::new(HOST, &[], &["not a net".into()]).is_err());
    }
}
