//! TLS for the node's one listener and for its outgoing peer connections (raft transport,
//! `--join`), with rustls on the `ring` provider, TLS 1.2 and 1.3.
//!
//! The node's certificate and key live in one [`Identity`] that both the server side (as a
//! `ResolvesServerCert`) and the peer client (as a `ResolvesClientCert`, for mTLS) read on
//! every handshake, so [`Tls::reload`] (SIGHUP) swaps them for new handshakes while
//! established connections keep the session they negotiated. The CA bundle and the
//! client-auth switch are read once at start.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN: HTTP/1.1 only, so every connection is subject to hyper's header-read timeout (an
/// HTTP/2 connection has no such timer).
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// Where the node's TLS material comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle peers' (and, with `client_auth`, clients') certificates are verified
    /// against; `None`: the built-in web roots verify peers, and clients are not asked.
    pub ca: Option<PathBuf>,
    /// Require client certificates signed by `ca` (mTLS).
    pub client_auth: bool,
}

/// TLS material that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the material (a key that does not match the certificate, an unusable
    /// CA).
    #[error("{0}")]
    Invalid(String),
}

fn file_error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The ring provider with this crate's defaults (TLS 1.2 and 1.3 cipher suites).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

/// Reads a PEM CA bundle into a root store.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Loads a certificate chain and its key, checking they belong together.
pub fn load_identity(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    CertifiedKey::from_der(chain, key_der, provider)
        .map_err(|e| TlsError::Invalid(format!("{} and {}: {e}", cert.display(), key.display())))
}

/// The node's current certificate and key, read on every handshake in either direction.
#[derive(Debug)]
struct Identity {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Identity {
    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, key: CertifiedKey) {
        let key = Arc::new(key);
        match self.current.write() {
            Ok(mut g) => *g = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The node's TLS state: the acceptor configuration and the peer client configuration, both
/// over one reloadable [`Identity`].
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    identity: Arc<Identity>,
    roots: Option<Arc<RootCertStore>>,
    server: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads `files` and builds the server configuration.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = provider();
        let identity = Arc::new(Identity {
            current: RwLock::new(Arc::new(load_identity(&files.cert, &files.key, &provider)?)),
        });
        let roots = files
            .ca
            .as_deref()
            .map(read_roots)
            .transpose()?
            .map(Arc::new);
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Invalid(e.to_string()))?;
        let builder = match (&roots, files.client_auth) {
            (Some(roots), true) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Invalid(format!("client verifier: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            (None, true) => return Err(TlsError::Invalid(
                "--tls-client-auth needs --tls-ca, the CA client certificates must be signed by"
                    .into(),
            )),
            (_, false) => builder.with_no_client_auth(),
        };
        let mut server = builder.with_cert_resolver(identity.clone());
        server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            files,
            provider,
            identity,
            roots,
            server: Arc::new(server),
        })
    }

    /// The files this state was loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Re-reads the certificate and key: new handshakes (served and made) use them, open
    /// connections keep theirs. On an error the current ones stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_identity(&self.files.cert, &self.files.key, &self.provider)?;
        self.identity.set(key);
        Ok(())
    }

    /// The leaf certificate currently served.
    pub fn current_cert(&self) -> CertificateDer<'static> {
        self.identity.get().cert[0].clone()
    }

    /// An acceptor for one incoming connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// The HTTP client for peers (raft transport, `--join`): verifies them against the CA
    /// bundle (the built-in web roots without one) and, with mTLS, presents this node's current
    /// certificate.
    pub fn peer_client(&self, connect_timeout: Duration) -> Result<reqwest::Client, TlsError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .https_only(true);
        let Some(roots) = &self.roots else {
            return builder
                .build()
                .map_err(|e| TlsError::Invalid(format!("http client: {e}")));
        };
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_root_certificates(roots.clone());
        let mut config = if self.files.client_auth {
            config.with_client_cert_resolver(self.identity.clone())
        } else {
            config.with_no_client_auth()
        };
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        builder
            .use_preconfigured_tls(config)
            .build()
            .map_err(|e| TlsError::Invalid(format!("http client: {e}")))
    }
}

/// The TLS settings of a configuration: none without a certificate; a key without a
/// certificate (or the reverse), or a CA or client-auth switch without a certificate, is an
/// error.
pub fn files_from(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    client_auth: bool,
) -> Result<Option<TlsFiles>, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            if client_auth && ca.is_none() {
                return Err(
                    "--tls-client-auth needs --tls-ca, the CA client certificates must be signed by"
                        .into(),
                );
            }
            Ok(Some(TlsFiles {
                cert,
                key,
                ca,
                client_auth,
            }))
        }
        (None, None) if ca.is_none() && !client_auth => Ok(None),
        (None, None) => Err("--tls-ca and --tls-client-auth need --tls-cert and --tls-key".into()),
        (Some(_), None) => Err("--tls-cert needs --tls-key".into()),
        (None, Some(_)) => Err("--tls-key needs --tls-cert".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_come_as_a_whole() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(files_from(None, None, None, false), Ok(None));
        let f = files_from(p("c.pem"), p("k.pem"), p("ca.pem"), true)
            .unwrap()
            .unwrap();
        assert!(f.client_auth && f.ca.is_some());
        assert!(files_from(p("c.pem"), None, None, false).is_err());
        assert!(files_from(None, p("k.pem"), None, false).is_err());
        assert!(files_from(None, None, p("ca.pem"), false).is_err());
        assert!(files_from(p("c.pem"), p("k.pem"), None, true).is_err());
    }

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = read_certs(&empty).unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
        let files = TlsFiles {
            cert: dir.path().join("absent.pem"),
            key: empty,
            ca: None,
            client_auth: false,
        };
        let e = Tls::load(files).unwrap_err();
        assert!(e.to_string().contains("absent.pem"), "{e}");
    }
}
