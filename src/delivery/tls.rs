//! TLS material for the broker connection: the CA that signed the broker's certificate, and
//! this instrument's client certificate and key (mutual TLS). rustls with the `ring` provider.
//!
//! Owns: reading the PEM files with errors that name the file and the fix, and building the
//! rustls client configuration. Does not own: certificate issuance or broker ACLs (see
//! `docs/delivery.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::DeliveryError;

/// PEM files for a TLS connection to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) trusted to sign the broker's certificate.
    pub ca: PathBuf,
    /// This instrument's certificate (chain) and private key, for mutual TLS. The broker's
    /// ACL can match the certificate's CN against the topic's instrument level.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

fn file_err(path: &Path, detail: impl Into<String>) -> DeliveryError {
    DeliveryError::TlsFile {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, DeliveryError> {
    let bytes =
        std::fs::read(path).map_err(|e| file_err(path, format!("cannot read the {what}: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, format!("the {what} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(
            path,
            format!("no certificate in the {what}; expected a PEM file with '-----BEGIN CERTIFICATE-----'"),
        ));
    }
    Ok(certs)
}

/// Build the rustls client configuration from the files.
pub fn client_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, DeliveryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&files.ca, "CA certificate file")? {
        roots
            .add(c)
            .map_err(|e| file_err(&files.ca, format!("unusable CA certificate: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeliveryError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "client certificate file")?;
            let key_bytes = std::fs::read(key)
                .map_err(|e| file_err(key, format!("cannot read the client key: {e}")))?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
                file_err(
                    key,
                    format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
                )
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                file_err(
                    key,
                    format!(
                        "the key does not go with certificate {}: {e}",
                        cert.display()
                    ),
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(DeliveryError::Config(
                "TLS: give both the client certificate and its key, or neither".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}
