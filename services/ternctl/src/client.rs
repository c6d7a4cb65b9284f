//! Connecting to a store node.
//!
//! One eager connection per invocation: connecting up front (bounded by [`CONNECT_TIMEOUT`])
//! turns a dead or wrong endpoint into one clear "cannot reach" line before any request is
//! built, instead of a late UNAVAILABLE "transport error". Every request is bounded by
//! [`REQUEST_TIMEOUT`], long enough for a leader election plus forwarding, short enough that a
//! script never hangs.

use std::time::Duration;

use tern_proto::store::v1::{
    admin_client::AdminClient, directory_client::DirectoryClient, queue_client::QueueClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::error::{chain_text, Unreachable, Usage};

/// How long to wait for the TCP + HTTP/2 connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for each request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Listings (the queue with event timelines, big directories) may exceed tonic's 4 MiB default.
const MAX_MESSAGE: usize = 64 << 20;

/// Clients for the store's services over one shared HTTP/2 connection.
pub struct Store {
    channel: Channel,
}

impl Store {
    /// Connects to `endpoint` ("http://HOST:PORT", or "HOST:PORT").
    pub async fn connect(endpoint: &str) -> anyhow::Result<Self> {
        let url = normalize_endpoint(endpoint)?;
        let ep = Endpoint::from_shared(url.clone())
            .map_err(|e| Usage(format!("invalid --endpoint {endpoint:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        // connect_timeout covers the TCP handshake; the outer bound also covers name resolution.
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), ep.connect())
                .await
                .map_err(|_| Unreachable {
                    url: url.clone(),
                    cause: format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
                })?;
        let channel = connected.map_err(|e| Unreachable {
            url,
            cause: chain_text(std::iter::successors(
                Some(&e as &(dyn std::error::Error + 'static)),
                |e| e.source(),
            )),
        })?;
        Ok(Self { channel })
    }

    pub fn directory(&self) -> DirectoryClient<Channel> {
        DirectoryClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn backups(&self) -> tern_proto::store::v1::backups_client::BackupsClient<Channel> {
        tern_proto::store::v1::backups_client::BackupsClient::new(self.channel.clone())
    }

    pub fn queue(&self) -> QueueClient<Channel> {
        QueueClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }
}

/// Accepts "HOST:PORT" as a convenience (operators copy addresses out of `cluster status`).
/// TLS is not compiled in, so https is refused up front with a clear message.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, Usage> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return Err(Usage("--endpoint is empty".into()));
    }
    if let Some((scheme, _)) = e.split_once("://") {
        return match scheme {
            "http" => Ok(e.to_string()),
            "https" => Err(Usage(format!(
                "--endpoint {e}: TLS is not supported by ternctl; use http:// (store gRPC is plaintext inside the cluster)"
            ))),
            other => Err(Usage(format!(
                "--endpoint {e}: unsupported scheme {other:?}, use http://HOST:PORT"
            ))),
        };
    }
    Ok(format!("http://{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            normalize_endpoint("http://127.0.0.1:7101").unwrap(),
            "http://127.0.0.1:7101"
        );
        assert_eq!(
            normalize_endpoint("127.0.0.1:7102/").unwrap(),
            "http://127.0.0.1:7102"
        );
        assert!(normalize_endpoint("https://x:1").is_err());
        assert!(normalize_endpoint("ftp://x:1").is_err());
        assert!(normalize_endpoint(" ").is_err());
    }
}
