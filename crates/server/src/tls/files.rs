//! `--tls-cert` and `--tls-key`: a certificate chain and key from files, read again on
//! SIGHUP and whenever their contents change (checked every `--tls-watch-interval`).
//!
//! A reload swaps the pair in [`CurrentCert`]: new handshakes get the new certificate,
//! connections already open keep theirs (TLS never re-presents a certificate), so calls in
//! progress are not dropped. A pair that fails to load (half written, or a key that does not
//! fit) is logged and the old one stays in force until the files change again.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    sign::CertifiedKey,
};
use tokio_util::sync::CancellationToken;

use super::CurrentCert;

/// The two files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// A loaded pair and the bytes it came from (to tell when the files change).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The pair as rustls serves it.
    pub certified: CertifiedKey,
    /// The leaf's SHA-256 fingerprint.
    pub fingerprint: String,
    bytes: (Vec<u8>, Vec<u8>),
}

impl CertFiles {
    /// The chain at `cert` (PEM, leaf first) and the key at `key` (PEM).
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self { cert, key }
    }

    async fn read(&self) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let cert = tokio::fs::read(&self.cert)
            .await
            .with_context(|| format!("reading {}", self.cert.display()))?;
        let key = tokio::fs::read(&self.key)
            .await
            .with_context(|| format!("reading {}", self.key.display()))?;
        Ok((cert, key))
    }

    /// Reads and parses both files.
    ///
    /// # Errors
    /// If either cannot be read or parsed, or the key does not fit the certificate.
    pub async fn load(&self) -> anyhow::Result<Loaded> {
        let bytes = self.read().await?;
        Self::parse(bytes)
            .with_context(|| format!("loading {} and {}", self.cert.display(), self.key.display()))
    }

    fn parse(bytes: (Vec<u8>, Vec<u8>)) -> anyhow::Result<Loaded> {
        let certified = parse_pair(&bytes.0, &bytes.1)?;
        let fingerprint = super::fingerprint(
            certified
                .cert
                .first()
                .expect("parse_pair refuses an empty chain"),
        );
        Ok(Loaded {
            certified,
            fingerprint,
            bytes,
        })
    }
}

/// A chain (PEM, leaf first) and its key (PEM: PKCS#8, PKCS#1 or SEC1) as rustls serves
/// them.
///
/// # Errors
/// If either does not parse, the chain is empty, or the key does not fit the leaf.
pub fn parse_pair(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("reading the certificate PEM")?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in the certificate file");
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("reading the key PEM")?;
    CertifiedKey::from_der(chain, key, &super::provider())
        .context("the key does not fit the certificate")
}

/// Reloads on SIGHUP and when the files' contents differ from what is in force, every
/// `interval`, until `shutdown`.
pub async fn watch(
    files: CertFiles,
    current: Arc<Loaded>,
    resolver: Arc<CurrentCert>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut hangup = hangup_signal();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // What is in force, and the last contents that failed (so one bad write is logged once).
    let mut in_force = current.bytes.clone();
    let mut failed: Option<(Vec<u8>, Vec<u8>)> = None;
    loop {
        let forced = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => false,
            () = hangup.recv() => true,
        };
        let bytes = match files.read().await {
            Ok(bytes) => bytes,
            Err(e) => {
                if forced {
                    tracing::error!(error = %format!("{e:#}"), "certificate not reloaded");
                }
                continue;
            }
        };
        if bytes == in_force && !forced {
            continue;
        }
        if !forced && failed.as_ref() == Some(&bytes) {
            continue;
        }
        match CertFiles::parse(bytes.clone()) {
            Ok(loaded) => {
                resolver.replace(loaded.certified);
                tracing::info!(
                    fingerprint = %loaded.fingerprint,
                    on = if forced { "SIGHUP" } else { "file change" },
                    "certificate reloaded; new connections get it"
                );
                in_force = bytes;
                failed = None;
            }
            Err(e) => {
                tracing::error!(
                    error = %format!("{e:#}"),
                    "certificate not reloaded; the previous one stays in force"
                );
                failed = Some(bytes);
            }
        }
    }
}

/// SIGHUP as a stream of wake-ups (never on platforms without it).
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .inspect_err(|e| tracing::error!(error = %e, "cannot listen for SIGHUP"))
            .ok();
        Hangup { signal }
    }
    #[cfg(not(unix))]
    Hangup {}
}

impl Hangup {
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}
