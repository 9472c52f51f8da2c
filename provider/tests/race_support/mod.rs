//! Two provider instances on one PostgreSQL database of their own, and what they race on:
//! reading batches, heartbeats, statuses and alert conditions built for the races.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tm_protocol::{
    Backlog, BatchId, ClockState, DiskUse, GatewayId, Heartbeat, LinkState, Reading, ReadingBatch,
    SigningKey, Status, TimeQuality,
};
use tm_provider::store::alerts::{AlertKind, Condition};
use tm_provider::store::readings::{BatchJob, Stored};
use tm_provider::store::settings::PostgresSettings;
use tm_provider::store::{Database as StoreDatabase, Store};
use tm_testkit::backend::TestStore;
use tm_testkit::postgres::Database;

use super::fixtures;

/// A fresh database and two stores connected to it, as two provider instances.
pub async fn two_instances(label: &str) -> (TestStore, Store, Store) {
    let db = TestStore::Postgres(Arc::new(Database::create(label)));
    let TestStore::Postgres(database) = &db else {
        unreachable!()
    };
    let setting = StoreDatabase::Postgres(
        PostgresSettings::new(
            format!("{}?sslmode=disable", database.url()),
            Some(database.password_file()),
            None,
            Some(8),
        )
        .unwrap(),
    );
    let a = Store::connect(&setting).await.unwrap();
    let b = Store::connect(&setting).await.unwrap();
    (db, a, b)
}

/// Registers gateway `gateway` on a new accepted session `session`.
pub fn enroll(db: &TestStore, gateway: &str, session: &str) -> GatewayId {
    db.insert_session(&tm_testkit::store::Session::accepted(session));
    let (key, _) = SigningKey::generate().unwrap();
    db.insert_gateway(gateway, key.verifying_key().as_bytes(), session);
    GatewayId::new(gateway).unwrap()
}

/// A minute ago: when the weighings were made (part of their ids, so fixed for a test).
pub fn a_minute_ago() -> DateTime<Utc> {
    Utc::now() - Duration::minutes(1)
}

/// Weighings `first..first + n` made `at`, each its own reading (its own frame).
pub fn weighings(at: DateTime<Utc>, first: u32, n: u32) -> Vec<Reading> {
    let at = at.with_timezone(&fixtures::cest());
    (first..first + n)
        .map(|i| {
            fixtures::reading(
                "2A9D",
                &fixtures::weight_frame(60_000 + i * 10),
                fixtures::scale(),
                at,
                TimeQuality::NoDeviceTime,
            )
        })
        .collect()
}

pub fn job(gateway: &GatewayId, session: &str, batch: &str, readings: Vec<Reading>) -> BatchJob {
    BatchJob::encoded(
        gateway.clone(),
        session.to_owned(),
        ReadingBatch {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: gateway.clone(),
            batch_id: BatchId::new(batch).unwrap(),
            created_at: Utc::now(),
            readings,
        },
    )
}

/// Commits `job` on `store` (one batch, its own group commit) and returns what it stored.
pub async fn commit(store: &Store, job: BatchJob) -> Stored {
    let mut outcomes = store.commit_reading_batches(vec![job]).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0).unwrap()
}

pub fn ids(readings: &[Reading]) -> Vec<String> {
    readings
        .iter()
        .map(|r| r.reading_id.as_str().to_owned())
        .collect()
}

pub fn id_strings(ids: &[tm_protocol::ReadingId]) -> Vec<String> {
    ids.iter().map(|r| r.as_str().to_owned()).collect()
}

pub fn heartbeat(gateway: &GatewayId, sent_at: DateTime<Utc>, depth: u64) -> Heartbeat {
    Heartbeat {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gateway.clone(),
        sent_at,
        version: "0.1.0".into(),
        uptime_s: 3600,
        backlog: Backlog {
            depth,
            oldest_age_s: None,
            rejected: 0,
        },
        devices_unreadable: false,
        devices: vec![],
        clock: ClockState::Synchronized,
        disk: DiskUse {
            used_bytes: 10 << 20,
            quota_bytes: 100 << 20,
        },
        last_error: None,
        setup: None,
    }
}

pub fn status(gateway: &GatewayId, state: LinkState, connection: u64) -> Status {
    Status {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gateway.clone(),
        state,
        connection,
    }
}

pub fn condition(subject: &str) -> Condition {
    Condition {
        kind: AlertKind::BacklogStale,
        subject: subject.to_owned(),
        gateway_id: None,
        telemonitoring_id: None,
        detail: "raced".into(),
    }
}
