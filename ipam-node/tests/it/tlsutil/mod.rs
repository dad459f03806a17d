//! Certificates made in the test (rcgen through `ipam_node::certs`) and TLS clients over them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipam_node::certs::{Ca, Issued};
use ipam_node::tls::TlsFiles;
use time::{Duration, OffsetDateTime};

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn ca(name: &str) -> Ca {
    Ca::new(name, now() - Duration::hours(1), now() + Duration::days(30)).unwrap()
}

pub fn node_cert(ca: &Ca) -> Issued {
    ca.issue_node(
        "127.0.0.1",
        now() - Duration::hours(1),
        now() + Duration::days(30),
    )
    .unwrap()
}

pub fn client_cert(ca: &Ca) -> Issued {
    ca.issue(
        "test-client",
        &[],
        false,
        now() - Duration::hours(1),
        now() + Duration::days(30),
    )
    .unwrap()
}

/// Writes `ca.pem`, `NAME.pem`, `NAME-key.pem` into `dir`; returns the node's TLS files.
pub fn write_node(dir: &Path, name: &str, ca: &Ca, issued: &Issued, client_auth: bool) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    TlsFiles {
        cert,
        key,
        ca: Some(ca_path),
        client_auth,
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A reqwest client trusting `ca`, presenting `identity` when given.
pub fn https_client(ca: &Ca, identity: Option<&Issued>) -> reqwest::Client {
    let tls = ipam_client::TlsOptions {
        ca_cert_pem: Some(ca.cert_pem().into_bytes()),
        client_identity_pem: identity.map(|i| {
            (
                i.cert_pem.clone().into_bytes(),
                i.key_pem.clone().into_bytes(),
            )
        }),
    };
    // Bounded: a request that never completes fails the test at that step instead of
    // hanging the suite.
    tls.apply(reqwest::Client::builder().timeout(std::time::Duration::from_secs(20)))
        .unwrap()
        .build()
        .unwrap()
}

/// A raw rustls client configuration trusting `ca`, presenting `identity` when given.
pub fn rustls_client(ca: &Ca, identity: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", &ca.cert_pem());
    let roots = ipam_node::tls::read_roots(&ca_path).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(ipam_node::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(i) => {
            let c = write(dir.path(), "c.pem", &i.cert_pem);
            let k = write(dir.path(), "k.pem", &i.key_pem);
            builder
                .with_client_auth_cert(
                    ipam_node::tls::read_certs(&c).unwrap(),
                    ipam_node::tls::read_key(&k).unwrap(),
                )
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}
