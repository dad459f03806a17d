//! TLS options of a [`Client`]: the CA the node's certificate is checked against and, for a
//! node that requires client certificates (mTLS), this client's certificate and key; and the
//! translation of a failed handshake into one readable reason.

use std::path::Path;

use crate::client::Client;
use crate::error::ClientError;

/// TLS settings of a client, PEM bytes. `Default`: the built-in web roots, no client
/// certificate.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// CA bundle the node's certificate must chain to; replaces the built-in roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Client certificate chain (leaf first) and its private key, for mTLS.
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(|_| "<pem>"))
            .field(
                "client_identity_pem",
                &self.client_identity_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::TlsSetup(format!("cannot read {what} {}: {e}", path.display())))
}

impl TlsOptions {
    /// Reads the CA bundle and the client certificate and key from files; a certificate
    /// without a key (or the reverse) is an error.
    pub fn from_files(
        ca_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<TlsOptions, ClientError> {
        let ca_cert_pem = ca_cert.map(|p| read(p, "CA certificate")).transpose()?;
        let client_identity_pem = match (client_cert, client_key) {
            (Some(c), Some(k)) => Some((read(c, "client certificate")?, read(k, "client key")?)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ClientError::TlsSetup(
                    "a client certificate needs its key (--client-key)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ClientError::TlsSetup(
                    "a client key needs its certificate (--client-cert)".into(),
                ))
            }
        };
        Ok(TlsOptions {
            ca_cert_pem,
            client_identity_pem,
        })
    }

    /// A `reqwest` client builder with these settings applied.
    pub fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, ClientError> {
        let mut builder = builder.use_rustls_tls();
        if let Some(ca) = &self.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| ClientError::TlsSetup(format!("invalid CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::TlsSetup(
                    "the CA certificate file holds no certificate".into(),
                ));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &self.client_identity_pem {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ClientError::TlsSetup(format!("invalid client certificate or key: {e}"))
            })?;
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

impl Client {
    /// Like [`Client::new`], with TLS settings for an `https://` endpoint.
    pub fn with_tls(
        endpoint: &str,
        token: Option<String>,
        tls: &TlsOptions,
    ) -> Result<Client, ClientError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(crate::client::CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let http = tls
            .apply(builder)?
            .build()
            .map_err(|e| ClientError::TlsSetup(format!("cannot build the TLS client: {e}")))?;
        Client::with_http_client(endpoint, token, http)
    }
}

/// The rustls error somewhere in a transport error's chain. `std::io::Error::source` skips
/// the error it wraps, so wrapped errors are looked at through `get_ref`.
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(r) = rustls_error(inner) {
                    return Some(r);
                }
            }
        }
        cur = e.source();
    }
    None
}

/// A handshake failure in a few words with what to do about it, or `None` when `err` is not
/// a TLS failure.
pub(crate) fn tls_reason(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let e = rustls_error(err)?;
    Some(match e {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "the node's certificate is not signed by a trusted CA (pass its CA with --ca-cert)"
                .into()
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("the node's certificate has expired ({e})")
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            format!("the node's certificate is not valid yet ({e})")
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!("the node's certificate does not name this endpoint's host ({e})")
        }
        E::AlertReceived(
            alert @ (A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::HandshakeFailure
            | A::DecryptError),
        ) => format!(
            "the node refused this client's certificate ({alert:?}); pass one signed by the node's CA with --client-cert and --client-key"
        ),
        E::InvalidMessage(_) => format!(
            "TLS handshake failed ({e}); if the node serves plain HTTP, use an http:// endpoint"
        ),
        other => format!("TLS handshake failed: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_wrapped_rustls_error_is_named() {
        let e = Outer(std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
        let reason = tls_reason(&e).unwrap();
        assert!(reason.contains("--ca-cert"), "{reason}");
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(tls_reason(&e).is_none());
    }

    #[test]
    fn half_an_identity_is_refused() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            TlsOptions::from_files(None, Some(&dir), None),
            Err(ClientError::TlsSetup(_))
        ));
        assert!(matches!(
            TlsOptions::from_files(Some(&dir.join("absent-ca.pem")), None, None),
            Err(ClientError::TlsSetup(_))
        ));
    }
}
