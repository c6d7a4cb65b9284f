//! A W3C trace context sent by a client arrives in tern-store's server span (checked with an
//! in-process span exporter, on a node started in this process).

use std::time::Duration;

use opentelemetry_sdk::trace::InMemorySpanExporter;
use tern_proto::store::v1 as pb;
use tern_proto::tls::ClusterTls;
use tern_store::config::StoreConfig;
use tern_trust::Role;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

#[tokio::test]
async fn the_client_trace_context_is_the_parent_of_the_store_span() -> anyhow::Result<()> {
    let exporter = InMemorySpanExporter::default();
    let (subscriber, provider) =
        tern_telemetry::subscriber_with_exporter("tern-store-test", exporter.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("tls");
    tern_trust::pki::ensure_dev_pki(&pki, "tern.test")?;
    let own = tern_trust::pki::files(&pki, Role::Store);
    let config = StoreConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        cluster_ca: own.ca,
        cluster_cert: own.cert,
        cluster_key: own.key,
        ..StoreConfig::default()
    };
    let running = tern_store::server::start(config).await?;
    let admin = ClusterTls::load(&tern_trust::pki::files(&pki, Role::Admin))?;
    let channel = admin.channel(&running.grpc_addr.to_string(), Role::Store)?;
    pb::admin_client::AdminClient::new(channel.clone())
        .init(pb::InitClusterRequest {
            members: vec![pb::Member {
                id: 1,
                addr: running.grpc_addr.to_string(),
                ..Default::default()
            }],
        })
        .await?;
    running
        .node
        .raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader")
        .await?;

    let mut request = tonic::Request::new(pb::AddDomainRequest {
        name: "traced.test".into(),
    });
    request
        .metadata_mut()
        .insert("traceparent", format!("00-{TRACE_ID}-{PARENT}-01").parse()?);
    pb::directory_client::DirectoryClient::new(channel)
        .add_domain(request)
        .await?;

    let mut found = None;
    for _ in 0..50 {
        provider.force_flush()?;
        found = exporter
            .get_finished_spans()?
            .into_iter()
            .find(|s| s.name == "tern.store.v1.Directory/AddDomain");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let span = found.expect("the store exported a server span for AddDomain");
    assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id.to_string(), PARENT);
    running.stop().await?;
    Ok(())
}
