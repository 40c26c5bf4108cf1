//! `dashboard:` — serves the web dashboard's static files on a loopback
//! address, and `config.json` telling the page the XMPP server's WebSocket
//! (and BOSH) URL and the component domain.
//!
//! The dashboard is an XMPP client in the browser: it talks to the XMPP
//! server, never to the gateway, so this listener carries no data and no
//! credentials, only files. It is loopback only (refused otherwise at load):
//! whoever publishes it further puts a reverse proxy with TLS in front, or
//! lets the XMPP server serve the same files (`deploy/`).
//!
//! The files are read from a directory at each request (`dashboard.files`,
//! default the Debian package's [`DEFAULT_FILES`]), not embedded: building
//! the gateway needs no npm, and the page can be rebuilt without it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{is_loopback, parse_listen};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Where the Debian package installs the built dashboard.
pub const DEFAULT_FILES: &str = "/usr/share/fieldbridge/dashboard";

/// A file larger than this is not served (the bundle is ~150 KiB).
const FILE_LIMIT: u64 = 16 * 1024 * 1024;

/// `dashboard:` as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardSection {
    /// The loopback address and port to serve the dashboard on, e.g.
    /// `127.0.0.1:8080` or `[::1]:8080`. Only loopback: to reach it from
    /// elsewhere, put a reverse proxy with TLS in front, or let the XMPP
    /// server serve the files.
    pub listen: String,
    /// The directory of the built dashboard (`scripts/build-dashboard`
    /// writes `dashboard/dist/`); relative to this file (default
    /// `/usr/share/fieldbridge/dashboard`, where the Debian package puts it).
    #[serde(default)]
    pub files: Option<PathBuf>,
    /// The XMPP server's WebSocket endpoint the login form offers, e.g.
    /// `wss://example.org/xmpp-websocket` (Prosody `mod_websocket`) or
    /// `wss://example.org:5443/ws` (ejabberd). The server must accept this
    /// page's origin (see the README).
    #[serde(default)]
    pub websocket: Option<String>,
    /// The XMPP server's BOSH endpoint, used when the WebSocket cannot
    /// connect, e.g. `https://example.org/http-bind` (Prosody `mod_bosh`) or
    /// `https://example.org:5443/bosh` (ejabberd).
    #[serde(default)]
    pub bosh: Option<String>,
}

/// `dashboard:` checked: a loopback address, the directory found from the
/// configuration's directory.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// Where to listen (loopback).
    pub listen: SocketAddr,
    /// The built files.
    pub files: PathBuf,
    /// The WebSocket URL for the page, if configured.
    pub websocket: Option<String>,
    /// The BOSH URL for the page, if configured.
    pub bosh: Option<String>,
}

/// A problem with one key of `dashboard:` (key under `dashboard`, message).
pub type Problem = (&'static str, String);

impl DashboardSection {
    /// Checks the section; `base` is the configuration's directory.
    pub fn resolve(self, base: &Path) -> Result<DashboardSettings, Vec<Problem>> {
        let mut problems = Vec::new();
        let listen = match parse_listen(&self.listen, "127.0.0.1:8080") {
            Ok(a) if is_loopback(&a) => Some(a),
            Ok(a) => {
                problems.push((
                    "listen",
                    format!(
                        "{a} is not a loopback address: the dashboard is served on loopback only \
                         (127.0.0.1:PORT or [::1]:PORT); put a reverse proxy with TLS in front \
                         to reach it from elsewhere, or let the XMPP server serve the files"
                    ),
                ));
                None
            }
            Err(message) => {
                problems.push(("listen", message));
                None
            }
        };
        for (key, url, schemes) in [
            ("websocket", &self.websocket, ["ws://", "wss://"]),
            ("bosh", &self.bosh, ["http://", "https://"]),
        ] {
            if let Some(url) = url
                && !schemes
                    .iter()
                    .any(|s| url.starts_with(s) && url.len() > s.len())
            {
                problems.push((
                    key,
                    format!(
                        "`{url}` is not a URL starting with {} or {}",
                        schemes[0], schemes[1]
                    ),
                ));
            }
        }
        let files = match self.files {
            Some(dir) if dir.is_absolute() => dir,
            Some(dir) => base.join(dir),
            None => PathBuf::from(DEFAULT_FILES),
        };
        match listen {
            Some(listen) if problems.is_empty() => Ok(DashboardSettings {
                listen,
                files,
                websocket: self.websocket,
                bosh: self.bosh,
            }),
            _ => Err(problems),
        }
    }
}

impl DashboardSettings {
    /// A note when the files are not there (yet): `check` shows it, `run`
    /// logs it and serves a page saying how to build them.
    pub fn missing_files_note(&self) -> Option<String> {
        let index = self.files.join("index.html");
        (!index.is_file()).then(|| {
            format!(
                "dashboard.files: {} has no index.html; build the dashboard with \
                 `scripts/build-dashboard` (it writes dashboard/dist/) or install the Debian package",
                self.files.display()
            )
        })
    }

    /// What `config.json` says: where the page finds the XMPP server, and
    /// which gateway to show.
    pub fn page_config(&self, component: &str) -> serde_json::Value {
        serde_json::json!({
            "component": component,
            "websocket": self.websocket,
            "bosh": self.bosh,
        })
    }
}

struct Site {
    root: PathBuf,
    config: Vec<u8>,
}

/// Serves until `shutdown`; the address is bound before this returns, so
/// that a busy port stops the gateway at start.
pub async fn serve(
    settings: &DashboardSettings,
    component: &str,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let site = Arc::new(Site {
        root: settings.files.clone(),
        config: settings.page_config(component).to_string().into_bytes(),
    });
    let app = Router::new().fallback(move |method: Method, uri: Uri| {
        let site = Arc::clone(&site);
        async move { respond(&site, &method, &uri).await }
    });
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the dashboard listener failed");
        }
    }))
}

async fn respond(site: &Site, method: &Method, uri: &Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = uri.path();
    let mut r = if path == "/config.json" {
        file_response(site.config.clone(), "application/json")
    } else {
        match relative_path(path) {
            Some(rel) => match read(&site.root, &rel).await {
                Some(bytes) => file_response(bytes, content_type(&rel)),
                None if rel == Path::new("index.html") => plain(
                    StatusCode::NOT_FOUND,
                    "The dashboard is not built: run scripts/build-dashboard, \
                     or set dashboard.files to the built directory.\n",
                ),
                None => plain(StatusCode::NOT_FOUND, "not found\n"),
            },
            None => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    if method == Method::HEAD {
        *r.body_mut() = Body::empty();
    }
    r
}

/// The file a request path names under the root, or `None` for anything
/// but plain names: no `..`, no hidden files, no escapes, no backslashes,
/// so no path leaves the directory. `/` is `index.html`.
fn relative_path(path: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(PathBuf::from("index.html"));
    }
    let mut out = PathBuf::new();
    for segment in rest.split('/') {
        let plain = !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !plain {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

/// The bytes of a regular file under `root` (symbolic links followed only
/// while they stay under it).
async fn read(root: &Path, rel: &Path) -> Option<Vec<u8>> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let path = tokio::fs::canonicalize(root.join(rel)).await.ok()?;
    if !path.starts_with(&root) {
        return None;
    }
    let meta = tokio::fs::metadata(&path).await.ok()?;
    if !meta.is_file() || meta.len() > FILE_LIMIT {
        return None;
    }
    tokio::fs::read(&path).await.ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn file_response(bytes: Vec<u8>, kind: &'static str) -> Response {
    let mut r = Response::new(Body::from(bytes));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Rebuilt files show at the next load.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Scripts and styles from here only; the XMPP server may be anywhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss: http: https:; \
             img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = file_response(text.as_bytes().to_vec(), "text/plain; charset=utf-8");
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_under_the_root_are_served() {
        assert_eq!(relative_path("/"), Some(PathBuf::from("index.html")));
        assert_eq!(relative_path("/app.js"), Some(PathBuf::from("app.js")));
        assert_eq!(
            relative_path("/assets/uPlot.min.css"),
            Some(PathBuf::from("assets/uPlot.min.css"))
        );
        for bad in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/.hidden",
            "//etc/passwd",
            "/a//b",
            "/a\\..\\b",
            "/dir/",
            "relative",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_loopback_is_accepted() {
        let section = |listen: &str| DashboardSection {
            listen: listen.to_owned(),
            files: None,
            websocket: Some("ws://127.0.0.1:5280/xmpp-websocket".into()),
            bosh: None,
        };
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "127.0.0.2:1",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(section(ok).resolve(Path::new("/etc")).is_ok(), "{ok}");
        }
        for bad in [
            "0.0.0.0:8080",
            "192.168.1.2:80",
            "[::]:8080",
            "localhost:8080",
            "8080",
        ] {
            let problems = section(bad).resolve(Path::new("/etc")).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert_eq!(problems[0].0, "listen");
        }
    }

    #[test]
    fn urls_need_their_scheme_and_files_are_relative_to_the_config() {
        let s = DashboardSection {
            listen: "127.0.0.1:8080".into(),
            files: Some("dist".into()),
            websocket: Some("http://x/ws".into()),
            bosh: Some("ws://x/bosh".into()),
        };
        let keys: Vec<&str> = s
            .resolve(Path::new("/etc"))
            .unwrap_err()
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(keys, ["websocket", "bosh"]);
        let s = DashboardSection {
            listen: "127.0.0.1:8080".into(),
            files: Some("dist".into()),
            websocket: None,
            bosh: None,
        };
        let settings = s.resolve(Path::new("/etc/fieldbridge")).unwrap();
        assert_eq!(settings.files, Path::new("/etc/fieldbridge/dist"));
    }

    #[test]
    fn files_have_their_content_type() {
        assert_eq!(
            content_type(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("style.css")),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("a body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn requests_get_the_file_config_json_or_why_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>hi</p>").unwrap();
        let site = Site {
            root: dir.path().to_owned(),
            config: br#"{"component":"gw.example.org"}"#.to_vec(),
        };
        let uri = |p: &str| p.parse::<Uri>().unwrap();
        let r = respond(&site, &Method::GET, &uri("/")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(body(r).await, "<p>hi</p>");
        let r = respond(&site, &Method::HEAD, &uri("/index.html")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, "");
        let r = respond(&site, &Method::GET, &uri("/config.json?x=1")).await;
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body(r).await, r#"{"component":"gw.example.org"}"#);
        let r = respond(&site, &Method::POST, &uri("/")).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        let r = respond(&site, &Method::GET, &uri("/../etc/passwd")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        // Not built yet: the page says how to build it.
        std::fs::remove_file(dir.path().join("index.html")).unwrap();
        let r = respond(&site, &Method::GET, &uri("/")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(body(r).await.contains("scripts/build-dashboard"));
    }

    #[tokio::test]
    async fn a_link_out_of_the_root_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("leak")).unwrap();
        assert_eq!(
            read(&root, Path::new("index.html")).await.as_deref(),
            Some(&b"<p>hi</p>"[..])
        );
        assert_eq!(read(&root, Path::new("leak")).await, None);
        assert_eq!(read(&root, Path::new("missing")).await, None);
    }
}
