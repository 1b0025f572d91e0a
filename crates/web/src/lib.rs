//! `meshcall-web`: what meshcall's two local runtimes (the self-hosted server `meshcall`
//! and the API Gateway emulator `meshcall-gateway`) serve and do alike, so that neither
//! borrows from the other: the gateway does not link the server's HTTPS (ACME, certificate
//! generation) to serve the same page.
//!
//! # Layout
//!
//! - [`web`]: the web app, embedded in the binary; the page with its boot script inlined and
//!   its settings written in; `/config.json`.
//! - [`config`]: [`AppConfig`], the app's settings (what `/config.json` and the page's
//!   `meshcall-config` meta carry), one serde type for the server, the gateway and the AWS
//!   deploy script (`meshcall app-config`).
//! - [`security`]: the security headers (CSP, HSTS, ...) on every response.
//! - [`process`]: logging to stderr and the Ctrl-C/SIGTERM token, for each `main`.
//! - [`ids`]: connection ids as API Gateway's look.

pub mod config;
pub mod ids;
pub mod process;
pub mod security;
pub mod web;

pub use config::{AppConfig, AppConfigArgs};
pub use ids::new_connection_id;
