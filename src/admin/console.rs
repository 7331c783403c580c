//! The console's pages: the login form, the console itself, and its static
//! files (embedded in the binary: no build step, nothing fetched from
//! elsewhere, so it works offline).
//!
//! The page is rendered here with the figures of the moment (so it is useful
//! before its script runs) and carries the CSRF token in a `<meta>` tag;
//! `assets/console.js` then polls the API every two seconds while the page
//! is visible, draws the sparklines as inline SVG, and drives presence, taps
//! and the test publish. A strict content security policy allows only the
//! page's own script, style and API.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::access::{Access, Caller};
use super::api::{self, json_error, read_body};
use super::State;
use crate::http::response::{full, not_found, Body};
use crate::routes::{Backend, Route};

const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");
const ICON: &str = include_str!("assets/favicon.svg");

/// A failed login or a wrong bearer token is answered after this pause, so
/// guessing the token is slow even over many connections.
const FAILED_AUTH_PAUSE: Duration = Duration::from_millis(250);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Serves `/assets/…`: static, data-free, open to anyone.
pub(super) fn asset(req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let (body, content_type) = match req.uri().path() {
        "/assets/console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/assets/console.css" => (STYLE, "text/css; charset=utf-8"),
        "/assets/favicon.svg" => (ICON, "image/svg+xml"),
        _ => return not_found(),
    };
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Everything but health, metrics and static files: the pages and the API,
/// behind the access rules.
pub(super) async fn handle(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/login" {
        return login(req, &state).await;
    }
    let Some(caller) = state.access.caller(req.headers()) else {
        if crate::auth::bearer(req.headers()).is_some() {
            tokio::time::sleep(FAILED_AUTH_PAUSE).await;
        }
        if path == "/api" || path.starts_with("/api/") {
            let mut r = json_error(
                StatusCode::UNAUTHORIZED,
                "this console needs its token: Authorization: Bearer <token>, or log in at /",
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"bayeux-edge admin\""),
            );
            return r;
        }
        return login_page(&state.access, StatusCode::UNAUTHORIZED, None);
    };
    match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/") => console_page(&state, caller, req.headers()),
        (_, "/") => {
            let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        (Method::POST, "/logout") => logout(req, &state, caller).await,
        (_, p) if p == "/api" || p.starts_with("/api/") => api::handle(req, state, caller).await,
        _ => not_found(),
    }
}

fn see_other(location: &'static str) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(LOCATION, HeaderValue::from_static(location));
    r
}

/// The fields of a small form body.
fn form_fields(body: &[u8], names: [&str; 2]) -> [Option<String>; 2] {
    let mut out = [None, None];
    for (k, v) in form_urlencoded::parse(body) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            out[i].get_or_insert_with(|| v.into_owned());
        }
    }
    out
}

async fn login(req: Request<Incoming>, state: &State) -> Response<Body> {
    if req.method() != Method::POST {
        return see_other("/");
    }
    if !state.access.token_required() {
        return see_other("/");
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(body, 4096).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let [token, csrf] = form_fields(&body, ["token", "csrf"]);
    if let Some(reason) = state
        .access
        .post_refusal(Caller::Cookie, &parts.headers, csrf.as_deref())
    {
        return login_page(&state.access, StatusCode::FORBIDDEN, Some(reason));
    }
    if !token.is_some_and(|t| state.access.token_matches(&t)) {
        tokio::time::sleep(FAILED_AUTH_PAUSE).await;
        return login_page(
            &state.access,
            StatusCode::UNAUTHORIZED,
            Some("That is not the token."),
        );
    }
    let mut r = see_other("/");
    r.headers_mut()
        .insert(SET_COOKIE, state.access.login_cookie());
    r
}

async fn logout(req: Request<Incoming>, state: &State, caller: Caller) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, 4096).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let [csrf, _] = form_fields(&body, ["csrf", ""]);
    if let Some(reason) = state
        .access
        .post_refusal(caller, &parts.headers, csrf.as_deref())
    {
        return json_error(StatusCode::FORBIDDEN, reason);
    }
    let mut r = see_other("/");
    r.headers_mut().insert(SET_COOKIE, Access::logout_cookie());
    r
}

/// `<`, `>`, `&`, `"` and `'` escaped, for text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it, a form POST carries `Origin: null`, which the
    // same-origin check must refuse.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn head(out: &mut String, title: &str, csrf: &str) {
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf-token\" content=\"{}\">\
         <title>{}</title>\
         <link rel=\"icon\" href=\"/assets/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"></head>",
        escape(csrf),
        escape(title)
    );
}

fn login_page(access: &Access, status: StatusCode, error: Option<&str>) -> Response<Body> {
    let mut out = String::with_capacity(2048);
    head(&mut out, "bayeux-edge · sign in", access.csrf());
    out.push_str(
        "<body class=\"login\"><main class=\"login-box\">\
         <h1><span class=\"mark\">bayeux-edge</span> operator console</h1>\
         <p>This console needs the admin token (the value of the variable named by \
         <code>[server.admin] token_env</code>).</p>",
    );
    if let Some(e) = error {
        let _ = write!(
            out,
            "<p class=\"error\" id=\"login-error\">{}</p>",
            escape(e)
        );
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/login\" id=\"login-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label for=\"token\">Token</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form></main></body></html>",
        escape(access.csrf())
    );
    html(status, out)
}

fn route_card(out: &mut String, route: &Route) {
    let prefix = escape(&route.prefix);
    let engine = match &route.backend {
        Backend::Upstream(up) => {
            let _ = write!(
                out,
                "<article class=\"route upstream\" data-prefix=\"{prefix}\">\
                 <header><h3>{prefix}</h3><span class=\"badge\">upstream</span></header>\
                 <p class=\"muted\">Forwarded to <code>{}</code>; its figures are the upstream's.</p>\
                 </article>",
                escape(&up.url().to_string())
            );
            return;
        }
        Backend::Engine(e) => e,
    };
    let s = engine.stats();
    let settings = engine.settings();
    let policies = api::policies(&settings);
    let policy = |k: &str| escape(policies[k].as_str().unwrap_or(""));
    let _ = write!(
        out,
        "<article class=\"route\" data-prefix=\"{prefix}\">\
         <header><h3>{prefix}</h3><span class=\"badge\" data-field=\"engine\">{}</span></header>\
         <dl class=\"policies\">\
         <div><dt>publish</dt><dd data-field=\"policy-publish\">{}</dd></div>\
         <div><dt>subscribe</dt><dd data-field=\"policy-subscribe\">{}</dd></div>\
         <div><dt>origin</dt><dd data-field=\"policy-origin\">{}</dd></div></dl>\
         <div class=\"figures\">",
        escape(engine.kind()),
        policy("publish"),
        policy("subscribe"),
        policy("origin"),
    );
    for (field, label, value) in [
        ("sessions", "sessions", s.clients.to_string()),
        (
            "subscriptions",
            "subscriptions",
            s.subscriptions.to_string(),
        ),
        ("published_per_sec", "publishes/s", "0".to_owned()),
        ("delivered_per_sec", "deliveries/s", "0".to_owned()),
    ] {
        let _ = write!(
            out,
            "<div class=\"figure\"><span class=\"label\">{label}</span>\
             <span class=\"value\" data-field=\"{field}\">{value}</span>\
             <svg class=\"spark\" data-series=\"{field}\" viewBox=\"0 0 120 28\" preserveAspectRatio=\"none\" aria-hidden=\"true\"></svg></div>"
        );
    }
    out.push_str("</div><table class=\"transports\"><tr>");
    for t in crate::engine::Transport::ALL {
        let _ = write!(out, "<th>{}</th>", t.name());
    }
    out.push_str("</tr><tr>");
    for t in crate::engine::Transport::ALL {
        let _ = write!(
            out,
            "<td data-field=\"conn-{}\">{}</td>",
            t.name(),
            s.connections[t as usize]
        );
    }
    let _ = write!(
        out,
        "</tr></table><p class=\"counters\">\
         <span>published <b data-field=\"published\">{}</b></span>\
         <span>delivered <b data-field=\"delivered\">{}</b></span>\
         <span class=\"drops\">dropped <b data-field=\"dropped\">{}</b></span>\
         <span class=\"drops\">overflows <b data-field=\"overflows\">{}</b></span>\
         <span>taps <b data-field=\"taps\">{}</b></span></p></article>",
        s.published,
        s.delivered,
        s.dropped,
        s.overflows,
        engine.taps()
    );
}

fn route_options(out: &mut String, routes: &[Route], preferred: Option<&str>) {
    for r in routes.iter().filter(|r| r.engine().is_some()) {
        let p = escape(&r.prefix);
        let selected = if preferred == Some(&*r.prefix) {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{p}\"{selected}>{p}</option>");
    }
}

fn console_page(state: &State, caller: Caller, headers: &http::HeaderMap) -> Response<Body> {
    let table = state.routes.load();
    // Cards in alphabetical order (the table is longest prefix first).
    let mut routes: Vec<Route> = table.routes().to_vec();
    routes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    let refusal = state.access.user_data_refusal(headers);
    let mut out = String::with_capacity(16 * 1024);
    head(
        &mut out,
        "bayeux-edge · operator console",
        state.access.csrf(),
    );
    let access = match caller {
        Caller::Open if refusal.is_none() => "no token · loopback: full access",
        Caller::Open => "no token · user data hidden",
        Caller::Cookie | Caller::Bearer => "signed in",
    };
    let _ = write!(
        out,
        "<body><header class=\"top\"><h1><span class=\"mark\">bayeux-edge</span> operator console</h1>\
         <div class=\"status\"><span id=\"draining\" class=\"pill warn\"{}>draining</span>\
         <span class=\"pill\" id=\"access\">{}</span><span class=\"pill dim\" id=\"updated\">live</span>",
        if state.shutdown.is_draining() { "" } else { " hidden" },
        escape(access)
    );
    if caller == Caller::Cookie {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/logout\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" class=\"link\">Sign out</button></form>",
            escape(state.access.csrf())
        );
    }
    out.push_str("</div></header><main>");

    out.push_str("<section id=\"routes\" aria-label=\"Routes\"><div class=\"cards\">");
    for r in &routes {
        route_card(&mut out, r);
    }
    out.push_str("</div></section>");

    let preferred = routes
        .iter()
        .find(|r| r.prefix.contains("staging"))
        .map(|r| &*r.prefix);
    let disabled = if refusal.is_some() { " disabled" } else { "" };
    out.push_str("<div class=\"tools\">");
    if let Some(reason) = refusal {
        let _ = write!(
            out,
            "<p class=\"notice\" id=\"user-data-refused\">{}</p>",
            escape(reason)
        );
    }
    // Presence
    out.push_str(
        "<section id=\"presence\" class=\"panel\"><h2>Presence</h2>\
         <p class=\"muted\">Who would receive a publish to a channel right now.</p>\
         <form id=\"presence-form\" class=\"row\"><select id=\"presence-route\" aria-label=\"Route\">",
    );
    route_options(&mut out, &routes, preferred);
    let _ = write!(
        out,
        "</select><input id=\"presence-channel\" aria-label=\"Channel\" value=\"/123\" spellcheck=\"false\">\
         <button type=\"submit\" id=\"presence-go\"{disabled}>Look up</button></form>\
         <div id=\"presence-result\" aria-live=\"polite\"></div></section>"
    );
    // Test publish
    out.push_str(
        "<section id=\"publish\" class=\"panel\"><h2>Test publish</h2>\
         <p class=\"muted\">Sent through the route's engine as a backend publish; \
         the route's publish policy does not apply to the operator.</p>\
         <form id=\"publish-form\"><div class=\"row\"><select id=\"publish-route\" aria-label=\"Route\">",
    );
    route_options(&mut out, &routes, preferred);
    let _ = write!(
        out,
        "</select><input id=\"publish-channel\" aria-label=\"Channel\" value=\"/123\" spellcheck=\"false\"></div>\
         <textarea id=\"publish-data\" aria-label=\"Data (JSON)\" rows=\"3\" spellcheck=\"false\">\
         {{\"text\": \"test from the operator console\"}}</textarea>\
         <div class=\"row\"><button type=\"submit\" id=\"publish-go\"{disabled}>Publish</button>\
         <span id=\"publish-result\" aria-live=\"polite\"></span></div></form></section>"
    );
    // Tap
    out.push_str(
        "<section id=\"tap\" class=\"panel\"><h2>Tap</h2>\
         <p class=\"muted\">Watch a channel's messages live (a pattern such as <code>/**</code> works). \
         A tap is not a client: it takes nothing from anyone.</p>\
         <form id=\"tap-form\" class=\"row\"><select id=\"tap-route\" aria-label=\"Route\">",
    );
    route_options(&mut out, &routes, preferred);
    let _ = write!(
        out,
        "</select><input id=\"tap-pattern\" aria-label=\"Channel or pattern\" value=\"/123\" spellcheck=\"false\">\
         <button type=\"submit\" id=\"tap-start\"{disabled}>Start tap</button></form>\
         <div id=\"tap-list\"></div></section>"
    );
    out.push_str("</div>");

    // Reloads
    out.push_str(
        "<section id=\"reloads\" class=\"panel wide\"><h2>Reloads</h2>\
         <table><thead><tr><th>when</th><th>result</th><th>detail</th></tr></thead><tbody id=\"reload-rows\">",
    );
    let reloads = state.metrics.reloads();
    if reloads.is_empty() {
        out.push_str(
            "<tr class=\"empty\"><td colspan=\"3\">No reload since the server started.</td></tr>",
        );
    }
    for r in reloads {
        let _ = write!(
            out,
            "<tr class=\"{}\"><td data-ms=\"{}\">{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            if r.ok { "ok" } else { "rejected" },
            super::history::unix_ms(r.at),
            httpdate::fmt_http_date(r.at),
            if r.ok { "ok" } else { "rejected" },
            escape(&r.detail)
        );
    }
    out.push_str(
        "</tbody></table></section></main>\
         <script src=\"/assets/console.js\"></script></body></html>",
    );
    html(StatusCode::OK, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_page_needs_nothing_from_elsewhere() {
        for asset in [SCRIPT, STYLE, ICON] {
            // The SVG namespace is a name, not something fetched.
            let asset = asset.replace("http://www.w3.org/2000/svg", "");
            for external in ["http://", "https://", "url(", "@import", "@font-face"] {
                assert!(!asset.contains(external), "an asset refers to {external}");
            }
        }
    }
}
