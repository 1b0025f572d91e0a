//! Security headers on every response of both local runtimes (`meshcall` and
//! `meshcall-gateway`; CloudFront sets the same through the template's response headers
//! policy):
//!
//! - `Content-Security-Policy`: exactly what the app loads. Its own scripts, styles and
//!   images (the favicon is a `data:` PNG), its signalling socket on its own host
//!   (`'self'` covers same-host `ws:`/`wss:` in CSP Level 3 browsers; the host is also named
//!   with both schemes for browsers that predate it), and one inline script, allowed by its
//!   SHA-256: index.html's boot script ([`crate::web::inline_script_hashes`]). No other
//!   inline script, no inline style, no plugins, no framing (`frame-ancestors 'none'`), no
//!   `<base>`.
//! - `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (room names are in
//!   URLs), `X-Frame-Options: DENY` (framing, for browsers without CSP 2).
//! - `Strict-Transport-Security`, only when [`Security::hsts`] is on: when this server
//!   serves HTTPS with a certificate browsers trust (files or ACME, never a self-signed
//!   one, which would lock browsers out of the host for a year).

use std::sync::LazyLock;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::Response,
};

/// The policy without the explicit socket URLs (which depend on the request's host).
static CSP_BASE: LazyLock<String> = LazyLock::new(|| {
    let mut scripts = String::from("'self'");
    for hash in crate::web::inline_script_hashes() {
        scripts.push(' ');
        scripts.push_str(hash);
    }
    format!(
        "default-src 'self'; script-src {scripts}; style-src 'self'; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
});

/// `Strict-Transport-Security` when on: a year, this host only (as the AWS template).
pub const HSTS: &str = "max-age=31536000";

/// Which optional headers a runtime sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Security {
    /// Send `Strict-Transport-Security`. Only for HTTPS with a publicly trusted
    /// certificate.
    pub hsts: bool,
}

/// The `Content-Security-Policy` for a page served to `host` (the request's `Host`
/// header): the base policy, with `connect-src 'self' ws://HOST wss://HOST` when the host
/// is a plain host name or address (and port), or just `'self'` otherwise.
pub fn content_security_policy(host: Option<&str>) -> String {
    let connect = match host.filter(|h| plain_host(h)) {
        Some(h) => format!("connect-src 'self' ws://{h} wss://{h}"),
        None => "connect-src 'self'".to_owned(),
    };
    format!("{}; {connect}", *CSP_BASE)
}

/// A `Host` value safe to echo into a header: letters, digits, `.-:[]`, at most 255 bytes.
fn plain_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// Sets the security headers on `headers`, for a request to `host`.
///
/// # Panics
/// Never: every value is built from checked ASCII.
pub fn apply(security: Security, host: Option<&str>, headers: &mut HeaderMap) {
    let csp = HeaderValue::from_str(&content_security_policy(host))
        .expect("the policy is built from checked ASCII");
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Room names are in URLs: never hand them to other sites.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if security.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
}

/// Middleware: the security headers on every response. Add it to a router with
/// `axum::middleware::from_fn_with_state(security, security::headers)`.
pub async fn headers(State(security): State<Security>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let mut response = next.run(request).await;
    apply(security, host.as_deref(), response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_socket_host_only_when_it_is_plain() {
        let csp = content_security_policy(Some("call.example.org:8443"));
        assert!(csp.ends_with(
            "connect-src 'self' ws://call.example.org:8443 wss://call.example.org:8443"
        ));
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"));
        assert!(content_security_policy(Some("[::1]:80")).contains("ws://[::1]:80"));
        for hostile in ["a; script-src *", "a b", "", "a/b"] {
            assert!(
                content_security_policy(Some(hostile)).ends_with("connect-src 'self'"),
                "{hostile}"
            );
        }
        assert!(content_security_policy(None).ends_with("connect-src 'self'"));
    }

    #[test]
    fn hsts_only_when_asked() {
        let mut h = HeaderMap::new();
        apply(Security::default(), None, &mut h);
        assert!(h.get(header::STRICT_TRANSPORT_SECURITY).is_none());
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        apply(Security { hsts: true }, None, &mut h);
        assert_eq!(h[header::STRICT_TRANSPORT_SECURITY], HSTS);
    }
}
