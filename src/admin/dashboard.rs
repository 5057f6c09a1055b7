//! The cost dashboard: one HTML page, a stylesheet and a script, compiled into the binary
//! (`src/admin/assets/`) and served at `/` on the admin listener. The files hold no data
//! and are served without the admin token; the page asks for the token once, keeps it in
//! `sessionStorage` and reads everything from the JSON API with it. A strict content
//! security policy allows only these files and same-origin API calls.

use http::Response;

use super::reply::{error, Answer};

const INDEX: &str = include_str!("assets/index.html");
const STYLE: &str = include_str!("assets/dashboard.css");
const SCRIPT: &str = include_str!("assets/dashboard.js");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The dashboard file at `path`, or `None` for any other path.
pub fn asset(method: &str, path: &str) -> Option<Answer> {
    let (body, kind) = match path {
        "/" | "/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/assets/dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        "/assets/dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    if method != "GET" {
        return Some(error(405, "method_not_allowed", "Method not allowed."));
    }
    let resp = Response::builder()
        .status(200)
        .header("content-type", kind)
        .header("content-length", body.len())
        .header("cache-control", "no-cache")
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .body(body.as_bytes().to_vec())
        .unwrap_or_default();
    Some(Box::new(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_and_assets_are_served_with_their_types_and_policy() {
        let page = asset("GET", "/").unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        let html = String::from_utf8(page.into_body()).unwrap();
        assert!(html.contains("/assets/dashboard.js") && html.contains("/assets/dashboard.css"));
        assert_eq!(asset("GET", "/assets/dashboard.js").unwrap().status(), 200);
        assert_eq!(asset("POST", "/").unwrap().status(), 405);
        assert!(asset("GET", "/assets/other.js").is_none());
    }
}
