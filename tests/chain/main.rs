//! The whole chain with the shipped binaries, each its own process on loopback:
//! `tm-sim-hub` (Portal, HUB and EHR), `tm-provider serve` (SQLite file), `tm-sim-bluez`
//! (the demo household: scale, BP cuff, pulse oximeter on a private D-Bus), `tm-gateway`
//! (`enroll`, `scan`, `pair`, `devices`, `run`, `status`, `doctor`) and, for MQTT, a mosquitto
//! with its own configuration on an ephemeral port.
//!
//! TLS is where a deployment has it, with a certificate authority the test makes
//! (`tm_testkit::pki`): the provider serves HTTPS itself (`[tls]`,
//! `public_url = "https://..."`); the gateway trusts it through `[sync] ca_file` for every
//! command, the emulator (`--ca-file`) for the Portal's calls and the EHR's downloads, the
//! test's own client likewise. Over MQTT the gateway connects to the broker's TLS listener
//! (`mqtts://`, same `ca_file`) while the provider subscribes on a plain listener bound to
//! loopback.
//!
//! The story, once over HTTPS ingest and once through the broker: prescription at the Portal
//! -> the provider answers with the enrollment page -> one-time code -> `tm-gateway enroll`
//! -> scan and pair the household -> `tm-gateway run` syncing the devices' records and a
//! simulated stream -> session in-progress, its attachments downloaded and verified by the
//! EHR -> mid-stream the gateway is SIGKILLed and started again, then the provider is stopped
//! (SIGKILL over HTTPS, SIGTERM over MQTT) and started again on the same database and port ->
//! stop from the Portal -> completed, final attachments verified. At the end every reading is
//! at the provider exactly once, the gateway's backlog is empty, the final FHIR Bundle charts
//! every reading and the emulator recorded no violation.
//!
//! - [`procs`]: locating (and building) the binaries, child processes with logs;
//! - the test's CA, the server certificate for 127.0.0.1, the broker, ports and bounded waits
//!   are those of every other test (`tm_testkit`);
//! - [`configs`]: the processes' configuration files;
//! - [`stack`]: starting the chain and talking to each part ([`web`]: its HTTP client);
//! - [`story`]: the steps and the checks;
//! - [`readme`]: the README's command examples, run as written with the same binaries;
//! - [`setup`]: the nurse's setup from her phone, in headless Chromium.
//!
//! The same story runs on two instances of the provider sharing one PostgreSQL database behind
//! a load balancer (`tm_testkit::balancer`), the broker's shared subscription splitting MQTT
//! ingest: mid-stream one instance is SIGKILLed and started again, and at the stop the
//! instance delivering the HUB outbox is SIGKILLed while the HUB answers 503; the other must
//! take the outbox over within 10 s, and every status reaches the HUB once, in order.
//!
//! The tests run one after the other (2-core CI). A failing test prints the tail of every
//! process's log and keeps its directory (databases, configurations, logs).

mod configs;
mod procs;
mod readme;
mod setup;
mod stack;
mod story;
mod web;

use std::sync::{Mutex, PoisonError};

use stack::{Stop, Topology, Transport};

static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn over_https_every_reading_reaches_the_ehr_once_across_restarts() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    story::play(Transport::Https, Stop::Kill, Topology::One);
}

#[test]
fn over_mqtt_every_reading_reaches_the_ehr_once_across_restarts() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    story::play(Transport::Mqtt, Stop::Term, Topology::One);
}

#[test]
fn two_instances_on_postgresql_over_https_lose_nothing_when_one_dies() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    story::play(Transport::Https, Stop::Kill, Topology::TwoOnPostgres);
}

#[test]
fn two_instances_on_postgresql_over_mqtt_lose_nothing_when_one_dies() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    story::play(Transport::Mqtt, Stop::Kill, Topology::TwoOnPostgres);
}

#[test]
fn over_https_the_nurse_sets_the_home_up_from_her_phone() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    setup::play(Transport::Https);
}

#[test]
fn over_mqtt_the_nurse_sets_the_home_up_from_her_phone() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    setup::play(Transport::Mqtt);
}
