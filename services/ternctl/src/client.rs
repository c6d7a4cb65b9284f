//! Connecting to a store node.
//!
//! One eager connection per invocation: connecting up front (bounded by [`CONNECT_TIMEOUT`])
//! turns a dead or wrong endpoint into one clear "cannot reach" line before any request is
//! built, instead of a late UNAVAILABLE "transport error". Every request is bounded by
//! [`REQUEST_TIMEOUT`], long enough for a leader election plus forwarding, short enough that a
//! script never hangs.
//!
//! The connection is mutual TLS 1.3 (the store has no plaintext port): tern-proto's
//! connector presents our certificate and accepts only a server whose certificate is signed
//! by our CA file and names the `store` role. The certificate is loaded before dialling, so
//! a bad file is reported as such and not as an unreachable store; a handshake that fails is
//! explained by [`crate::tls`].

use std::error::Error;
use std::path::PathBuf;
use std::time::Duration;

use tern_proto::store::v1::{
    admin_client::AdminClient, directory_client::DirectoryClient, queue_client::QueueClient,
};
use tern_proto::tls::ClusterTls;
use tern_trust::{Identity, Role};
use tonic::transport::{Channel, Endpoint};

use crate::error::{chain_text, Unreachable, Usage};
use crate::profile::{ProfileError, Settings};
use crate::tls::{classify, TlsRefused};

/// How long to wait for the TCP + TLS + HTTP/2 connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for each request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Listings (the queue with event timelines, big directories) may exceed tonic's 4 MiB default.
const MAX_MESSAGE: usize = 64 << 20;

/// What a connection was made with, kept to explain a failure that shows only after
/// connecting (a store refusing our certificate, see [`crate::tls`]).
#[derive(Debug, Clone)]
pub struct Link {
    /// The endpoint URL.
    pub url: String,
    /// The certificate files and where they came from.
    pub files: String,
    /// Our certificate file.
    pub cert: PathBuf,
    /// Who our certificate says we are.
    pub identity: Identity,
}

/// Clients for the store's services over one shared HTTP/2 connection.
pub struct Store {
    channel: Channel,
    link: Link,
}

impl Store {
    /// Loads the client certificate `settings` name and connects to their endpoint.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let files = settings.files();
        let tls = ClusterTls::load(&files).map_err(|source| ProfileError::Tls {
            files: settings.describe_files(),
            source,
        })?;
        let link = Link {
            url: settings.endpoint.value.clone(),
            files: settings.describe_files(),
            cert: files.cert.clone(),
            identity: tls.identity().clone(),
        };
        let url = link.url.clone();
        let ep = Endpoint::from_shared(url.clone())
            .map_err(|e| {
                Usage(format!(
                    "invalid endpoint {url:?} ({}): {e}",
                    settings.endpoint.origin
                ))
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        // connect_timeout covers the TCP and TLS handshakes; the outer bound also covers
        // name resolution.
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT + Duration::from_secs(1),
            ep.connect_with_connector(tls.connector(Role::Store)),
        )
        .await
        .map_err(|_| Unreachable {
            url: url.clone(),
            cause: format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
        })?;
        let channel = match connected {
            Ok(channel) => channel,
            Err(e) => {
                let links: Vec<&(dyn Error + 'static)> =
                    std::iter::successors(Some(&e as &(dyn Error + 'static)), |e| (*e).source())
                        .collect();
                let err = match classify(&links) {
                    Some(refusal) => anyhow::Error::new(TlsRefused::new(&link, refusal)),
                    None => anyhow::Error::new(Unreachable {
                        url,
                        cause: chain_text(links.into_iter()),
                    }),
                };
                return Err(err);
            }
        };
        Ok(Self { channel, link })
    }

    /// What this connection was made with.
    pub fn link(&self) -> &Link {
        &self.link
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

/// Accepts "HOST:PORT", "http://HOST:PORT" and "https://HOST:PORT" (operators copy addresses
/// out of `cluster status`, and the connection is mutual TLS whichever they write), and
/// returns "http://HOST:PORT" for tonic: the TLS is done by our connector, not by tonic, which
/// would want a TLS configuration of its own for https. The error is the reason, for the
/// caller to put after the value and where it came from.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim();
    if e.trim_end_matches('/').is_empty() {
        return Err("empty; use HOST:PORT or https://HOST:PORT".into());
    }
    let Some((scheme, rest)) = e.split_once("://") else {
        return Ok(format!("http://{}", e.trim_end_matches('/')));
    };
    let rest = rest.trim_end_matches('/');
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" if !rest.is_empty() => Ok(format!("http://{rest}")),
        "http" | "https" => Err(format!("no HOST:PORT after {scheme}://")),
        other => Err(format!(
            "unsupported scheme {other:?}; use HOST:PORT or https://HOST:PORT"
        )),
    }
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
        assert_eq!(
            normalize_endpoint("https://tern-store-2.tern-store:7100").unwrap(),
            "http://tern-store-2.tern-store:7100"
        );
        assert_eq!(
            normalize_endpoint("HTTPS://[::1]:7101").unwrap(),
            "http://[::1]:7101"
        );
        assert!(normalize_endpoint("https://").is_err());
        assert!(normalize_endpoint("ftp://x:1").is_err());
        assert!(normalize_endpoint(" ").is_err());
    }
}
