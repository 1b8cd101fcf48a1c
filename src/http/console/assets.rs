//! The console's static files, embedded in the binary: htmx (vendored from the `htmx.org`
//! npm package, BSD Zero Clause licence in `assets/htmx-LICENSE`), the stylesheet and the
//! console's script. Each is served at `/static/<name>.<hash>.<ext>` where the hash is of
//! the content, so browsers may cache them for a year and still see every new version.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use sha2::{Digest, Sha256};

const HTMX: &[u8] = include_bytes!("assets/htmx-2.0.11.min.js");
const CSS: &[u8] = include_bytes!("assets/console.css");
const JS: &[u8] = include_bytes!("assets/console.js");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Htmx,
    Css,
    Js,
}

const ALL: [Asset; 3] = [Asset::Htmx, Asset::Css, Asset::Js];

impl Asset {
    fn bytes(self) -> &'static [u8] {
        match self {
            Asset::Htmx => HTMX,
            Asset::Css => CSS,
            Asset::Js => JS,
        }
    }

    fn stem_ext(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Asset::Htmx => ("htmx-2.0.11", "js", "text/javascript; charset=utf-8"),
            Asset::Css => ("console", "css", "text/css; charset=utf-8"),
            Asset::Js => ("console", "js", "text/javascript; charset=utf-8"),
        }
    }
}

fn names() -> &'static [(Asset, String, String); 3] {
    static N: std::sync::OnceLock<[(Asset, String, String); 3]> = std::sync::OnceLock::new();
    N.get_or_init(|| {
        ALL.map(|a| {
            let (stem, ext, _) = a.stem_ext();
            let hash = hex::encode(&Sha256::digest(a.bytes())[..6]);
            let name = format!("{stem}.{hash}.{ext}");
            let url = format!("/static/{name}");
            (a, name, url)
        })
    })
}

/// The URL of an asset (with its content hash).
pub fn url(a: Asset) -> &'static str {
    names()
        .iter()
        .find(|(x, _, _)| *x == a)
        .map(|(_, _, u)| u.as_str())
        .unwrap_or("/static/missing")
}

pub async fn serve(name: web::Path<String>) -> HttpResponse {
    match names().iter().find(|(_, n, _)| *n == *name) {
        Some((a, _, _)) => HttpResponse::Ok()
            .content_type(a.stem_ext().2)
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(a.bytes()),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such asset (the console was upgraded: reload the page)"),
    }
}
