//! Mutual TLS between the services (issue 15): tern-queue's Enqueue port refuses strangers
//! and every role but `smtp`, and every certificate of a running platform can be replaced,
//! CA included, without a failed request.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tern_testkit::mtls::{call_raw, plaintext_admitted, tls_admitted, Outcome};
use tern_testkit::{list_all, Platform};
use tern_trust::pki::{ensure_dev_pki, files};
use tern_trust::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enqueue_port_admits_only_smtp_certificates_of_this_cluster() -> anyhow::Result<()> {
    let p = Platform::builder().stores(1).queue(&[]).start().await?;
    let addr = p.queue().grpc.clone();
    let tls_dir = p.cluster.tls_dir();
    assert!(tls_admitted(&addr, Some(&files(&tls_dir, Role::Smtp))).await?);
    assert!(!plaintext_admitted(&addr).await?, "plaintext HTTP/2");
    assert!(!tls_admitted(&addr, None).await?, "no certificate");
    let foreign = tempfile::tempdir()?;
    ensure_dev_pki(foreign.path(), "tern.test")?;
    let stranger = files(foreign.path(), Role::Smtp);
    assert!(!tls_admitted(&addr, Some(&stranger)).await?, "another CA");

    for role in Role::ALL {
        let channel = p.cluster.connect(&addr, role, Role::Queue).await?;
        let outcome = call_raw(channel, "/tern.queue.v1.Queue/Enqueue").await?;
        match (role, &outcome) {
            (Role::Smtp, Outcome::Reached) => {}
            (Role::Smtp, Outcome::Denied(why)) => panic!("smtp denied: {why}"),
            (_, Outcome::Denied(why)) => assert!(why.contains(role.name()), "{why}"),
            (_, Outcome::Reached) => panic!("{role} reached Enqueue"),
        }
    }
    Ok(())
}

/// Replaces `dst` with `src`'s content in one rename, as a Secret update or a careful
/// operator does.
fn replace(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let tmp = dst.with_extension("new");
    std::fs::copy(src, &tmp).with_context(|| format!("copying {}", src.display()))?;
    std::fs::rename(&tmp, dst)?;
    Ok(())
}

/// Longer than the services wait between looks at their certificate files.
const SETTLE: Duration = Duration::from_secs(3);

/// A CA rotation on a running platform (three store nodes, queue, SMTP): first both CAs are
/// trusted, then every role's certificate is replaced by one from the new CA, then the old
/// CA is dropped. Mail is sent all along and none of it is refused or lost; afterwards a
/// restarted store node is reached by every service, which only certificates of the new CA
/// can do, so new connections use the new certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_certificate_and_the_ca_are_replaced_without_a_failed_request() -> anyhow::Result<()>
{
    let mut p = Platform::builder()
        .stores(3)
        .users(&["alice"])
        .queue(&[])
        .smtp(&[])
        .start()
        .await?;
    let tls_dir = p.cluster.tls_dir();
    let new = tempfile::tempdir()?;
    ensure_dev_pki(new.path(), "tern.test")?;

    let port = p.smtp().port("mx");
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (sent, stop) = (sent.clone(), stop.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            use lettre::{Message, SmtpTransport, Transport};
            let transport = SmtpTransport::builder_dangerous("127.0.0.1")
                .port(port)
                .build();
            while !stop.load(Ordering::SeqCst) {
                let n = sent.load(Ordering::SeqCst);
                let email = Message::builder()
                    .from("sender@remote.test".parse()?)
                    .to("alice@example.test".parse()?)
                    .subject(format!("rotation-{n}"))
                    .body(String::from("during a certificate rotation\r\n"))?;
                let response = transport
                    .send(&email)
                    .with_context(|| format!("message {n} refused"))?;
                anyhow::ensure!(response.is_positive(), "message {n}: {response:?}");
                sent.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        })
    };

    // 1. Trust both CAs.
    let bundle = tls_dir.join("bundle.crt");
    let mut both = std::fs::read(tls_dir.join("ca.crt"))?;
    both.extend(std::fs::read(new.path().join("ca.crt"))?);
    std::fs::write(&bundle, both)?;
    replace(&bundle, &tls_dir.join("ca.crt"))?;
    tokio::time::sleep(SETTLE).await;
    // 2. Every role's certificate and key from the new CA.
    for role in Role::ALL {
        let (from, to) = (files(new.path(), role), files(&tls_dir, role));
        replace(&from.key, &to.key)?;
        replace(&from.cert, &to.cert)?;
    }
    tokio::time::sleep(SETTLE).await;
    // 3. Only the new CA.
    replace(&new.path().join("ca.crt"), &tls_dir.join("ca.crt"))?;
    tokio::time::sleep(SETTLE).await;

    stop.store(true, Ordering::SeqCst);
    sender.await??;
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent > 20, "only {sent} messages sent during the rotation");

    // A restarted node has no connection from before: its peers and clients reach it anew,
    // which only certificates of the new CA can do.
    p.cluster.kill(2);
    p.cluster.spawn(2).await?;
    p.cluster
        .status(2)
        .await
        .context("the restarted node with the new certificates")?;
    let leader = p.cluster.wait_leader(Duration::from_secs(30)).await?;
    let applied = p.cluster.status(leader).await?.last_applied;
    p.cluster
        .wait_applied(2, applied, Duration::from_secs(30))
        .await
        .context("the restarted node catches up over Raft with the new certificates")?;
    assert!(
        tls_admitted(
            &p.cluster.nodes[2].addr,
            Some(&files(&tls_dir, Role::Admin))
        )
        .await?,
        "the new admin certificate is admitted"
    );

    // Every message was delivered, through the rotation.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut m = p.cluster.messages(0, "alice@example.test").await?;
        let got = list_all(&mut m, "alice@example.test", "INBOX")
            .await?
            .messages
            .len();
        if got >= sent {
            assert_eq!(got, sent, "no duplicates");
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{got} of {sent} delivered\nqueue log:\n{}",
            p.queue().log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
