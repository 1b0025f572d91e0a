//! `--acme-domain`: certificates from an ACME CA (Let's Encrypt production by default),
//! obtained and renewed by the server itself with crate `rustls-acme`.
//!
//! The CA validates with TLS-ALPN-01 on the port meshcall already serves (it must be
//! reachable as 443): the resolver hands a validation handshake (ALPN `acme-tls/1` alone)
//! the challenge certificate, and the listener closes it after the handshake. The account key and certificates are cached in
//! `<state-dir>/acme/` (mode 0700: the cached certificate file holds its key), so a restart
//! serves the cached certificate at once. A certificate is renewed when two thirds of its
//! lifetime have passed; a failed order is retried with growing pauses.

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use rustls::{
    ClientConfig, RootCertStore, pki_types::CertificateDer, pki_types::pem::PemObject as _,
    server::ResolvesServerCert,
};
use rustls_acme::{AcmeConfig, caches::DirCache};
use tokio_util::sync::CancellationToken;

use super::TlsArgs;

/// Starts the ACME driver for `args.acme_domain`, caching in `cache_dir`; it runs until
/// `shutdown`. The resolver it returns presents the challenge certificate to validations
/// and the issued one to everyone else (no handshake succeeds before the first one is
/// issued or loaded from the cache).
///
/// # Errors
/// If the cache directory cannot be created or `--acme-directory-ca` cannot be read.
pub async fn start(
    args: &TlsArgs,
    cache_dir: &Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<dyn ResolvesServerCert>> {
    super::create_private_dir(cache_dir)?;
    let config = match &args.acme_directory_ca {
        Some(ca) => AcmeConfig::new_with_client_config(&args.acme_domain, client_config(ca).await?),
        // The public roots (Mozilla's, as crate `webpki-roots` ships them).
        None => AcmeConfig::new_with_provider(&args.acme_domain, super::provider()),
    };
    let mut state = config
        .contact(args.acme_email.iter().map(|e| format!("mailto:{e}")))
        .directory(&args.acme_directory)
        .cache(DirCache::new(cache_dir.to_path_buf()))
        .state();
    let resolver = state.resolver();
    tracing::info!(
        domains = ?args.acme_domain,
        directory = %args.acme_directory,
        cache = %cache_dir.display(),
        "serving https with certificates from ACME (TLS-ALPN-01 on this port)"
    );
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = state.next() => event,
            };
            match event {
                Some(Ok(ok)) => tracing::info!(event = ?ok, "acme"),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "acme: no new certificate yet; retrying");
                }
                None => return,
            }
        }
    });
    Ok(resolver)
}

/// A client config for the ACME directory that trusts only the CA in `ca` (PEM).
async fn client_config(ca: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    let pem = tokio::fs::read(ca)
        .await
        .with_context(|| format!("reading {}", ca.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("reading {}", ca.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("trusting {}", ca.display()))?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in {}", ca.display());
    let config = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
