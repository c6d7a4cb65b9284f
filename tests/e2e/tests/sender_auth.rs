//! Sender authentication on the MX listener (issue 21, SPF so far), through Python's
//! smtplib against real tern-store, tern-queue and tern-smtp processes, with a loopback DNS
//! server the test controls: the hosted domain's SPF (`-all`, not listing loopback) refuses
//! a forger at MAIL FROM; a remote domain whose SPF lists loopback passes, and the delivered
//! message carries this host's `Authentication-Results` with `spf=pass` first, while the
//! sender's own field claiming this host is gone and one naming another host stays.

use tern_e2e::mailbox::wait_for;
use tern_e2e::python_scenario;
use tern_testkit::dns::{DnsServer, Zone};
use tern_testkit::Platform;

#[tokio::test(flavor = "multi_thread")]
async fn spf_refuses_forgers_of_hosted_domains_and_results_name_this_host() -> anyhow::Result<()> {
    let zone = Zone::new()
        .txt("example.test", "v=spf1 ip4:192.0.2.1 -all")
        .txt("remote.example", "v=spf1 ip4:127.0.0.1 -all");
    let dns = DnsServer::start(zone).await?;
    let dns_addr = dns.addr.to_string();
    let p = Platform::builder()
        .users(&["alice"])
        .smtp(&["--dns-servers", &dns_addr])
        .start()
        .await?;
    python_scenario(
        "smtp_smtplib.py",
        "spf",
        &[&p.smtp().port("mx").to_string()],
    )?;
    let got = wait_for(&p, "alice", "X-Marker: kept", 1).await?;
    let text = String::from_utf8_lossy(&got[0]);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("Authentication-Results: mx.example.test;"),
        "this host's verdict goes first: {text}"
    );
    let verdict: String = text
        .split("\r\nReceived: ")
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(verdict.contains("spf=pass"), "{verdict}");
    assert!(
        verdict.contains("smtp.mailfrom=someone@remote.example"),
        "{verdict}"
    );
    assert!(
        !text.contains("dkim=pass header.d=example.test"),
        "the forged claim of this host is removed: {text}"
    );
    assert!(
        text.contains("Authentication-Results: other.example; spf=pass"),
        "another host's claim stays: {text}"
    );
    let metrics = tern_testkit::bench::scrape(&p.smtp().metrics).await?;
    let counted = |r: &str| {
        tern_testkit::bench::sum_of(
            &metrics,
            "tern_smtp_spf_results_total",
            &[&format!("result=\"{r}\"")],
        )
    };
    assert_eq!((counted("fail"), counted("pass")), (1, 1));
    Ok(())
}
