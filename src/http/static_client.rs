//! The Faye browser bundle served at `{prefix}/client.js` and `{prefix}.js`.
//!
//! The files come from the pinned npm `faye` package: embedded at build time
//! when `build.rs` found them, or read at start from `[server] client_dir`.
//! Each file carries Faye's validators: `ETag` (SHA-1 of the content, hex) and
//! `Last-Modified`; a matching `If-None-Match` or a recent enough
//! `If-Modified-Since` gets `304 Not Modified`.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED,
};
use http::{HeaderMap, Response, StatusCode};
use sha1::{Digest, Sha1};

use super::response::{empty, full, not_found, Body};

const FILES: [&str; 4] = [
    "faye-browser-min.js",
    "faye-browser-min.js.map",
    "faye-browser.js",
    "faye-browser.js.map",
];

#[derive(Debug)]
struct File {
    body: Bytes,
    etag: HeaderValue,
    content_type: &'static str,
}

/// The bundle's files with their validators.
#[derive(Debug)]
pub struct StaticClient {
    files: HashMap<&'static str, File>,
    modified: SystemTime,
    last_modified: HeaderValue,
}

impl StaticClient {
    /// Loads from `dir` when given (missing files are skipped), else the embedded copy.
    pub fn load(dir: Option<&Path>) -> std::io::Result<StaticClient> {
        let mut files = HashMap::new();
        for name in FILES {
            let body = match dir {
                Some(dir) => match std::fs::read(dir.join(name)) {
                    Ok(b) => Some(Bytes::from(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                },
                None => embedded(name).map(Bytes::from_static),
            };
            if let Some(body) = body {
                let digest = Sha1::digest(&body);
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                let etag =
                    HeaderValue::from_str(&hex).unwrap_or_else(|_| HeaderValue::from_static("0"));
                let content_type = if name.ends_with(".map") {
                    "application/json; charset=utf-8"
                } else {
                    "text/javascript; charset=utf-8"
                };
                files.insert(
                    name,
                    File {
                        body,
                        etag,
                        content_type,
                    },
                );
            }
        }
        // Whole seconds, because HTTP dates carry no fractions.
        let now = SystemTime::now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let modified = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let last_modified = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
            .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
        Ok(StaticClient {
            files,
            modified,
            last_modified,
        })
    }

    /// True when the main bundle is available.
    pub fn is_available(&self) -> bool {
        self.files.contains_key("faye-browser-min.js")
    }

    /// Answers a request for `name` (`client.js` is the minified bundle).
    pub fn serve(&self, name: &str, request: &HeaderMap) -> Response<Body> {
        let name = if name == "client.js" {
            "faye-browser-min.js"
        } else {
            name
        };
        let Some(file) = self.files.get(name) else {
            return not_found();
        };
        let not_modified = match request.get(IF_NONE_MATCH) {
            Some(tag) => tag
                .to_str()
                .map(|t| {
                    t.split(',')
                        .any(|t| t.trim().trim_matches('"') == file.etag.to_str().unwrap_or(""))
                })
                .unwrap_or(false),
            None => request
                .get(IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .is_some_and(|since| since >= self.modified),
        };
        let mut r = if not_modified {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            let mut r = Response::new(full(file.body.clone()));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(file.body.len()));
            r
        };
        r.headers_mut().insert(ETAG, file.etag.clone());
        r.headers_mut()
            .insert(LAST_MODIFIED, self.last_modified.clone());
        r
    }
}

fn embedded(name: &str) -> Option<&'static [u8]> {
    include!(concat!(env!("OUT_DIR"), "/faye_client.rs"))
}
