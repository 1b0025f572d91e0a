//! The web app, embedded in the binary so that one file is the whole product. Every file
//! under `web/` is served at its path; `/` and `/r/<room>` serve `index.html`, which shows
//! the lobby or the room from the URL. Files carry an `ETag` (from their SHA-256) and
//! `Cache-Control: no-cache`, so browsers revalidate cheaply and never run a stale app.
//!
//! The page (`index.html`, whatever path it is asked for by) carries the boot script:
//! `web/js/boot.js`, an ES module the other modules import, written into the page's
//! `<script data-inline="js/boot.js"></script>` placeholder as a classic inline script
//! ([`classic_script`]: every line's leading `export ` dropped, the whole wrapped in an arrow
//! function called at once), which the Content-Security-Policy allows by its SHA-256.
//! `deploy/aws/deploy` builds the page for static hosting the same way. The settings written
//! into the page are an [`AppConfig`], the state these handlers take.
//!
//! Debug builds read `web/` from disk at run time (edit and reload; a change to
//! `js/boot.js` needs a restart, for its hash in the CSP); release builds carry their own
//! copy.

use std::{fmt::Write as _, sync::LazyLock};

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use memchr::memmem;
use rust_embed::RustEmbed;
use sha2::{Digest as _, Sha256};

use crate::config::AppConfig;

#[derive(RustEmbed)]
#[folder = "../../web/"]
#[exclude = "tsconfig.json"]
struct Assets;

/// The CSP source expressions (`'sha256-…'`) that allow the page's inline scripts: the
/// boot script, which starts the camera and the socket before any file is fetched. Computed
/// once, from the page this binary serves, so the policy always matches it.
pub fn inline_script_hashes() -> &'static [String] {
    static HASHES: LazyLock<Vec<String>> = LazyLock::new(|| {
        app_page()
            .map(|page| script_hashes(&page))
            .unwrap_or_default()
    });
    &HASHES
}

/// The placeholder in index.html that the boot script is written into.
const BOOT_PLACEHOLDER: &[u8] = br#"<script data-inline="js/boot.js"></script>"#;

/// The app's page as served: index.html with `js/boot.js` written into its placeholder
/// (the file as it is when it has none).
fn app_page() -> Option<Vec<u8>> {
    let page = Assets::get("index.html")?;
    let boot = Assets::get("js/boot.js")?;
    Some(with_boot(&page.data, &boot.data))
}

/// `page` with `module` as an inline classic script in place of its boot placeholder.
fn with_boot(page: &[u8], module: &[u8]) -> Vec<u8> {
    let Some(at) = memmem::find(page, BOOT_PLACEHOLDER) else {
        return page.to_vec();
    };
    let mut out = Vec::with_capacity(page.len() + module.len() + 64);
    out.extend_from_slice(&page[..at]);
    out.extend_from_slice(b"<script>");
    out.extend_from_slice(&classic_script(module));
    out.extend_from_slice(b"</script>");
    out.extend_from_slice(&page[at + BOOT_PLACEHOLDER.len()..]);
    out
}

/// An ES module with no imports, whose only module syntax is `export ` at the start of a
/// line, as a classic script: those words dropped and the whole in an arrow function called
/// at once (its declarations stay its own, and its `'use strict'` applies). Each line ends
/// with `\n`. `deploy/aws/deploy` (`boot_script`) does exactly the same.
fn classic_script(module: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(module.len() + 16);
    out.extend_from_slice(b"(() => {\n");
    let body = module.strip_suffix(b"\n").unwrap_or(module);
    for line in body.split(|b| *b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b"export ").unwrap_or(line));
        out.push(b'\n');
    }
    out.extend_from_slice(b"})();\n");
    out
}

/// The hash of each attribute-less `<script>` element's text, as a CSP source expression
/// (browsers hash exactly the bytes between the tags).
fn script_hashes(html: &[u8]) -> Vec<String> {
    const OPEN: &[u8] = b"<script>";
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = memmem::find(rest, OPEN) {
        let body = &rest[start + OPEN.len()..];
        let Some(end) = memmem::find(body, b"</script>") else {
            break;
        };
        let digest = Sha256::digest(&body[..end]);
        hashes.push(format!("'sha256-{}'", STANDARD.encode(digest)));
        rest = &body[end..];
    }
    hashes
}

/// The placeholder in index.html that the page's settings are written into: the boot
/// script reads them from it and needs no request for `/config.json`.
const CONFIG_META: &[u8] = br#"<meta name="meshcall-config" content="">"#;

/// `GET /` and `GET /r/<room>`: the app's page, with the app's settings (as `/config.json`
/// has them) written into its `meshcall-config` meta. The router's state gives the
/// settings (`AppConfig: FromRef<S>`).
#[allow(clippy::unused_async, reason = "an axum handler")]
pub async fn index(State(config): State<AppConfig>, headers: HeaderMap) -> Response {
    let Some(file) = app_page() else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let page = with_config(&file, &config.to_json());
    let hash: [u8; 32] = Sha256::digest(&page).into();
    respond(page, &hash, "text/html", &headers)
}

/// The app's page without settings written in: the boot script fetches `/config.json` (for
/// servers whose settings depend on the request, as the gateway's).
#[allow(
    clippy::unused_async,
    reason = "an axum handler (the gateway's routes)"
)]
pub async fn page(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /config.json`: the app's settings, for pages that do not carry them (the boot
/// script reads them from the page this server serves).
#[allow(clippy::unused_async, reason = "an axum handler")]
pub async fn config(State(config): State<AppConfig>) -> Response {
    json_config(&config)
}

/// `config` as `/config.json`'s response: JSON, never cached.
pub fn json_config(config: &AppConfig) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(config),
    )
        .into_response()
}

/// `page` with `json` as the content of its `meshcall-config` meta (escaped for a quoted
/// attribute); unchanged when it has no such placeholder.
fn with_config(page: &[u8], json: &str) -> Vec<u8> {
    let Some(at) = memmem::find(page, CONFIG_META) else {
        return page.to_vec();
    };
    let value_at = at + CONFIG_META.len() - br#"">"#.len();
    let mut out = Vec::with_capacity(page.len() + json.len() * 2);
    out.extend_from_slice(&page[..value_at]);
    for c in json.bytes() {
        match c {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            c => out.push(c),
        }
    }
    out.extend_from_slice(&page[value_at..]);
    out
}

/// Any other path: the embedded file of that name, or 404.
#[allow(clippy::unused_async, reason = "an axum handler")]
pub async fn asset(request: Request) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = request.uri().path().trim_start_matches('/');
    let traversal = path.split('/').any(|seg| seg == ".." || seg == ".") || path.contains('\\');
    if path.is_empty() || path.ends_with('/') || traversal {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve(path, request.headers())
}

fn serve(path: &str, request_headers: &HeaderMap) -> Response {
    if path == "index.html" {
        let Some(page) = app_page() else {
            return (StatusCode::NOT_FOUND, "not found\n").into_response();
        };
        let hash: [u8; 32] = Sha256::digest(&page).into();
        return respond(page, &hash, "text/html", request_headers);
    }
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    respond(
        file.data,
        &file.metadata.sha256_hash(),
        file.metadata.mimetype(),
        request_headers,
    )
}

/// A file's response: its `ETag` from `hash`, `no-cache`, 304 when the browser has it.
fn respond(
    body: impl Into<axum::body::Body>,
    hash: &[u8; 32],
    mime: &str,
    request_headers: &HeaderMap,
) -> Response {
    let mut etag = String::from("\"");
    for b in &hash[..12] {
        let _ = write!(etag, "{b:02x}");
    }
    etag.push('"');
    let etag = HeaderValue::from_str(&etag).expect("hex in quotes is a valid header value");
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nosniff, no-referrer, the CSP: `security::headers`, on every response.
    let fresh = request_headers.get(header::IF_NONE_MATCH).is_some_and(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii() == etag.as_bytes())
    });
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let content_type =
        if mime.starts_with("text/") || mime.ends_with("javascript") || mime.ends_with("json") {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_owned()
        };
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    (headers, body.into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_inline_script_is_hashed_over_its_exact_text() {
        let page = b"<head><script type=module src=/a.js></script><script></script>\n\
            <script>alert(1)</script></head>";
        assert_eq!(
            script_hashes(page),
            [
                // sha256 of "" and of "alert(1)", as `openssl dgst -sha256 -binary | base64`
                "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
                "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='",
            ]
        );
    }

    #[test]
    fn the_settings_are_written_into_the_page_escaped() {
        let page = br#"<head><meta name="meshcall-config" content=""><script>x</script>"#;
        assert_eq!(
            String::from_utf8(with_config(page, r#"{"a":"<&>"}"#)).unwrap(),
            r#"<head><meta name="meshcall-config" content="{&quot;a&quot;:&quot;&lt;&amp;&gt;&quot;}"><script>x</script>"#
        );
        assert_eq!(with_config(b"<head></head>", "{}"), b"<head></head>");
    }

    #[test]
    fn the_served_page_has_the_settings_placeholder() {
        let page = Assets::get("index.html").expect("index.html is embedded");
        assert!(memmem::find(&page.data, CONFIG_META).is_some());
    }

    #[test]
    fn a_module_becomes_a_classic_script_without_its_exports() {
        let module = b"'use strict';\nexport const A = 1;\n  export const not_at_line_start = 2;\nexport function f() {}\nconst exported = 'export ';\n";
        assert_eq!(
            String::from_utf8(classic_script(module)).unwrap(),
            "(() => {\n'use strict';\nconst A = 1;\n  export const not_at_line_start = 2;\nfunction f() {}\nconst exported = 'export ';\n})();\n"
        );
        // A last line without its newline gets one, as awk gives it (deploy/aws/deploy).
        assert_eq!(
            classic_script(b"export const A = 1;"),
            classic_script(b"export const A = 1;\n")
        );
    }

    #[test]
    fn the_boot_script_takes_the_placeholder_s_place() {
        let page = br#"<head><script data-inline="js/boot.js"></script><title>x</title>"#;
        assert_eq!(
            String::from_utf8(with_boot(page, b"export const A = 1;\n")).unwrap(),
            "<head><script>(() => {\nconst A = 1;\n})();\n</script><title>x</title>"
        );
        assert_eq!(with_boot(b"<head></head>", b"x"), b"<head></head>");
    }

    #[test]
    fn boot_js_can_be_inlined_as_a_classic_script() {
        let boot = Assets::get("js/boot.js").expect("js/boot.js is embedded");
        let text = std::str::from_utf8(&boot.data).expect("boot.js is UTF-8");
        assert!(text.ends_with('\n'), "boot.js ends with a newline");
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            assert!(
                !line.trim_start().starts_with("import"),
                "boot.js:{n}: an import"
            );
            if let Some(rest) = line.strip_prefix("export ") {
                assert!(
                    ["const ", "function ", "async function ", "class "]
                        .iter()
                        .any(|d| rest.starts_with(d)),
                    "boot.js:{n}: only `export` before a declaration is removed"
                );
            } else {
                assert!(
                    !line.trim_start().starts_with("export"),
                    "boot.js:{n}: `export` not at the start of the line"
                );
            }
        }
        let lower = text.to_ascii_lowercase();
        assert!(!lower.contains("</script"), "would end the inline script");
        assert!(
            !lower.contains("<!--"),
            "would change how the inline script parses"
        );
        assert!(!text.contains("import("), "a dynamic import");
        assert!(!text.contains("import.meta"), "module-only syntax");
    }

    #[test]
    fn the_served_page_has_boot_js_inlined() {
        let page = app_page().expect("index.html and js/boot.js are embedded");
        assert!(memmem::find(&page, BOOT_PLACEHOLDER).is_none());
        let boot = Assets::get("js/boot.js").unwrap();
        let script = [&b"<script>"[..], &classic_script(&boot.data), b"</script>"].concat();
        assert!(memmem::find(&page, &script).is_some());
        let raw = Assets::get("index.html").unwrap();
        assert!(
            memmem::find(&raw.data, BOOT_PLACEHOLDER).is_some(),
            "index.html has the placeholder"
        );
    }

    #[test]
    fn the_served_page_has_its_boot_script_hashed() {
        assert_eq!(
            inline_script_hashes().len(),
            1,
            "index.html has one inline script"
        );
    }
}
