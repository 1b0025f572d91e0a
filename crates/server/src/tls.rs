//! HTTPS built in: the `--tls-*`, `--acme-*`, `--redirect-http` and `--state-dir` flags
//! ([`TlsArgs`]), and [`Tls`], the certificate and the handshake the listener
//! (`crate::listen`) runs on each connection. The router and the core never know whether
//! a connection came over TLS; the WebSocket loop (`crate::socket`) carries the session.
//!
//! [`session`] holds a connection's TLS state as rustls's unbuffered, sans-IO connection,
//! so that the caller owns every buffer; [`stream`] makes it a byte stream for hyper.
//!
//! Three ways to get a certificate, one at a time:
//!
//! - [`self_signed`]: `--tls-self-signed` makes one for this machine's names and
//!   addresses and keeps it in the state directory, so a phone that accepted it once is
//!   not asked again after a restart.
//! - [`files`]: `--tls-cert` and `--tls-key` are read at start, again on SIGHUP and when
//!   their contents change; new connections get the new certificate, open ones stay.
//! - [`acme`]: `--acme-domain` obtains and renews certificates from an ACME CA (Let's
//!   Encrypt by default) with TLS-ALPN-01 on this same port.
//!
//! [`redirect`] answers plain HTTP on `--redirect-http` with a 308 to https. The crypto is
//! rustls on *ring*: the self-hosted build compiles no aws-lc.

pub mod acme;
pub mod files;
pub mod redirect;
pub mod self_signed;
pub mod session;
pub mod stream;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};
use tokio_util::sync::CancellationToken;

use session::Session;
use stream::TlsStream;

/// Let's Encrypt's production directory, the default `--acme-directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The ALPN protocol of ACME's TLS-ALPN-01 validation (RFC 8737).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The HTTPS flags, flattened into [`Settings`](crate::Settings).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Serve HTTPS with a self-signed certificate for localhost, this host's name, every
    /// local IP address and each `--tls-hostname`, kept in `--state-dir` and reused while it
    /// covers them (for phones and laptops on a LAN).
    #[arg(long, env = "MESHCALL_TLS_SELF_SIGNED", conflicts_with_all = ["tls_cert", "acme_domain"],
          value_parser = meshcall_core::settings::switch())]
    pub tls_self_signed: bool,

    /// An extra name or IP address for the self-signed certificate (repeat, or separate with
    /// commas).
    #[arg(
        long = "tls-hostname",
        env = "MESHCALL_TLS_HOSTNAME",
        value_delimiter = ',',
        requires = "tls_self_signed"
    )]
    pub tls_hostname: Vec<String>,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); read again on SIGHUP and
    /// when the file changes. Needs `--tls-key`.
    #[arg(
        long,
        env = "MESHCALL_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "acme_domain"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, env = "MESHCALL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often `--tls-cert` and `--tls-key` are checked for new contents.
    #[arg(long, env = "MESHCALL_TLS_WATCH_INTERVAL", default_value = "5s",
          value_parser = meshcall_core::settings::duration)]
    pub tls_watch_interval: Duration,

    /// Obtain and renew a certificate for this domain from an ACME CA, answering its
    /// TLS-ALPN-01 challenge on this port (repeat, or separate with commas; the port must be
    /// reachable as 443 from the internet).
    #[arg(
        long = "acme-domain",
        env = "MESHCALL_ACME_DOMAIN",
        value_delimiter = ','
    )]
    pub acme_domain: Vec<String>,

    /// Contact address given to the ACME CA (expiry warnings; repeat for several).
    #[arg(
        long = "acme-email",
        env = "MESHCALL_ACME_EMAIL",
        value_delimiter = ',',
        requires = "acme_domain"
    )]
    pub acme_email: Vec<String>,

    /// The ACME directory URL.
    #[arg(long, env = "MESHCALL_ACME_DIRECTORY", default_value = LETS_ENCRYPT)]
    pub acme_directory: String,

    /// Trust only this CA (PEM) for the connection to the ACME directory, instead of the
    /// public roots: for a private or test CA such as pebble.
    #[arg(long, env = "MESHCALL_ACME_DIRECTORY_CA", requires = "acme_domain")]
    pub acme_directory_ca: Option<PathBuf>,

    /// Also listen for plain HTTP here and answer every request with a 308 redirect to the
    /// same path over https (for example `0.0.0.0:80`). Needs a TLS mode.
    #[arg(long, env = "MESHCALL_REDIRECT_HTTP")]
    pub redirect_http: Option<SocketAddr>,

    /// Where the self-signed certificate and the ACME account and certificates are kept
    /// (default: the platform data directory, `$XDG_DATA_HOME/meshcall` or
    /// `~/.local/share/meshcall`).
    #[arg(long, env = "MESHCALL_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl TlsArgs {
    /// Whether any TLS mode is on.
    pub fn enabled(&self) -> bool {
        self.tls_self_signed || self.tls_cert.is_some() || !self.acme_domain.is_empty()
    }

    /// Whether browsers trust the certificate without asking (files or ACME, not
    /// self-signed): when HSTS may be sent.
    pub fn real_certificate(&self) -> bool {
        self.tls_cert.is_some() || !self.acme_domain.is_empty()
    }

    /// `--state-dir`, or the platform data directory.
    ///
    /// # Errors
    /// If neither is known (no home directory).
    pub fn state_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => dirs::data_dir()
                .map(|d| d.join("meshcall"))
                .context("no data directory is known for this user: give --state-dir"),
        }
    }
}

/// The crypto provider every TLS config here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config that presents whatever `resolver` holds, speaking HTTP/1.1 (and, with
/// `acme`, answering TLS-ALPN-01 validations, which ask for `acme-tls/1` alone).
///
/// # Errors
/// If the provider supports no safe protocol version (it does).
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    acme: bool,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if acme {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

/// The certificate presented to new connections; swapped whole on reload, so a handshake
/// sees the old pair or the new one, never a mix.
#[derive(Debug)]
pub struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    /// Starts with `cert`.
    pub fn new(cert: CertifiedKey) -> Self {
        Self(RwLock::new(Arc::new(cert)))
    }

    /// Presents `cert` from the next handshake on.
    pub fn replace(&self, cert: CertifiedKey) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(cert);
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The SHA-256 fingerprint of a DER certificate, as browsers show it (`AB:CD:…`).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// HTTPS as the listener serves it: the server config (its certificate kept current by
/// the mode's own task) and whether ACME validations may come.
#[derive(Debug)]
pub struct Tls {
    config: Arc<ServerConfig>,
    acme: bool,
}

impl Tls {
    /// Sets up the mode `args` chooses for a server bound to `local`: makes or loads the
    /// certificate, and spawns what keeps it current (the file watcher, the ACME driver),
    /// which ends with `shutdown`. `None` when no TLS mode is on.
    ///
    /// # Errors
    /// If the certificate cannot be made, read or parsed, or the state directory written.
    pub async fn start(
        args: &TlsArgs,
        local: SocketAddr,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Self>> {
        let (resolver, acme): (Arc<dyn ResolvesServerCert>, bool) = if args.tls_self_signed {
            let dir = args.state_dir()?;
            let names = self_signed::Names::of_this_host(&args.tls_hostname);
            let made = tokio::task::spawn_blocking(move || {
                self_signed::load_or_create(&dir.join("tls"), &names, std::time::SystemTime::now())
            })
            .await
            .context("making the self-signed certificate")??;
            made.announce(local);
            (Arc::new(CurrentCert::new(made.certified_key()?)), false)
        } else if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            let files = files::CertFiles::new(cert.clone(), key.clone());
            let current = Arc::new(files.load().await?);
            let resolver = Arc::new(CurrentCert::new(current.certified.clone()));
            tracing::info!(
                cert = %cert.display(),
                fingerprint = %current.fingerprint,
                "serving https with the given certificate"
            );
            tokio::spawn(files::watch(
                files,
                current,
                resolver.clone(),
                args.tls_watch_interval,
                shutdown.clone(),
            ));
            (resolver, false)
        } else if !args.acme_domain.is_empty() {
            let resolver = acme::start(args, &args.state_dir()?.join("acme"), shutdown).await?;
            (resolver, true)
        } else {
            return Ok(None);
        };
        Ok(Some(Self {
            config: server_config(resolver, acme)?,
            acme,
        }))
    }

    /// Runs the handshake on `tcp` (no time limit: the listener sets one): the stream, or
    /// `None` for a connection that was only an ACME validation (answered and closed).
    ///
    /// # Errors
    /// If the socket fails or the handshake is refused.
    pub async fn accept(&self, mut tcp: TcpStream) -> std::io::Result<Option<TlsStream>> {
        let (session, accepted) = Session::accept(self.config.clone(), &mut tcp).await?;
        let acme = self.acme && session.alpn_protocol() == Some(ACME_TLS_ALPN);
        let mut stream = TlsStream::new(tcp, session, accepted);
        if acme {
            tracing::info!("answered an ACME TLS-ALPN-01 validation");
            stream.shutdown().await?;
            return Ok(None);
        }
        Ok(Some(stream))
    }
}

/// What the first byte a client sends on the HTTPS port says it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS record (a ClientHello): handshake.
    Tls,
    /// Anything else: most likely plain HTTP (an `http://` URL with the HTTPS port).
    Other,
}

impl FirstBytes {
    /// Waits for the client's first byte, without taking it from the socket.
    ///
    /// # Errors
    /// If the socket fails or closes first.
    pub async fn of(tcp: &TcpStream) -> std::io::Result<Self> {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // 22: the handshake content type every TLS connection starts with.
        Ok(if first[0] == 22 {
            Self::Tls
        } else {
            Self::Other
        })
    }
}

/// Creates `dir` (and its parents) readable by this user only.
///
/// # Errors
/// If it cannot be created.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::Settings;

    fn parse(flags: &[&str]) -> Result<Settings, clap::Error> {
        Settings::try_parse_from(std::iter::once("meshcall").chain(flags.iter().copied()))
    }

    #[test]
    fn tls_is_off_by_default_and_acme_defaults_to_lets_encrypt_production() {
        let s = parse(&[]).unwrap();
        assert!(!s.tls.enabled());
        assert_eq!(s.tls.acme_directory, super::LETS_ENCRYPT);
        assert_eq!(s.tls.tls_watch_interval, std::time::Duration::from_secs(5));
    }

    #[test]
    fn modes_exclude_each_other_and_need_their_partners() {
        assert!(parse(&["--tls-self-signed", "--tls-cert", "c", "--tls-key", "k"]).is_err());
        assert!(parse(&["--tls-self-signed", "--acme-domain", "a.example"]).is_err());
        assert!(parse(&["--tls-cert", "c"]).is_err());
        assert!(parse(&["--tls-key", "k"]).is_err());
        assert!(parse(&["--tls-hostname", "box"]).is_err());
        assert!(parse(&["--acme-email", "a@b.example"]).is_err());
        let s = parse(&["--tls-self-signed", "--tls-hostname", "box,10.1.2.3"]).unwrap();
        assert!(s.tls.enabled());
        assert_eq!(s.tls.tls_hostname, ["box", "10.1.2.3"]);
        let s = parse(&[
            "--acme-domain",
            "a.example,b.example",
            "--acme-email",
            "x@a.example",
        ])
        .unwrap();
        assert_eq!(s.tls.acme_domain.len(), 2);
    }

    #[test]
    fn fingerprint_is_colon_separated_upper_hex_sha256() {
        let f = super::fingerprint(b"abc");
        assert!(f.starts_with("BA:78:16:BF:"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }
}
