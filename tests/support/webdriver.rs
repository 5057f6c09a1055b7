//! A minimal W3C WebDriver client for the browser tests: starts `chromedriver` on a free
//! port, opens a headless Chromium session, and offers the few commands the tests use
//! (navigate, find, type, click, run a script, screenshot). The driver process is killed
//! when the [`Browser`] is dropped.
//!
//! Chromium and its driver come from the system (`apt-get install chromium
//! chromium-driver`); `TOLLGATE_CHROMIUM` and `TOLLGATE_CHROMEDRIVER` override the paths.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Chromium and chromedriver are, or why they cannot be used.
pub fn locate() -> Result<(PathBuf, PathBuf), String> {
    let find = |env: &str, default: &str| {
        let p = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_string()));
        p.exists().then_some(p)
    };
    match (
        find("TOLLGATE_CHROMIUM", "/usr/bin/chromium"),
        find("TOLLGATE_CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) {
        (Some(c), Some(d)) => Ok((c, d)),
        _ => Err(
            "The browser test needs Chromium and chromedriver: install them with \
                  `apt-get install -y chromium chromium-driver` (or point TOLLGATE_CHROMIUM \
                  and TOLLGATE_CHROMEDRIVER at them). Set TOLLGATE_SKIP_BROWSER=1 to skip \
                  this test."
                .to_string(),
        ),
    }
}

/// A headless Chromium session driven through chromedriver.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver and a headless session with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Result<Browser, String> {
        let (chromium, driver_path) = locate()?;
        let port = super::redis::free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", driver_path.display()))?;
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = b.http.get(format!("{}/status", b.base)).send().await;
            if let Ok(r) = ready {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if v["value"]["ready"] == true {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err("chromedriver did not become ready within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let v = b.call("POST", "/session", caps).await?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {v}"))?
            .to_string();
        Ok(b)
    }

    /// One WebDriver command; returns its `value`, or the driver's error.
    async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let r = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = r.status();
        let v: Value = r
            .json()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    async fn session_call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body).await
    }

    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.session_call("POST", "/url", json!({"url": url}))
            .await
            .map(|_| ())
    }

    /// The first element matching `css`.
    pub async fn find(&self, css: &str) -> Result<String, String> {
        let v = self
            .session_call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        v[ELEMENT]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("no element id for {css}: {v}"))
    }

    pub async fn type_into(&self, css: &str, text: &str) -> Result<(), String> {
        let id = self.find(css).await?;
        let path = format!("/element/{id}/value");
        self.session_call("POST", &path, json!({"text": text}))
            .await
            .map(|_| ())
    }

    pub async fn click(&self, css: &str) -> Result<(), String> {
        let id = self.find(css).await?;
        let path = format!("/element/{id}/click");
        self.session_call("POST", &path, json!({}))
            .await
            .map(|_| ())
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub async fn eval(&self, script: &str) -> Result<Value, String> {
        self.session_call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Polls `script` until it returns `true`.
    pub async fn wait_for(&self, script: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(script).await? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for: {script}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        let v = self.session_call("GET", "/screenshot", Value::Null).await?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .map_err(|e| format!("screenshot: {e}"))
    }

    /// Ends the session (the driver is killed on drop).
    pub async fn quit(mut self) {
        let _ = self.session_call("DELETE", "", Value::Null).await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
