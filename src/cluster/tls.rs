//! TLS between nodes: mutual TLS with one CA. Every node presents its certificate when it
//! accepts and when it dials, and accepts only peers whose certificate the CA signed; the
//! cookie still authenticates the cluster on top.
//!
//! ractor_cluster accepts TLS connections itself, but its transitive mode dials the peers it
//! learns of in plain TCP. So with TLS the node server runs in isolated mode and the
//! membership actor dials every peer it learns of through this module's connector.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why TLS could not be set up; each variant names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cluster TLS needs all of cluster.tls_cert, cluster.tls_key and cluster.tls_ca (missing: {0})"
    )]
    Incomplete(String),
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: PathBuf },
    #[error("cannot use the TLS files ({reason})")]
    Config { reason: String },
    #[error("`{0}` is not a host name or IP address a certificate can name")]
    ServerName(String),
}

/// What a node needs for TLS: an acceptor for the node server, a connector for dialling.
#[derive(Clone)]
pub struct NodeTls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

impl NodeTls {
    /// Loads the node's certificate chain, key and CA; `None` when all three paths are empty.
    pub fn load(cert: &str, key: &str, ca: &str) -> Result<Option<NodeTls>, TlsError> {
        let settings = [
            ("cluster.tls_cert", cert),
            ("cluster.tls_key", key),
            ("cluster.tls_ca", ca),
        ];
        let missing: Vec<&str> = settings
            .iter()
            .filter(|(_, path)| path.trim().is_empty())
            .map(|(name, _)| *name)
            .collect();
        if missing.len() == settings.len() {
            return Ok(None);
        }
        if !missing.is_empty() {
            return Err(TlsError::Incomplete(missing.join(", ")));
        }
        let chain = certificates("certificate", Path::new(cert))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::Read {
            what: "private key",
            path: PathBuf::from(key),
            reason: error.to_string(),
        })?;
        let mut roots = RootCertStore::empty();
        for authority in certificates("CA certificate", Path::new(ca))? {
            roots.add(authority).map_err(|error| TlsError::Config {
                reason: format!("CA {ca}: {error}"),
            })?;
        }
        let roots = Arc::new(roots);
        let config_error = |error: rustls::Error| TlsError::Config {
            reason: error.to_string(),
        };
        let verifier = WebPkiClientVerifier::builder(Arc::clone(&roots))
            .build()
            .map_err(|error| TlsError::Config {
                reason: error.to_string(),
            })?;
        let server = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_error)?;
        let client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config_error)?;
        Ok(Some(NodeTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        }))
    }
}

/// The name a peer's certificate must carry to be dialled at `address` (host:port).
pub fn server_name(address: &str) -> Result<ServerName<'static>, TlsError> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName(host.to_string()))
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |reason: String| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| read_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| read_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_paths_is_plain_tcp_and_some_paths_is_an_error() {
        assert!(NodeTls::load("", "", "").unwrap().is_none());
        let error = NodeTls::load("node.pem", "", "").unwrap_err().to_string();
        assert!(
            error.contains("missing: cluster.tls_key, cluster.tls_ca"),
            "{error}"
        );
    }

    #[test]
    fn unreadable_files_are_named() {
        let error = NodeTls::load("/nonexistent/node.pem", "k", "c")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("certificate /nonexistent/node.pem"),
            "{error}"
        );
    }

    #[test]
    fn server_names_come_from_the_address_host() {
        assert_eq!(
            server_name("127.0.0.1:7400").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("node-a.example:7400").unwrap(),
            ServerName::try_from("node-a.example").unwrap()
        );
        assert!(server_name("bad host:1").is_err());
    }
}
