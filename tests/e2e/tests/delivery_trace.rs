//! Issue 7's trace must-show: a message sent over SMTP to two local users and one remote
//! recipient (a loopback SMTP sink), then read over IMAP and POP3, yields one trace whose
//! spans come from tern-smtp, tern-queue, tern-store and tern-access (received here by an
//! in-process OTLP receiver), and `ternctl trace` on its Message-ID prints the same hops in
//! order from what the store recorded.
//!
//! This file holds one test: it points every child process at its OTLP receiver through the
//! environment, which is per test binary.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tern_e2e::journey;
use tern_testkit::{Platform, StoreCluster};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One exported span: the service that sent it, its trace id (hex) and name.
#[derive(Clone, Debug)]
struct SpanSeen {
    service: String,
    trace_id: String,
    name: String,
}

/// An OTLP/gRPC trace receiver that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<SpanSeen>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    seen.push(SpanSeen {
                        service: service.clone(),
                        trace_id: hex(&span.trace_id),
                        name: span.name,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A loopback SMTP sink for `remote.test`: accepts every transaction, keeps the bodies.
async fn start_sink() -> anyhow::Result<(u16, Arc<Mutex<Vec<String>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 sink.remote.test ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink.remote.test\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            let _ = w.write_all(b"354 go on\r\n").await;
                            let mut body = String::new();
                            loop {
                                line.clear();
                                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                body.push_str(&line);
                            }
                            keep.lock().unwrap_or_else(|p| p.into_inner()).push(body);
                            b"250 2.0.0 queued at the sink\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, got))
}

fn ternctl(cluster: &StoreCluster, endpoint: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = cluster
        .ternctl()?
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .output()
        .context("running ternctl")?;
    if !out.status.success() {
        bail!("ternctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_message_through_every_service() -> anyhow::Result<()> {
    // The OTLP receiver, and every child process pointed at it.
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let otlp = listener.local_addr()?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream_of(listener)),
    );
    // One test per binary: nothing else reads the environment concurrently.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"));
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");

    let (sink_port, sink) = start_sink().await?;
    let transport = format!("remote.test=127.0.0.1:{sink_port}");
    let p = Platform::start(&["alice", "bob", "carol"], &["--transports", &transport]).await?;
    let store = format!("http://{}", p.cluster.nodes[0].addr);

    // 1. Sent over submission to two local users and one remote recipient.
    let message_id = format!("<journey-{}@client.example.test>", std::process::id());
    let submission = p.smtp().port("submission").to_string();
    journey::python(&[
        "send",
        "--port",
        &submission,
        "--user",
        "carol@example.test",
        "--password",
        "pw-carol",
        "--message-id",
        &message_id,
        "--to",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--to",
        "dave@remote.test",
    ])?;

    // 2. Delivered: both mailboxes and the sink (the queue works in the background).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = ternctl(&p.cluster, &store, &["trace", &message_id, "--json"])
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.to_string().contains("\"completed\""));
        if delivered && !sink.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "not delivered in time; ternctl trace: {:?}\nsink has {} messages\nqueue log:\n{}",
                ternctl(&p.cluster, &store, &["trace", &message_id]),
                sink.lock().unwrap_or_else(|e| e.into_inner()).len(),
                p.queue().log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 3. Read over IMAP (alice) and POP3 (bob), by Python's imaplib and poplib.
    let imap = p.access().imap_port().to_string();
    let pop3 = p.access().pop3_port().to_string();
    journey::python(&[
        "imap",
        "--port",
        &imap,
        "--user",
        "alice@example.test",
        "--password",
        "pw-alice",
        "--needle",
        &message_id,
    ])?;
    journey::python(&[
        "pop3",
        "--port",
        &pop3,
        "--user",
        "bob@example.test",
        "--password",
        "pw-bob",
        "--needle",
        &message_id,
    ])?;

    // 4. ternctl trace by Message-ID: the recorded timeline, both retrievals included.
    let deadline = Instant::now() + Duration::from_secs(30);
    let json = loop {
        let text = ternctl(&p.cluster, &store, &["trace", &message_id, "--json"])?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let retrievals = v[0]["events"]
            .as_array()
            .map(|e| e.iter().filter(|e| e["kind"] == "retrieved").count())
            .unwrap_or(0);
        if retrievals >= 2 {
            break v;
        }
        if Instant::now() > deadline {
            bail!(
                "retrievals were not recorded: {text}\naccess log:\n{}",
                p.access().log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        json.as_array().map(Vec::len),
        Some(1),
        "one trace: {json:#}"
    );
    let trace_id = json[0]["trace_id"]
        .as_str()
        .context("trace id")?
        .to_string();
    assert_eq!(trace_id.len(), 32, "{json:#}");
    let events = json[0]["events"].as_array().context("events")?;
    let steps: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["service"].as_str().unwrap_or("").to_string(),
                e["kind"].as_str().unwrap_or("").to_string(),
                e["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let has = |service: &str, kind: &str, detail: &str| {
        steps
            .iter()
            .any(|(s, k, d)| s == service && k == kind && d.contains(detail))
    };
    assert!(has("smtp", "received", ""), "{steps:#?}");
    assert!(has("queue", "queued", "alice@example.test"), "{steps:#?}");
    assert!(
        has("store", "stored", "alice@example.test INBOX uid"),
        "{steps:#?}"
    );
    assert!(
        has("store", "stored", "bob@example.test INBOX uid"),
        "{steps:#?}"
    );
    assert!(
        has("queue", "delivered", "alice@example.test"),
        "{steps:#?}"
    );
    assert!(
        has("queue", "delivered", "dave@remote.test: 250")
            && has(
                "queue",
                "delivered",
                &format!("(via 127.0.0.1 [127.0.0.1:{sink_port}] without TLS)")
            ),
        "the remote attempt names its host, reply and TLS state: {steps:#?}"
    );
    assert!(
        has("access", "retrieved", "IMAP FETCH by alice@example.test"),
        "{steps:#?}"
    );
    assert!(
        has("access", "retrieved", "POP3 RETR/TOP by bob@example.test"),
        "{steps:#?}"
    );

    // The human-readable timeline names the hops in that order, and the trace id.
    let text = ternctl(&p.cluster, &store, &["trace", &message_id])?;
    let first = |service: &str| text.find(service).unwrap_or(usize::MAX);
    let order = [
        first("tern-smtp"),
        first("tern-queue"),
        first("tern-store"),
        first("tern-access"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]) && order[3] != usize::MAX,
        "hops out of order: {order:?}\n{text}"
    );
    assert!(text.contains(&trace_id), "{text}");
    // The same trace is found by its trace id and by a queue id.
    let queue_id = json[0]["queue_ids"][0].as_str().context("queue id")?;
    for key in [trace_id.as_str(), queue_id] {
        let again: serde_json::Value =
            serde_json::from_str(&ternctl(&p.cluster, &store, &["trace", key, "--json"])?)?;
        assert_eq!(again[0]["trace_id"], json[0]["trace_id"], "by {key}");
    }
    // The Received field tern-smtp added names the same trace id (the sink's copy).
    let copy = sink.lock().unwrap_or_else(|e| e.into_inner())[0].clone();
    assert!(copy.contains(&trace_id), "Received names the trace: {copy}");

    // 5. The exported spans: one trace with spans from all four services.
    let deadline = Instant::now() + Duration::from_secs(30);
    let want: BTreeSet<&str> = ["tern-smtp", "tern-queue", "tern-store", "tern-access"].into();
    loop {
        let spans = receiver.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in spans.iter().filter(|s| s.trace_id == trace_id) {
            by_service
                .entry(s.service.clone())
                .or_default()
                .push(s.name.clone());
        }
        let got: BTreeSet<&str> = by_service.keys().map(String::as_str).collect();
        // The hops the issue names: acceptance, enqueue, each delivery (with its SMTP
        // client span for the remote host), the store's commit (local delivery included), and both retrievals joined
        // to the delivery's trace. Spans arrive in export batches, so wait for all of them.
        let names = |svc: &str| by_service.get(svc).cloned().unwrap_or_default();
        let has = |svc: &str, f: &dyn Fn(&str) -> bool| names(svc).iter().any(|n| f(n));
        let complete = want.is_subset(&got)
            && has("tern-smtp", &|n| n == "smtp.transaction")
            && has("tern-queue", &|n| n.ends_with("Queue/Enqueue"))
            && has("tern-queue", &|n| n == "deliver")
            && has("tern-queue", &|n| n == "SMTP send")
            // The local copies are stored by the write that accepts the message (the
            // store's Enqueue); a worker's Deliver would be a span of its own.
            && has("tern-store", &|n| n.ends_with("Queue/Enqueue"))
            && has("tern-store", &|n| n.ends_with("Queue/RecordTrace"))
            && has("tern-access", &|n| n == "IMAP FETCH retrieve")
            && has("tern-access", &|n| n == "POP3 RETR/TOP retrieve");
        if complete {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "trace {trace_id} lacks hops (of {} spans in all): {by_service:#?}",
                spans.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(p);
    server.abort();
    Ok(())
}

/// The listener as the incoming-connection stream tonic's server takes.
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(s, _)| s);
        Some((next, l))
    })
}
