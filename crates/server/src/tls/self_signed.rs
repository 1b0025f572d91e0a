//! `--tls-self-signed`: a certificate for this machine, made once and kept.
//!
//! The certificate names `localhost`, the host name (and `<host>.local`, its mDNS name),
//! every local IP address and each `--tls-hostname`. It and its key live in
//! `<state-dir>/tls/` (`self-signed.pem`, and `self-signed.key` with mode 0600). At start
//! the kept pair is reused while it covers every current name and stays valid for
//! [`RENEW_BEFORE`] more; otherwise a new one replaces it. Reuse is the point: a phone
//! that accepted the certificate once is not asked again after a restart.

use std::{
    collections::BTreeSet,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::sign::CertifiedKey;

/// How long a new certificate is valid.
pub const VALIDITY: Duration = Duration::from_hours(365 * 24);

/// A kept certificate closer than this to its end is replaced.
pub const RENEW_BEFORE: Duration = Duration::from_hours(30 * 24);

/// The file names inside the directory.
pub const CERT_FILE: &str = "self-signed.pem";
/// See [`CERT_FILE`].
pub const KEY_FILE: &str = "self-signed.key";

/// The names a certificate must cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// DNS names, lower case.
    pub dns: BTreeSet<String>,
    /// IP addresses.
    pub ips: BTreeSet<IpAddr>,
}

impl Names {
    /// `localhost`, this host's name and `<name>.local`, every local IP address that a
    /// certificate can name (not link-local IPv6, which needs a zone), and `extra` (names
    /// or IP addresses).
    pub fn of_this_host(extra: &[String]) -> Self {
        let mut names = Self::default();
        names.add("localhost");
        names.ips.insert(IpAddr::from([127, 0, 0, 1]));
        names
            .ips
            .insert(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        if let Some(host) = host_name() {
            names.add(&host);
            if !host.contains('.') {
                names.add(&format!("{host}.local"));
            }
        }
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => {
                for interface in interfaces {
                    let ip = interface.ip();
                    let v6_link_local = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
                    if !v6_link_local {
                        names.ips.insert(ip);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list the network interfaces"),
        }
        for name in extra {
            names.add(name);
        }
        names
    }

    /// Adds a DNS name or, if it parses as one, an IP address.
    pub fn add(&mut self, name: &str) {
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        match name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => {
                self.ips.insert(ip);
            }
            Err(_) => {
                self.dns.insert(name.to_ascii_lowercase());
            }
        }
    }

    /// Whether every name here is also in `other`.
    pub fn within(&self, other: &Self) -> bool {
        self.dns.is_subset(&other.dns) && self.ips.is_subset(&other.ips)
    }

    fn all(&self) -> Vec<String> {
        self.dns
            .iter()
            .cloned()
            .chain(self.ips.iter().map(ToString::to_string))
            .collect()
    }
}

/// This host's name, if the platform tells it.
fn host_name() -> Option<String> {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_proc
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty() && h != "localhost")
}

/// A certificate and key in force, and what it covers.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// What it names.
    pub names: Names,
    /// Its SHA-256 fingerprint, `AB:CD:…`.
    pub fingerprint: String,
    /// Where the certificate file is.
    pub cert_path: PathBuf,
    /// Whether it was made now (`false`: kept from an earlier run).
    pub fresh: bool,
}

impl SelfSigned {
    /// The pair as rustls serves it.
    ///
    /// # Errors
    /// If the PEM does not parse (it was just checked, so only on a broken invariant).
    pub fn certified_key(&self) -> anyhow::Result<CertifiedKey> {
        super::files::parse_pair(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
    }

    /// Logs what to open and what to compare: one `https://` link per address a browser
    /// can use to reach `local`, and the fingerprint.
    pub fn announce(&self, local: SocketAddr) {
        tracing::info!(
            cert = %self.cert_path.display(),
            fingerprint = %self.fingerprint,
            made_now = self.fresh,
            "serving https with a self-signed certificate: browsers warn once; compare the fingerprint"
        );
        for link in links(&self.names, local) {
            tracing::info!(%link, "open");
        }
    }
}

/// The `https://` links to a server bound to `local` that this certificate covers: every
/// name and address when bound to all interfaces, else the bound address (and `localhost`
/// for loopback).
pub fn links(names: &Names, local: SocketAddr) -> Vec<String> {
    let port = local.port();
    let with_port = |host: &str| format!("https://{host}:{port}/");
    let ip_link = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => with_port(&v4.to_string()),
        IpAddr::V6(v6) => with_port(&format!("[{v6}]")),
    };
    if !local.ip().is_unspecified() {
        let mut out = vec![ip_link(&local.ip())];
        if local.ip().is_loopback() {
            out.push(with_port("localhost"));
        }
        return out;
    }
    let v4_only = local.ip().is_ipv4();
    // Addresses other devices can use first, loopback last.
    let mut ips: Vec<&IpAddr> = names
        .ips
        .iter()
        .filter(|ip| !v4_only || ip.is_ipv4())
        .collect();
    ips.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
    let mut out: Vec<String> = names
        .dns
        .iter()
        .filter(|d| *d != "localhost")
        .map(|d| with_port(d))
        .collect();
    out.extend(ips.into_iter().map(ip_link));
    out.push(with_port("localhost"));
    out
}

/// The pair kept in `dir` if it covers `names` and is valid until `now` + [`RENEW_BEFORE`];
/// otherwise a new one (valid [`VALIDITY`] from `now`), written there first. The key file
/// is created with mode 0600 and the directory 0700.
///
/// # Errors
/// If the directory or files cannot be written, or the certificate cannot be made.
pub fn load_or_create(dir: &Path, names: &Names, now: SystemTime) -> anyhow::Result<SelfSigned> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    match kept(&cert_path, &key_path, names, now) {
        Ok(Some(kept)) => return Ok(kept),
        Ok(None) => {}
        Err(e) => {
            tracing::info!(reason = %format!("{e:#}"), "making a new self-signed certificate");
        }
    }
    let made = create(names, now)?;
    super::create_private_dir(dir)?;
    write_file(&key_path, made.key_pem.as_bytes(), true)?;
    write_file(&cert_path, made.cert_pem.as_bytes(), false)?;
    Ok(SelfSigned { cert_path, ..made })
}

/// The kept pair, if it is still good for `names`; `Ok(None)` when there is none yet.
fn kept(
    cert_path: &Path,
    key_path: &Path,
    names: &Names,
    now: SystemTime,
) -> anyhow::Result<Option<SelfSigned>> {
    let cert_pem = match std::fs::read_to_string(cert_path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", cert_path.display())),
    };
    let key_pem = std::fs::read_to_string(key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let info = inspect(&cert_pem)?;
    anyhow::ensure!(
        names.within(&info.names),
        "the kept certificate does not name every current name or address"
    );
    let renew_at = now + RENEW_BEFORE;
    anyhow::ensure!(
        info.not_after > renew_at,
        "the kept certificate expires within {}",
        humantime::format_duration(RENEW_BEFORE)
    );
    let kept = SelfSigned {
        fingerprint: info.fingerprint,
        names: info.names,
        cert_pem,
        key_pem,
        cert_path: cert_path.to_path_buf(),
        fresh: false,
    };
    kept.certified_key()
        .context("the kept key does not fit the kept certificate")?;
    Ok(Some(kept))
}

/// What a certificate says about itself.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// Its subject alternative names.
    pub names: Names,
    /// The end of its validity.
    pub not_after: SystemTime,
    /// Its SHA-256 fingerprint.
    pub fingerprint: String,
}

/// Reads the names, end of validity and fingerprint of the first certificate in `pem`.
///
/// # Errors
/// If it is not a PEM X.509 certificate.
pub fn inspect(pem: &str) -> anyhow::Result<Inspected> {
    use x509_parser::extensions::GeneralName;
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).context("not a PEM certificate")?;
    let cert = pem.parse_x509().context("not an X.509 certificate")?;
    let mut names = Names::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    names.dns.insert(d.to_ascii_lowercase());
                }
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        names.ips.insert(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        names.ips.insert(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Ok(Inspected {
        names,
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        fingerprint: super::fingerprint(&pem.contents),
    })
}

/// A new pair (ECDSA P-256) for `names`, valid from an hour before `now` (clock skew) for
/// [`VALIDITY`].
fn create(names: &Names, now: SystemTime) -> anyhow::Result<SelfSigned> {
    let key = KeyPair::generate().context("generating a key")?;
    let mut params =
        CertificateParams::new(names.all()).context("a name the certificate cannot carry")?;
    let mut dn = DistinguishedName::new();
    let host = host_name().unwrap_or_else(|| "localhost".to_owned());
    dn.push(DnType::CommonName, format!("meshcall on {host}"));
    dn.push(DnType::OrganizationName, "meshcall (self-signed)");
    params.distinguished_name = dn;
    params.not_before = (now - Duration::from_hours(1)).into();
    params.not_after = (now + VALIDITY).into();
    // A fresh serial for every certificate: browsers refuse two certificates with the same
    // issuer and serial but different keys.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        names: names.clone(),
        fingerprint: super::fingerprint(cert.der()),
        cert_path: PathBuf::new(),
        fresh: true,
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees
/// half a file; `private` makes it readable by this user only (mode 0600) from the start.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    let _ = std::fs::remove_file(&tmp);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Names {
        let mut n = Names::default();
        for name in list {
            n.add(name);
        }
        n
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }

    #[test]
    fn a_new_certificate_names_everything_and_the_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let want = names(&["localhost", "Box", "192.168.1.20", "[fd00::5]"]);
        let made = load_or_create(dir.path(), &want, now()).unwrap();
        assert!(made.fresh);
        let info = inspect(&made.cert_pem).unwrap();
        assert_eq!(info.names, want);
        assert!(info.names.dns.contains("box"));
        assert_eq!(info.fingerprint, made.fingerprint);
        assert!(info.not_after > now() + VALIDITY - Duration::from_hours(1));
        made.certified_key().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join(KEY_FILE)), 0o600);
        }
    }

    #[test]
    fn the_kept_certificate_is_reused_while_it_covers_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &names(&["localhost", "10.0.0.1"]), now()).unwrap();
        let again = load_or_create(dir.path(), &names(&["localhost", "10.0.0.1"]), now()).unwrap();
        assert!(!again.fresh);
        assert_eq!(again.fingerprint, first.fingerprint);
        // Fewer names: still covered.
        let fewer = load_or_create(dir.path(), &names(&["localhost"]), now()).unwrap();
        assert_eq!(fewer.fingerprint, first.fingerprint);
    }

    #[test]
    fn a_new_name_or_a_near_expiry_makes_a_new_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &names(&["localhost"]), now()).unwrap();
        let moved = load_or_create(dir.path(), &names(&["localhost", "10.0.0.9"]), now()).unwrap();
        assert!(moved.fresh);
        assert_ne!(moved.fingerprint, first.fingerprint);
        assert!(inspect(&moved.cert_pem).unwrap().names.ips.len() == 1);
        let later = now() + VALIDITY - RENEW_BEFORE + Duration::from_hours(24);
        let renewed =
            load_or_create(dir.path(), &names(&["localhost", "10.0.0.9"]), later).unwrap();
        assert!(renewed.fresh);
        assert_ne!(renewed.fingerprint, moved.fingerprint);
    }

    #[test]
    fn a_damaged_key_file_makes_a_new_pair() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &names(&["localhost"]), now()).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        let second = load_or_create(dir.path(), &names(&["localhost"]), now()).unwrap();
        assert!(second.fresh);
        assert_ne!(second.fingerprint, first.fingerprint);
    }

    #[test]
    fn links_follow_the_bound_address() {
        let n = names(&["localhost", "box", "192.168.1.20", "127.0.0.1", "fd00::5"]);
        let all = links(&n, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(
            all,
            [
                "https://box:8443/",
                "https://192.168.1.20:8443/",
                "https://127.0.0.1:8443/",
                "https://localhost:8443/"
            ]
        );
        let v6 = links(&n, "[::]:8443".parse().unwrap());
        assert!(v6.contains(&"https://[fd00::5]:8443/".to_owned()), "{v6:?}");
        let lo = links(&n, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(lo, ["https://127.0.0.1:9000/", "https://localhost:9000/"]);
    }

    #[test]
    fn this_host_has_localhost_and_loopback() {
        let n = Names::of_this_host(&["extra.example".into(), "10.9.9.9".into()]);
        assert!(n.dns.contains("localhost"));
        assert!(n.dns.contains("extra.example"));
        assert!(n.ips.contains(&IpAddr::from([127, 0, 0, 1])));
        assert!(n.ips.contains(&IpAddr::from([10, 9, 9, 9])));
    }
}
