//! `ipam-node certs`: a private CA and one certificate per node (plus one for the CLI), so a
//! TLS cluster takes three commands. Keys are ECDSA P-256 (rcgen on ring).
//!
//! Every node certificate is good for both server and client authentication, since a node is
//! a client of its peers under mTLS. Its subject alternative names are the node's host name
//! plus `localhost`, `127.0.0.1` and `::1`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// Subcommands of `ipam-node`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Write a CA and a certificate per node (and one for ipam-cli) into a directory
    Certs(CertsArgs),
}

/// `ipam-node certs`.
#[derive(Clone, Debug, clap::Args)]
pub struct CertsArgs {
    /// Directory to write into (created if missing); existing files are not overwritten
    #[arg(long)]
    pub out: PathBuf,
    /// Comma-separated node host names (DNS names or IP addresses), one certificate each
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// Validity of the node and client certificates in days (the CA: ten times as long)
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// Generating or writing certificates failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// rcgen refused the parameters (an invalid host name).
    #[error("cannot generate a certificate for {name:?}: {source}")]
    Generate {
        /// The subject.
        name: String,
        /// Why.
        source: rcgen::Error,
    },
    /// A file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate authority that signs node and client certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn generate_error(name: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Generate {
        name: name.to_string(),
        source,
    }
}

impl Ca {
    /// A new self-signed CA named `name`, valid from `not_before` to `not_after`.
    pub fn new(
        name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Ca, CertError> {
        let err = generate_error(name);
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key).map_err(generate_error(name))?;
        Ok(Ca { cert, key })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA key, PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for `name` with subject alternative names `sans` (DNS names or IP
    /// addresses), for server and client authentication when `server`, client only otherwise.
    pub fn issue(
        &self,
        name: &str,
        sans: &[String],
        server: bool,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, CertError> {
        let key = KeyPair::generate().map_err(generate_error(name))?;
        let mut params = CertificateParams::new(sans.to_vec()).map_err(generate_error(name))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(generate_error(name))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A node certificate for `host`: its SANs are `host`, `localhost`, `127.0.0.1`, `::1`.
    pub fn issue_node(
        &self,
        host: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, CertError> {
        let mut sans = vec![host.to_string()];
        for local in ["localhost", "127.0.0.1", "::1"] {
            if local != host {
                sans.push(local.to_string());
            }
        }
        self.issue(host, &sans, true, not_before, not_after)
    }
}

/// The name of a node's files in the output directory: the host name with anything but
/// letters, digits, `-`, `_` and `.` replaced by `_` (an IPv6 address has colons).
pub fn file_stem(host: &str) -> String {
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `ca.pem`, `ca-key.pem`, `NAME.pem`/`NAME-key.pem` per node and
/// `client.pem`/`client-key.pem` into `args.out`; returns the files written. Refuses to
/// overwrite an existing file (a second run would silently replace the CA).
pub fn write(args: &CertsArgs, now: OffsetDateTime) -> Result<Vec<PathBuf>, CertError> {
    if args.nodes.iter().any(|n| n.trim().is_empty()) || args.nodes.is_empty() {
        return Err(CertError::Invalid(
            "--nodes needs one or more host names, comma-separated".into(),
        ));
    }
    if args.days == 0 {
        return Err(CertError::Invalid("--days must be at least 1".into()));
    }
    let mut stems: Vec<String> = args.nodes.iter().map(|n| file_stem(n.trim())).collect();
    stems.sort();
    if stems.windows(2).any(|w| w[0] == w[1]) || stems.iter().any(|s| s == "ca" || s == "client") {
        return Err(CertError::Invalid(
            "--nodes names must be distinct and not `ca` or `client`".into(),
        ));
    }
    let not_before = now - Duration::hours(1);
    let not_after = now + Duration::days(i64::from(args.days));
    let ca = Ca::new(
        "raft-ipam CA",
        not_before,
        now + Duration::days(10 * i64::from(args.days)),
    )?;
    let mut files: Vec<(String, String, bool)> = vec![
        ("ca.pem".into(), ca.cert_pem(), false),
        ("ca-key.pem".into(), ca.key_pem(), true),
    ];
    for host in &args.nodes {
        let host = host.trim();
        let issued = ca.issue_node(host, not_before, not_after)?;
        let stem = file_stem(host);
        files.push((format!("{stem}.pem"), issued.cert_pem, false));
        files.push((format!("{stem}-key.pem"), issued.key_pem, true));
    }
    let client = ca.issue("ipam-cli", &[], false, not_before, not_after)?;
    files.push(("client.pem".into(), client.cert_pem, false));
    files.push(("client-key.pem".into(), client.key_pem, true));

    std::fs::create_dir_all(&args.out).map_err(|source| CertError::Write {
        path: args.out.clone(),
        source,
    })?;
    for (name, _, _) in &files {
        let path = args.out.join(name);
        if path.exists() {
            return Err(CertError::Invalid(format!(
                "{} exists; refusing to overwrite (use an empty --out directory)",
                path.display()
            )));
        }
    }
    let mut written = Vec::new();
    for (name, pem, secret) in files {
        let path = args.out.join(name);
        write_file(&path, &pem, secret)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `text`, readable by the owner only when `secret`.
fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = options.open(path).map_err(err)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_one_pair_per_node_that_rustls_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let args = CertsArgs {
            out: dir.path().join("certs"),
            nodes: vec!["ipam-1.example".into(), "10.0.0.2".into(), "::2".into()],
            days: 30,
        };
        let files = write(&args, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(files.len(), 2 + 2 * 3 + 2);
        let provider = crate::tls::provider();
        for stem in ["ipam-1.example", "10.0.0.2", "__2", "client"] {
            let cert = args.out.join(format!("{stem}.pem"));
            let key = args.out.join(format!("{stem}-key.pem"));
            crate::tls::load_identity(&cert, &key, &provider).unwrap();
        }
        crate::tls::read_roots(&args.out.join("ca.pem")).unwrap();
        // A second run would replace the CA every node trusts.
        assert!(matches!(
            write(&args, OffsetDateTime::now_utc()),
            Err(CertError::Invalid(_))
        ));
        let bad = CertsArgs {
            out: dir.path().join("other"),
            nodes: vec!["a".into(), "a".into()],
            days: 30,
        };
        assert!(write(&bad, OffsetDateTime::now_utc()).is_err());
    }
}
