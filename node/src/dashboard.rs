//! The dashboard served at `GET /`: one page that shows every node of a devnet side by side
//! (heads, peers, mempool, sync, finality, the block tree with forks and reorgs, blocks with
//! their `engine_explain`, accounts), live over the nodes' WebSocket subscriptions, and one
//! panel for the engine (`assets/panels.js`): PoW difficulty and estimated hash rate, the PoS
//! head's kernel and coin ages, the DPoS round's slots and LIB, PoA signers, turn, cool-down
//! and votes, PBFT and Raft vote progress per node.
//!
//! Its files are compiled into the binary, so it works offline. The page is built with
//! Preact and htm, vendored as one standalone ES module (`assets/vendor/`, htm 3.1.1 with
//! Preact 10; licences beside it). Which nodes to show comes from the page's query string,
//! `?nodes=127.0.0.1:8545,127.0.0.1:8546` (`toychain devnet` prints that address); without
//! it the page shows the node that served it.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const PANELS_JS: &str = include_str!("../assets/panels.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const PREACT_HTM_JS: &str = include_str!("../assets/vendor/htm-preact-standalone.module.js");

/// The files under `/assets/`: name, content type, body.
const ASSETS: [(&str, &str, &str); 4] = [
    ("app.js", "text/javascript; charset=utf-8", APP_JS),
    ("panels.js", "text/javascript; charset=utf-8", PANELS_JS),
    ("style.css", "text/css; charset=utf-8", STYLE_CSS),
    (
        "htm-preact-standalone.module.js",
        "text/javascript; charset=utf-8",
        PREACT_HTM_JS,
    ),
];

/// `GET /` without a WebSocket upgrade: the page.
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// `GET /assets/{name}`: one of the page's scripts or its style sheet.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no dashboard asset {name:?}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names after `/assets/` in `text`.
    fn referred(text: &str) -> Vec<String> {
        text.split("/assets/")
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .collect()
            })
            .collect()
    }

    /// A file the page loads but the node does not serve would fail in every browser, and
    /// only there.
    #[test]
    fn every_asset_the_page_loads_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|(name, _, _)| *name).collect();
        let loaded: Vec<String> = [INDEX_HTML, APP_JS, PANELS_JS]
            .into_iter()
            .flat_map(referred)
            .collect();
        for name in [
            "app.js",
            "panels.js",
            "style.css",
            "htm-preact-standalone.module.js",
        ] {
            assert!(loaded.iter().any(|n| n == name), "{name} not in {loaded:?}");
        }
        for name in &loaded {
            assert!(
                served.contains(&name.as_str()),
                "the page loads /assets/{name}, which is not served"
            );
        }
    }
}
