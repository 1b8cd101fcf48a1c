//! A small W3C WebDriver client over reqwest, driving Debian's headless Chromium through
//! its own chromedriver (one per test, on a free port, with a fresh profile directory).
//! Enough for the console tests: navigate, find, click, type, read text, run a script,
//! take screenshots (saved under `target/console-screenshots/`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The element reference of a WebDriver answer (`{"element-6066-…": "<id>"}`).
fn element_of(v: &Value) -> Option<Element> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("element-"))
        .and_then(|(_, id)| id.as_str())
        .map(|s| Element(s.to_string()))
}

/// How long waits for the page to reach a state last before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    /// Screenshots go to `target/console-screenshots/<prefix>-<name>.png`.
    prefix: String,
}

#[derive(Clone, Debug)]
pub struct Element(String);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
}

impl Browser {
    /// Start chromedriver and a headless Chromium session 1600×1000.
    pub async fn start(prefix: &str) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromedriver is needed for the console tests (apt-get install chromium chromium-driver; scripts/test installs them): {e}")
            });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        super::wait_until(WAIT, "chromedriver starts", || async {
            let r = http.get(format!("{base}/status")).send().await;
            let v = match r {
                Ok(r) => r.json::<Value>().await.map_err(|e| e.to_string())?,
                Err(e) => return Err(e.to_string()),
            };
            if v["value"]["ready"] == true {
                Ok(())
            } else {
                Err(v.to_string())
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1600,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {res}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
            prefix: prefix.to_string(),
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut rb = self.http.request(method, &url);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let v: Value = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element matching a CSS selector now, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        element_of(&v)
    }

    /// Wait for an element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("missing-{}", sanitize(css))).await;
                panic!(
                    "no element {css} on {} within {WAIT:?}; page text: {}",
                    self.url().await,
                    self.body_text().await
                );
            }
            // A bounded wait on the element (not `wait_until`: a timeout takes a screenshot).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        v.as_array()
            .map(|a| a.iter().filter_map(element_of).collect())
            .unwrap_or_default()
    }

    pub async fn click(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn click_css(&self, css: &str) {
        let e = self.find(css).await;
        self.click(&e).await;
    }

    pub async fn clear(&self, e: &Element) {
        self.post(&format!("/element/{}/clear", e.0), json!({}))
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.clear(&e).await;
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text }))
            .await;
    }

    /// Type into an element without clearing it first (also sets a file input's path).
    pub async fn send_keys(&self, e: &Element, text: &str) {
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text }))
            .await;
    }

    pub async fn text(&self, e: &Element) -> String {
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{}/text", e.0),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn value(&self, e: &Element) -> String {
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{}/property/value", e.0),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn body_text(&self) -> String {
        match self.try_find("body").await {
            Some(b) => self.text(&b).await,
            None => String::new(),
        }
    }

    /// Wait until the text of the element matching `css` contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.try_find(css).await {
                let t = self.text(&e).await;
                if t.contains(needle) {
                    return t;
                }
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("timeout-{}", sanitize(css))).await;
                panic!(
                    "{css} never contained {needle:?} on {}; page text: {}",
                    self.url().await,
                    self.body_text().await
                );
            }
            // A bounded wait on the text (not `wait_until`: a timeout takes a screenshot).
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Run a script in the page and return its result.
    pub async fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Run an asynchronous script (its last argument is the callback).
    pub async fn exec_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    /// Save a screenshot as `target/console-screenshots/<prefix>-<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn cookies(&self) -> Value {
        self.cmd(reqwest::Method::GET, "/cookie", None).await
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        // Best effort: end the browser, then the driver.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let _ = reqwest::Client::new().delete(url).send().await;
                });
            }
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
