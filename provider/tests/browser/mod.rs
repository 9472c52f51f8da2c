//! Headless Chromium (Debian's `chromium` package) for the page tests: loads a URL with a fresh
//! profile and no background networking, and returns the DOM after scripts ran.

use std::time::Duration;

/// The DOM of `url` as Chromium renders it, with the process output for failure messages.
pub async fn dump_dom(url: &str) -> (String, std::process::Output) {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ])
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
