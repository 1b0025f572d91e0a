//! The embedded web app: its page at `/` and `/r/<room>`, its files with their content
//! types and revalidation headers, `/config.json` and the same settings written into the page.

mod support;

use support::{TestServer, header};

#[tokio::test]
async fn room_urls_serve_the_app_page() {
    let server = TestServer::start().await;
    let (_, _, index) = server.get("/").await;
    for path in ["/r/123", "/r/Some_Room-9", "/r/not%20valid"] {
        let (status, headers, body) = server.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, index, "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn files_are_served_with_an_etag_and_revalidated() {
    let server = TestServer::start().await;
    let (status, headers, _) = server.get("/index.html").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    let etag = header(&headers, "etag").expect("an etag").to_owned();

    let (status, _, body) =
        support::http_get_with(server.addr, "/index.html", &[("If-None-Match", &etag)]).await;
    assert_eq!((status, body.as_str()), (304, ""));
    let (status, _, _) = support::http_get_with(
        server.addr,
        "/index.html",
        &[("If-None-Match", "\"other\"")],
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn every_web_file_is_served_with_its_content_type() {
    let server = TestServer::start().await;
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let mut seen = 0;
    let mut stack = vec![web.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&web)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let (status, headers, _) = server.get(&format!("/{rel}")).await;
            if rel == "tsconfig.json" {
                assert_eq!(status, 404, "the type-check config is not served");
                continue;
            }
            assert_eq!(status, 200, "{rel}");
            let ct = header(&headers, "content-type")
                .unwrap_or_default()
                .to_owned();
            let want = match path.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                Some("json") => "application/json",
                _ => "",
            };
            assert!(ct.starts_with(want), "{rel}: {ct}");
            seen += 1;
        }
    }
    assert!(seen >= 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn config_json_has_no_ws_url_and_rotates_sockets_before_the_age_limit() {
    // The default --max-connection-age is 24 h: move 5 minutes before.
    let server = TestServer::start().await;
    let (status, headers, body) = server.get("/config.json").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"socketMaxAgeMs":86100000}"#)
    );
    assert!(header(&headers, "content-type").is_some_and(|c| c.starts_with("application/json")));
    server.stop().await.unwrap();
    let off = TestServer::with(&["--max-connection-age", "0s"]).await;
    assert_eq!(off.get("/config.json").await.2, "{}");
    off.stop().await.unwrap();
}

#[tokio::test]
async fn the_page_carries_the_settings_of_config_json() {
    let mut etags = Vec::new();
    for args in [&[][..], &["--max-connection-age", "0s"]] {
        let server = TestServer::with(args).await;
        let config = server.get("/config.json").await.2;
        let (status, headers, page) = server.get("/r/some-room").await;
        assert_eq!(status, 200);
        // As a quoted attribute: the JSON's quotes escaped.
        let meta = format!(
            r#"<meta name="meshcall-config" content="{}">"#,
            config.replace('"', "&quot;")
        );
        assert!(page.contains(&meta), "{args:?}: the page lacks {meta}");
        let etag = header(&headers, "etag").expect("an etag").to_owned();
        let (status, _, _) =
            support::http_get_with(server.addr, "/", &[("If-None-Match", &etag)]).await;
        assert_eq!(status, 304, "the page revalidates by its own etag");
        // The file itself (not the app's URL) is as in web/: the app then fetches the settings.
        let raw = server.get("/index.html").await.2;
        assert!(raw.contains(r#"<meta name="meshcall-config" content="">"#));
        etags.push(etag);
        server.stop().await.unwrap();
    }
    assert_ne!(
        etags[0], etags[1],
        "other settings, another page, another etag"
    );
}

#[tokio::test]
async fn paths_outside_the_app_are_not_served() {
    let server = TestServer::start().await;
    for path in [
        "/../Cargo.toml",
        "/css/../../Cargo.toml",
        "/./index.html",
        "/tsconfig.json",
        "/js/",
        "/missing.js",
    ] {
        let (status, _, _) = server.get(path).await;
        assert_eq!(status, 404, "{path}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn force_relay_tells_the_app_to_use_turn_only() {
    let server = TestServer::with(&[
        "--turn",
        "turn:127.0.0.1:3478",
        "--turn-secret",
        "s",
        "--force-relay",
        "--max-connection-age",
        "0s",
    ])
    .await;
    let (status, _, body) = server.get("/config.json").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"iceTransportPolicy":"relay"}"#)
    );
    server.stop().await.unwrap();
    assert!(
        support::TestServer::try_settings(&["--force-relay"]).is_err(),
        "forcing relay without TURN servers is refused"
    );
}

#[tokio::test]
async fn the_page_carries_boot_js_as_its_inline_script_at_every_path() {
    let server = TestServer::with(&["--max-connection-age", "0s"]).await;
    let (_, _, module) = server.get("/js/boot.js").await;
    assert!(
        module.contains("\nexport function start()"),
        "boot.js is served as the module the others import"
    );
    let (_, _, index) = server.get("/index.html").await;
    for path in ["/", "/r/x", "/index.html"] {
        let (status, _, page) = server.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            !page.contains(r#"<script data-inline="js/boot.js"></script>"#),
            "{path}: the placeholder is left"
        );
        let (_, after) = page.split_once("<script>").expect("an inline script");
        let (boot, _) = after.split_once("</script>").expect("its end");
        assert!(
            boot.starts_with("(() => {\n") && boot.ends_with("})();\n"),
            "{path}"
        );
        assert!(boot.contains("\nfunction start()"), "{path}");
        assert!(
            !boot.lines().any(|l| l.starts_with("export ")),
            "{path}: module syntax left"
        );
        assert_eq!(
            page.replace(r#"content="{}""#, r#"content="""#),
            index,
            "{path}"
        );
    }
    server.stop().await.unwrap();
}
