//! The wss cases' certificate: one self-signed pair made per run (ECDSA P-256, for
//! `127.0.0.1` and `localhost`), written as PEM for the servers (meshcall `--tls-cert` /
//! `--tls-key`, `PeerJS` `--sslcert` / `--sslkey`), and a rustls client configuration that
//! trusts exactly that certificate and nothing else.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use rcgen::{CertificateParams, KeyPair, SanType};

/// The certificate's files and the clients' configuration.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS #8).
    pub key: PathBuf,
    /// What every wss client uses: this certificate as the only root.
    pub client: Arc<rustls::ClientConfig>,
}

impl Tls {
    /// Makes a new pair into `dir` (`cert.pem`, `key.pem`, replacing earlier ones).
    ///
    /// # Errors
    /// If the certificate cannot be made or written, or rustls refuses it.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let key = KeyPair::generate().context("generating the key")?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])
            .context("certificate parameters")?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let cert = params
            .self_signed(&key)
            .context("signing the certificate")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
        write_private(&key_path, &key.serialize_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(cert.der().clone())
            .context("trusting the certificate")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            cert: cert_path,
            key: key_path,
            client: Arc::new(client),
        })
    }
}

/// Writes `text` to `path`, readable by this user only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
