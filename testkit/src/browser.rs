//! Headless Chromium (Debian's `chromium` package) for the page tests: [`dump_dom`] loads a URL
//! with a fresh profile and no background networking and returns the DOM after scripts ran;
//! [`Browser`] drives a page over the DevTools protocol as a user would: navigate, type and
//! press keys (keyboard only, when a test wants to prove the page needs no pointer), click,
//! read the DOM, take screenshots, and run the axe-core accessibility checker inside the page
//! ([`Browser::accessibility_violations`]; `scripts/test` installs axe-core from
//! `testkit/axe/package-lock.json`).

use std::time::Duration;

/// Headless, with a fresh profile, no sandbox (tests may run as root) and no background
/// networking.
const HEADLESS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// The DOM of `url` as Chromium renders it, with the process output for failure messages.
pub async fn dump_dom(url: &str) -> (String, std::process::Output) {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args(HEADLESS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium did not finish within 90 s")
        .expect("chromium (Debian package) is needed; scripts/test installs it");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out)
}

/// Headless Chromium driven over the DevTools protocol (its WebSocket on loopback): a page
/// that a test navigates, fills in and clicks through as a user would, reading the DOM with
/// JavaScript. The browser is killed when this is dropped.
pub struct Browser {
    child: tokio::process::Child,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Browser {
    /// Starts Chromium with a fresh profile and opens one blank page of `width` x `height`
    /// CSS pixels.
    pub async fn launch(width: u32, height: u32) -> Self {
        Self::launch_with(width, height, &[]).await
    }

    /// [`Browser::launch`] with more command-line switches (`--ignore-certificate-errors`
    /// for a server whose certificate a test's own CA signed).
    pub async fn launch_with(width: u32, height: u32, switches: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new("chromium")
            .args(HEADLESS)
            .args(switches)
            .args([
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium (Debian package) is needed; scripts/test installs it");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(at) = line.find("ws://") {
                    return line[at..].trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools address");
        })
        .await
        .expect("chromium printed no DevTools address within 60 s");
        // Keep reading its log so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let mut b = Self {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = b
            .call(
                "Target.createTarget",
                serde_json::json!({"url": "about:blank"}),
            )
            .await;
        let attached = b
            .call(
                "Target.attachToTarget",
                serde_json::json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b.call("Page.enable", serde_json::json!({})).await;
        b.call("Network.enable", serde_json::json!({})).await;
        b.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
        b
    }

    /// One protocol call on the page (the browser itself before a page is attached); its
    /// `result`. Events in between are skipped; an error answer fails the test.
    pub async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use futures::{SinkExt, StreamExt};
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                message.to_string().into(),
            ))
            .await
            .unwrap();
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            loop {
                let frame = self.ws.next().await.expect("DevTools closed").unwrap();
                let Ok(text) = frame.to_text() else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
                    continue;
                };
                if v["id"] == id {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method}: no answer within {CALL_TIMEOUT:?}"));
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Sends `headers` with every request of the page (an `Authorization` header, say).
    pub async fn set_headers(&mut self, headers: serde_json::Value) {
        self.call(
            "Network.setExtraHTTPHeaders",
            serde_json::json!({ "headers": headers }),
        )
        .await;
    }

    /// The value of JavaScript `expression` on the page (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> serde_json::Value {
        let r = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits until `condition` (JavaScript) is true on the page, polling for up to 30 s.
    pub async fn wait_for(&mut self, condition: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let probe = format!(
            "(() => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }})()"
        );
        while self.eval(&probe).await != serde_json::Value::Bool(true) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not true within 30 s: {condition}\n{}",
                self.eval("document.documentElement.outerHTML").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens `url` and waits until its document has loaded.
    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", serde_json::json!({ "url": url }))
            .await;
        let target = serde_json::to_string(url).unwrap();
        self.wait_for(&format!(
            "location.href === {target} && document.readyState === 'complete'"
        ))
        .await;
    }
}

/// Where `scripts/test` (npm ci in `testkit/axe`) puts the axe-core checker.
pub fn axe_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("axe/node_modules/axe-core/axe.min.js")
}

impl Browser {
    /// Types `text` into the focused element, as a keyboard would (input events fire).
    pub async fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", serde_json::json!({ "text": text }))
            .await;
    }

    /// Presses and releases one key: `Tab`, `Enter`, `Space` (its DOM `key` and `code`; Tab
    /// with `shift` goes backwards).
    pub async fn press(&mut self, key: &str, shift: bool) {
        let (key_name, code, vk, text) = match key {
            "Tab" => ("Tab", "Tab", 9, ""),
            "Enter" => ("Enter", "Enter", 13, "\r"),
            "Space" => (" ", "Space", 32, " "),
            other => panic!("no key mapping for {other}"),
        };
        let modifiers = if shift { 8 } else { 0 };
        let mut down = serde_json::json!({
            "type": "keyDown", "key": key_name, "code": code,
            "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk, "modifiers": modifiers,
        });
        if !text.is_empty() {
            down["text"] = text.into();
        }
        self.call("Input.dispatchKeyEvent", down).await;
        self.call(
            "Input.dispatchKeyEvent",
            serde_json::json!({
                "type": "keyUp", "key": key_name, "code": code,
                "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk, "modifiers": modifiers,
            }),
        )
        .await;
    }

    /// Presses Tab until the focused element matches CSS `selector` (at most 40 presses):
    /// the element is reachable from the keyboard, in the page's tab order.
    pub async fn tab_to(&mut self, selector: &str) {
        let probe = format!(
            "document.activeElement && document.activeElement.matches({})",
            serde_json::to_string(selector).unwrap()
        );
        for _ in 0..40 {
            if self.eval(&probe).await == serde_json::Value::Bool(true) {
                return;
            }
            self.press("Tab", false).await;
        }
        panic!(
            "{selector} is not reachable with the Tab key\n{}",
            self.eval("document.documentElement.outerHTML").await
        );
    }

    /// A PNG screenshot of the viewport, written to `path`.
    pub async fn screenshot(&mut self, path: &std::path::Path) {
        use base64::Engine as _;
        let shot = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({ "format": "png" }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Runs axe-core (WCAG 2.1 A and AA rules) on the current page; each violation as
    /// `rule-id: help (target selectors)`. Panics when axe-core is not installed, naming the
    /// command that installs it.
    pub async fn accessibility_violations(&mut self) -> Vec<String> {
        let path = axe_script();
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; install it with (cd testkit/axe && npm ci), which scripts/test does",
                path.display()
            )
        });
        // DevTools evaluation is not subject to the page's Content-Security-Policy.
        self.eval(&format!("{source};true")).await;
        let result = self
            .eval(
                "axe.run(document, { runOnly: { type: 'tag', values: \
                 ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }).then(r => \
                 r.violations.map(v => v.id + ': ' + v.help + ' (' + \
                 v.nodes.map(n => n.target.join(' ')).join(', ') + ')'))",
            )
            .await;
        result
            .as_array()
            .expect("axe answers a list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
