//! Loopback ports, and the form encoding of a test's requests.

use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 10 s) until 127.0.0.1:`port` accepts a TCP connection; panics otherwise.
pub fn wait_for_port(port: u16) {
    wait_for_port_within(port, Duration::from_secs(10));
}

/// Waits (up to `limit`) until 127.0.0.1:`port` accepts a TCP connection; panics otherwise.
pub fn wait_for_port_within(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value, as a browser sends a
/// form.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
