//! The layering rules a crate boundary cannot express, checked on the source text.
//!
//! Arrows point one way: `app`/`cli` → `http` → `state` → `domain` → `store`, `cwmp`,
//! `datamodel`, `auth`, `connreq`. Concretely:
//!
//! - nothing imports `http` except `app` (start-up);
//! - `state` and `domain` never import `http`, and `domain` never uses actix;
//! - the session driver (`domain::driver`) uses no HTTP crate at all (actix, hyper, h2):
//!   `http::cwmp` turns requests into driver calls, never the other way round;
//! - `store` never imports `http` or `domain`;
//! - `http` never reaches `store` directly (the exceptions below are a list that must
//!   shrink: an entry that no longer matches fails the test, so it is removed when fixed);
//! - `datamodel` and `auth` never use actix, diesel or tokio, and the `ferroacs-cwmp` crate
//!   neither depends on them nor reads a clock;
//! - no cycles among the top-level modules, nor among the modules of `domain` and of `http`.
//!
//! The checker reads every `crate::…` path (in `use` trees, grouped or not, and inline) and
//! every `super::…` path, ignoring comments and string literals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `http` modules that still reach `store` directly: (module, imported path prefix).
/// TODO: route these through `domain` (the use-case layer and the session driver); remove
/// each entry as it is fixed. The test fails on an entry that no longer matches.
const HTTP_STORE_EXCEPTIONS: &[(&str, &str)] = &[
    ("http::api::devices", "store::devices"),
    ("http::api::dto", "store::audit"),
    ("http::api::dto", "store::devices"),
    ("http::api::dto", "store::faults"),
    ("http::api::dto", "store::files"),
    ("http::api::dto", "store::search"),
    ("http::api::dto", "store::sessions"),
    ("http::api::dto", "store::tasks"),
    ("http::api::dto", "store::users"),
    ("http::api::files", "store::files"),
    ("http::console::device", "store::devices"),
    ("http::console::devices", "store::devices"),
    ("http::console::overview", "store::console"),
    ("http::console::view", "store::tasks"),
    ("http::cwmp::auth", "store::Store"),
    ("http::fileserver", "store::files"),
];

const ACTIX: &[&str] = &["actix_web", "actix_http", "actix_tls", "actix_rt"];
/// Crates that speak HTTP; the session driver uses none of them.
const HTTP_CRATES: &[&str] = &[
    "actix_web",
    "actix_http",
    "actix_tls",
    "actix_rt",
    "actix_service",
    "hyper",
    "hyper_util",
    "h2",
];
const RUNTIME_AND_SQL: &[&str] = &[
    "actix_web",
    "actix_http",
    "actix_tls",
    "actix_rt",
    "diesel",
    "diesel_migrations",
    "tokio",
    "tokio_rustls",
];

/// One import that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    module: String,
    import: String,
    rule: &'static str,
}

/// Removes comments, string and char literals (keeping line breaks), so that only code is
/// searched for paths.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                if b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + close.len();
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\'') or a lifetime ('a): skip only the former.
            let lit = match (b.get(i + 1), b.get(i + 2), b.get(i + 3)) {
                (Some(b'\\'), _, _) => b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p + 1),
                (Some(_), Some(b'\''), _) => Some(i + 3),
                _ => None,
            };
            match lit {
                Some(end) => {
                    out.push_str("' '");
                    i = end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            // Copy one whole UTF-8 character.
            let len = match c {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            out.push_str(std::str::from_utf8(&b[i..(i + len).min(b.len())]).unwrap_or(" "));
            i += len;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into full paths.
fn expand_use(tree: &str) -> Vec<String> {
    // One space between words (`d as e`), none around punctuation.
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut tree = words.join(" ");
    for p in ["::", "{", "}", ","] {
        tree = tree
            .replace(&format!(" {p}"), p)
            .replace(&format!("{p} "), p);
    }
    let mut out = Vec::new();
    expand_into("", &tree, &mut out);
    out
}

fn expand_into(prefix: &str, tree: &str, out: &mut Vec<String>) {
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_into(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_into(&base, &inner[start..], out);
    } else {
        let item = tree.split(" as ").next().unwrap_or(tree);
        if item.is_empty() {
            return;
        }
        if item == "self" {
            out.push(prefix.to_string());
        } else {
            out.push(join(prefix, item));
        }
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}::{b}"),
    }
}

/// Every path a module's code names: `use` trees expanded, inline `crate::`/`super::`
/// paths, and external crates by their first segment. `super::` is resolved against the
/// module's own path; results are crate-relative (`store::devices::DeviceRow`) or, for
/// other crates, start with `::` (`::actix_web::web`).
fn imports(module: &str, src: &str) -> BTreeSet<String> {
    let code = strip(src);
    let mut paths: Vec<String> = Vec::new();
    // `use` statements (also `pub use`, `pub(crate) use`).
    let mut rest = code.as_str();
    while let Some(pos) = rest.find("use ") {
        let before_ok = pos == 0 || !is_ident(rest[..pos].chars().last().unwrap_or(' '));
        let after = &rest[pos + 4..];
        if before_ok {
            if let Some(end) = after.find(';') {
                paths.extend(expand_use(&after[..end]));
            }
        }
        rest = after;
    }
    // Inline paths: any `ident::ident…` run.
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            let start = i;
            let mut j = i;
            loop {
                while j < chars.len() && is_ident(chars[j]) {
                    j += 1;
                }
                if j + 2 < chars.len()
                    && chars[j] == ':'
                    && chars[j + 1] == ':'
                    && is_ident(chars[j + 2])
                {
                    j += 2;
                } else {
                    break;
                }
            }
            let path: String = chars[start..j].iter().collect();
            if path.contains("::") {
                paths.push(path);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    let mut out = BTreeSet::new();
    for p in paths {
        if let Some(r) = resolve(module, &p) {
            out.insert(r);
        }
    }
    out
}

/// Crate-relative form of a path named in `module`, or `::crate_name…` for another crate.
/// `None` for paths that name neither (std, locals, enum variants, child modules).
fn resolve(module: &str, path: &str) -> Option<String> {
    let path = path.trim_start_matches("::");
    if let Some(r) = path.strip_prefix("crate::") {
        return Some(r.to_string());
    }
    if let Some(r) = path.strip_prefix("ferroacs::") {
        return Some(r.to_string());
    }
    if path.starts_with("super::") || path == "super" {
        let mut base: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        let mut rest = path;
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        let mut full = base.join("::");
        if rest != "super" {
            full = join(&full, rest);
        }
        return Some(full);
    }
    let first = path.split("::").next().unwrap_or(path);
    if RUNTIME_AND_SQL.contains(&first) || HTTP_CRATES.contains(&first) {
        return Some(format!("::{path}"));
    }
    None
}

fn top(path: &str) -> &str {
    path.split("::").next().unwrap_or(path)
}

fn within(module: &str, area: &str) -> bool {
    module == area || module.starts_with(&format!("{area}::"))
}

/// The rule an import of `module` breaks, if any.
fn rule(module: &str, import: &str) -> Option<&'static str> {
    let ext = import.strip_prefix("::").map(top);
    let target = top(import);
    let from = top(module);
    if ext.is_none() && target == "http" && !within(module, "http") && from != "app" {
        return Some("nothing imports http except app");
    }
    if within(module, "domain::driver") && ext.is_some_and(|e| HTTP_CRATES.contains(&e)) {
        return Some("the session driver knows no HTTP");
    }
    if from == "domain" && ext.is_some_and(|e| ACTIX.contains(&e)) {
        return Some("domain knows no actix");
    }
    if from == "store" && ext.is_none() && (target == "domain" || target == "state") {
        return Some("store never imports domain");
    }
    if from == "http" && ext.is_none() && target == "store" {
        return Some("http never reaches store (go through domain)");
    }
    if matches!(from, "cwmp" | "datamodel" | "auth")
        && ext.is_some_and(|e| RUNTIME_AND_SQL.contains(&e))
    {
        return Some("cwmp, datamodel and auth use no actix, diesel or tokio");
    }
    if (from == "phones" || from == "xmpp" || within(module, "tftp::codec"))
        && ext.is_some_and(|e| RUNTIME_AND_SQL.contains(&e))
    {
        return Some("phones, xmpp and tftp::codec use no actix, diesel or tokio");
    }
    None
}

/// Node of the module graph checked for cycles: the top-level module, or for `domain` and
/// `http` their direct submodules.
fn unit(path: &str) -> String {
    let segs: Vec<&str> = path.split("::").collect();
    match segs.as_slice() {
        ["domain" | "http", sub, ..] if sub.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
            format!("{}::{}", segs[0], sub)
        }
        [first, ..] => first.to_string(),
        [] => String::new(),
    }
}

/// All rule violations and import cycles among `modules` (module path → source).
fn check(modules: &BTreeMap<String, String>) -> Vec<Violation> {
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut out = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, src) in modules {
        for import in imports(module, src) {
            if let Some(rule) = rule(module, &import) {
                out.push(Violation {
                    module: module.clone(),
                    import: import.clone(),
                    rule,
                });
            }
            if import.starts_with("::") {
                continue;
            }
            // Longest known module the path names (an item path ends in a module).
            let segs: Vec<&str> = import.split("::").collect();
            let target = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].join("::"))
                .find(|m| known.contains(m));
            if let Some(target) = target {
                let (a, b) = (unit(module), unit(&target));
                // A module and its own submodules are one unit; the root (`lib`) only
                // declares modules.
                if a != b && !a.is_empty() && !b.is_empty() && !b.starts_with(&format!("{a}::")) {
                    edges.entry(a).or_default().insert(b);
                }
            }
        }
    }
    for cycle in cycles(&edges) {
        out.push(Violation {
            module: cycle.join(" → "),
            import: String::new(),
            rule: "import cycle",
        });
    }
    out.sort();
    out.dedup();
    out
}

/// Cycles of the graph, each as the path that closes it (first node repeated at the end).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut seen_sets = BTreeSet::new();
    for start in edges.keys() {
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut visited = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let set: BTreeSet<String> = path.iter().cloned().collect();
                    if seen_sets.insert(set) {
                        let mut c = path.clone();
                        c.push(start.clone());
                        found.push(c);
                    }
                } else if visited.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    found
}

fn module_path(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn server_modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let module = module_path(&root, &f);
        if module == "main" || module.starts_with("bin::") {
            continue;
        }
        let src = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        out.insert(module, src);
    }
    out
}

fn modules(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(m, s)| (m.to_string(), s.to_string()))
        .collect()
}

#[test]
fn the_server_modules_keep_their_layers() {
    let modules = server_modules();
    assert!(
        modules.contains_key("http::api")
            && modules.contains_key("domain::session")
            && modules.contains_key("domain::driver"),
        "the source tree was not found"
    );
    let violations = check(&modules);
    let mut used = BTreeSet::new();
    let mut left = Vec::new();
    for v in &violations {
        let allowed = HTTP_STORE_EXCEPTIONS.iter().find(|(m, p)| {
            v.rule.starts_with("http never reaches store")
                && v.module == *m
                && (v.import == *p || v.import.starts_with(&format!("{p}::")))
        });
        match allowed {
            Some(e) => {
                used.insert(*e);
            }
            None => left.push(v),
        }
    }
    assert!(
        left.is_empty(),
        "forbidden imports (see tests/layering.rs and ARCHITECTURE.md):\n{}",
        left.iter()
            .map(|v| format!("  {}: {} ({})", v.module, v.import, v.rule))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stale: Vec<_> = HTTP_STORE_EXCEPTIONS
        .iter()
        .filter(|e| !used.contains(*e))
        .collect();
    assert!(
        stale.is_empty(),
        "these exceptions no longer occur; remove them from HTTP_STORE_EXCEPTIONS: {stale:?}"
    );
}

#[test]
fn the_protocol_crates_have_no_runtime_database_socket_or_clock() {
    for (krate, min_files) in [("crates/cwmp", 6), ("crates/stun", 1)] {
        protocol_crate_is_pure(krate, min_files);
    }
}

fn protocol_crate_is_pure(krate: &str, min_files: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(krate);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("a [dependencies] table");
    for line in deps.lines().map(str::trim) {
        let name = line.split(['=', ' ', '.']).next().unwrap_or("");
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        assert!(
            !RUNTIME_AND_SQL.contains(&name.replace('-', "_").as_str())
                && !["chrono", "time", "actix", "hyper", "ferroacs"].contains(&name),
            "{krate} must not depend on {name}"
        );
    }
    let mut files = Vec::new();
    rust_files(&dir.join("src"), &mut files);
    assert!(files.len() >= min_files);
    for f in files {
        let code = strip(&std::fs::read_to_string(&f).expect("readable"));
        for clock in [
            "SystemTime",
            "Instant::now",
            "chrono::",
            "std::time::",
            "UdpSocket",
            "TcpStream",
        ] {
            assert!(
                !code.contains(clock),
                "{} reads a clock or does I/O ({clock}): pass timestamps and bytes in",
                f.display()
            );
        }
    }
}

#[test]
fn the_checker_catches_planted_violations() {
    let planted = modules(&[
        ("lib", "pub mod http; pub mod domain; pub mod store;"),
        ("app", "use crate::http::build_servers;"),
        ("http", "pub fn build_servers() {}"),
        (
            "http::api::things",
            "use crate::{domain::things, store::{self, Store}};\n\
             // use crate::store::comment_is_ignored;\n\
             fn f() { let s = \"crate::store::string_is_ignored\"; crate::store::now_ms(); }",
        ),
        (
            "domain::things",
            "use actix_web::HttpResponse;\nuse super::other::X;\n\
             pub fn g() { crate::http::build_servers() }",
        ),
        (
            "domain::other",
            "use crate::domain::things::g;\nuse crate::store::Store;\npub struct X;",
        ),
        (
            "domain::driver",
            "use actix_web::HttpResponse;\nfn f() { hyper::Request::builder(); }",
        ),
        ("store", "pub struct Store; pub fn now_ms() {}"),
        ("store::devices", "use crate::domain::other::X;"),
        (
            "datamodel",
            "async fn f() { tokio::task::yield_now().await }",
        ),
        ("auth", "use diesel::prelude::*;"),
        ("cwmp::x", "use tokio::sync::Mutex;"),
        ("phones::yealink", "use tokio::net::UdpSocket;"),
        ("tftp::codec", "use tokio::net::UdpSocket;"),
        ("xmpp::codec", "use tokio::net::TcpStream;"),
        ("cli", "use crate::http::api;"),
    ]);
    let found: BTreeSet<(String, String, &str)> = check(&planted)
        .into_iter()
        .map(|v| (v.module, v.import, v.rule))
        .collect();
    let expect = |m: &str, i: &str, r: &'static str| {
        assert!(
            found.contains(&(m.to_string(), i.to_string(), r)),
            "not caught: {m} → {i} ({r}); found {found:#?}"
        );
    };
    expect(
        "http::api::things",
        "store",
        "http never reaches store (go through domain)",
    );
    expect(
        "http::api::things",
        "store::Store",
        "http never reaches store (go through domain)",
    );
    expect(
        "http::api::things",
        "store::now_ms",
        "http never reaches store (go through domain)",
    );
    expect(
        "domain::things",
        "::actix_web::HttpResponse",
        "domain knows no actix",
    );
    expect(
        "domain::things",
        "http::build_servers",
        "nothing imports http except app",
    );
    expect(
        "domain::driver",
        "::actix_web::HttpResponse",
        "the session driver knows no HTTP",
    );
    expect(
        "domain::driver",
        "::hyper::Request::builder",
        "the session driver knows no HTTP",
    );
    expect(
        "store::devices",
        "domain::other::X",
        "store never imports domain",
    );
    expect("cli", "http::api", "nothing imports http except app");
    let pure = "cwmp, datamodel and auth use no actix, diesel or tokio";
    expect("datamodel", "::tokio::task::yield_now", pure);
    expect("auth", "::diesel::prelude", pure);
    let pure_phones = "phones, xmpp and tftp::codec use no actix, diesel or tokio";
    expect("phones::yealink", "::tokio::net::UdpSocket", pure_phones);
    expect("xmpp::codec", "::tokio::net::TcpStream", pure_phones);
    expect("tftp::codec", "::tokio::net::UdpSocket", pure_phones);
    expect("cwmp::x", "::tokio::sync::Mutex", pure);
    // domain::things ↔ domain::other, and domain → store → domain.
    let cycles: Vec<&String> = found
        .iter()
        .filter(|(_, _, r)| *r == "import cycle")
        .map(|(m, _, _)| m)
        .collect();
    assert!(
        cycles
            .iter()
            .any(|c| c.contains("domain::other") && c.contains("domain::things")),
        "cycle not caught: {cycles:?}"
    );
    assert!(
        cycles.iter().any(|c| c.contains("store")),
        "cycle not caught: {cycles:?}"
    );
    // Comments and strings are not imports; allowed arrows are not reported.
    assert!(!found.iter().any(|(_, i, _)| i.contains("is_ignored")));
    assert!(!found.iter().any(|(m, _, _)| m == "app"));
    assert!(!found.iter().any(|(m, i, r)| m == "http::api::things"
        && i.starts_with("domain")
        && *r != "import cycle"));
}

#[test]
fn use_trees_expand_to_full_paths() {
    assert_eq!(
        expand_use("crate::{a::{self, B}, c::d as e, f}"),
        ["crate::a", "crate::a::B", "crate::c::d", "crate::f"]
    );
    assert_eq!(
        imports(
            "http::cwmp::auth",
            "use super::body::read; use super::super::error::X;"
        ),
        ["http::cwmp::body::read", "http::error::X"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
