//! Test support for the workspace's integration tests and examples. It is a dev-dependency
//! only: no shipped crate (`tm-gateway`, `tm-provider`) depends on it, and it depends on none of
//! the product's crates, so the provider's own tests can use it without a second copy of the
//! provider in their build.
//!
//! What is here, and the rules it keeps:
//!
//! - [`net`]: ephemeral ports on 127.0.0.1 ([`net::free_port`]) and a bounded wait until one
//!   accepts connections ([`net::wait_for_port`]). Everything a test serves listens on loopback
//!   only, so nothing is reachable from the network, and on a port the kernel handed out, so
//!   tests run in parallel and next to whatever else the machine runs.
//! - [`mosquitto`]: a broker the test starts with its own configuration file in the test's
//!   directory, on ephemeral loopback ports (plain, TLS, or both; client certificates when
//!   asked), never the machine's broker or its configuration.
//! - [`pki`]: a certificate authority made on the spot with rcgen (ring backend, like the rest
//!   of the TLS stack), server certificates for `localhost` and 127.0.0.1, client certificates,
//!   PEM files with private keys mode 0600 (what the product demands of its key files), and an
//!   HTTPS client trusting only that CA.
//! - [`process`]: a child process killed (SIGKILL, by its own PID) when dropped, also when a
//!   test fails, and signals to that PID. A process is only ever stopped by the PID the test
//!   spawned, never by name: another test's process, or the machine's, is never touched.
//! - [`wait`]: polling with a deadline. Every wait is bounded: a condition that never holds
//!   fails the test, naming what it waited for, instead of hanging the suite.
//! - [`postgres`]: a fresh database per test binary, on the server `scripts/test` started
//!   (`TM_TEST_PG_URL`) or on a private cluster started on the spot (initdb in its own
//!   directory, an ephemeral loopback port, an unprivileged user), dropped afterwards.
//! - [`balancer`]: a TCP load balancer on loopback in front of several instances of a server
//!   (round robin, dead backends skipped, TLS passed through).
//! - [`browser`]: headless Chromium driven over the DevTools protocol, with the axe-core
//!   accessibility check run inside the page.
//! - [`backend`]: the store a provider test runs on (`TM_TEST_STORE=postgres` or SQLite), its
//!   `[database]` setting, and queries both backends answer.
//! - [`store`]: rows of the provider's SQLite store that tests write or read directly (a
//!   session, a gateway's MQTT status), on a `rusqlite::Connection`; the provider's own
//!   functions write everything else.

pub mod backend;
pub mod balancer;
pub mod browser;
pub mod mosquitto;
pub mod net;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod store;
pub mod wait;
