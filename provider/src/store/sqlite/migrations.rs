//! The SQLite schema: its migrations and the runner that applies them at open.

use rusqlite::Connection;

/// Schema migrations, applied in order. Index + 1 is the migration's version.
pub const MIGRATIONS: &[&str] = &[
    // 1: prescriptions/sessions and enrolled gateways (shared by portal, enrollment, ingest).
    r#"
    CREATE TABLE sessions (
        telemonitoring_id TEXT PRIMARY KEY,
        patient_id        TEXT NOT NULL,
        prescriber_id     TEXT NOT NULL,
        status            TEXT NOT NULL,
        carepath_id       TEXT,
        carepath_version  TEXT,
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL
    );
    CREATE TABLE gateways (
        gateway_id        TEXT PRIMARY KEY,
        public_key        BLOB NOT NULL UNIQUE,
        telemonitoring_id TEXT REFERENCES sessions(telemonitoring_id),
        state             TEXT NOT NULL,
        enrolled_at       TEXT NOT NULL,
        revoked_at        TEXT
    );
    CREATE INDEX gateways_session ON gateways(telemonitoring_id);
    "#,
    // 2: Portal prescriptions (declared patient fields only), enrollment codes, HUB outbox.
    r#"
    CREATE TABLE prescriptions (
        telemonitoring_id TEXT PRIMARY KEY REFERENCES sessions(telemonitoring_id),
        patient_fields    TEXT NOT NULL,
        page_token        TEXT NOT NULL UNIQUE
    );
    CREATE TABLE enrollment_codes (
        code_digest       TEXT PRIMARY KEY,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        carepath_id       TEXT NOT NULL,
        carepath_version  TEXT NOT NULL,
        issued_at_ms      INTEGER NOT NULL,
        expires_at_ms     INTEGER NOT NULL,
        used_at_ms        INTEGER
    );
    CREATE INDEX enrollment_codes_session ON enrollment_codes(telemonitoring_id, issued_at_ms);
    CREATE TABLE hub_outbox (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        telemonitoring_id TEXT NOT NULL,
        body              TEXT NOT NULL,
        state             INTEGER NOT NULL DEFAULT 0,
        attempts          INTEGER NOT NULL DEFAULT 0,
        last_error        TEXT,
        created_at        TEXT NOT NULL,
        done_at           TEXT
    );
    CREATE INDEX hub_outbox_pending ON hub_outbox(state, seq);
    "#,
    // 3: ingested readings (one row per reading_id: de-duplication) and the latest heartbeat of
    // each gateway.
    r#"
    CREATE TABLE readings (
        reading_id        TEXT PRIMARY KEY,
        gateway_id        TEXT NOT NULL,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        batch_id          TEXT NOT NULL,
        kind              TEXT NOT NULL,
        effective_time    TEXT NOT NULL,
        received_at       TEXT NOT NULL,
        ingested_at       TEXT NOT NULL,
        payload           TEXT NOT NULL
    );
    CREATE INDEX readings_session_time ON readings(telemonitoring_id, effective_time);
    CREATE TABLE gateway_heartbeats (
        gateway_id  TEXT PRIMARY KEY,
        received_at TEXT NOT NULL,
        payload     TEXT NOT NULL
    );
    "#,
    // 4: the published snapshot of each session's outputs (what the HUB announced and the
    // attachment routes serve).
    r#"
    CREATE TABLE session_outputs (
        telemonitoring_id TEXT PRIMARY KEY REFERENCES sessions(telemonitoring_id),
        published_through INTEGER NOT NULL,
        published_at      TEXT NOT NULL,
        period_start      TEXT NOT NULL,
        period_end        TEXT
    );
    "#,
    // 5: fleet operations: per-gateway health beyond the latest heartbeat, per-device health,
    // alerts (one open row per condition), the append-only audit log, remote commands.
    r#"
    CREATE TABLE ops_gateway_health (
        gateway_id            TEXT PRIMARY KEY,
        heartbeats_total      INTEGER NOT NULL DEFAULT 0,
        backlog_depth         INTEGER NOT NULL DEFAULT 0,
        backlog_growing_since TEXT,
        mqtt_status           TEXT,
        mqtt_status_at        TEXT
    );
    CREATE TABLE ops_devices (
        gateway_id   TEXT NOT NULL,
        address      TEXT NOT NULL,
        model        TEXT,
        last_seen    TEXT,
        last_reading TEXT,
        battery_pct  INTEGER,
        rssi_dbm     INTEGER,
        paired_at    TEXT NOT NULL,
        PRIMARY KEY (gateway_id, address)
    );
    CREATE TABLE ops_alerts (
        alert_id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind              TEXT NOT NULL,
        subject           TEXT NOT NULL,
        gateway_id        TEXT,
        telemonitoring_id TEXT,
        state             TEXT NOT NULL,
        detail            TEXT NOT NULL,
        opened_at         TEXT NOT NULL,
        acknowledged_at   TEXT,
        acknowledged_by   TEXT,
        resolved_at       TEXT
    );
    CREATE UNIQUE INDEX ops_alerts_one_open ON ops_alerts(kind, subject) WHERE state <> 'resolved';
    CREATE INDEX ops_alerts_gateway ON ops_alerts(gateway_id, alert_id);
    CREATE TABLE ops_audit (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        at                TEXT NOT NULL,
        actor             TEXT NOT NULL,
        action            TEXT NOT NULL,
        gateway_id        TEXT NOT NULL,
        telemonitoring_id TEXT,
        device            TEXT,
        detail            TEXT NOT NULL
    );
    CREATE TRIGGER ops_audit_no_update BEFORE UPDATE ON ops_audit
        BEGIN SELECT RAISE(ABORT, 'ops_audit is append-only'); END;
    CREATE TRIGGER ops_audit_no_delete BEFORE DELETE ON ops_audit
        BEGIN SELECT RAISE(ABORT, 'ops_audit is append-only'); END;
    CREATE TABLE ops_commands (
        command_id TEXT PRIMARY KEY,
        gateway_id TEXT NOT NULL,
        action     TEXT NOT NULL,
        issued_by  TEXT NOT NULL,
        issued_at  TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        frame      BLOB NOT NULL
    );
    CREATE INDEX ops_commands_gateway ON ops_commands(gateway_id, expires_at_ms);
    "#,
    // 6: readings de-duplicated through a compact index on the first 16 characters of the id
    // instead of a primary key on the whole 64-character id. Reading ids are hashes, so every
    // insert lands on a random page of that index; a small index stays in the page cache and
    // dirties far fewer bytes per commit. Uniqueness of `reading_id` is kept by the ingest
    // writer (look up by prefix, compare the whole id, insert in the same transaction).
    r#"
    CREATE TABLE readings_compact (
        reading_id        TEXT NOT NULL,
        gateway_id        TEXT NOT NULL,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        batch_id          TEXT NOT NULL,
        kind              TEXT NOT NULL,
        effective_time    TEXT NOT NULL,
        received_at       TEXT NOT NULL,
        ingested_at       TEXT NOT NULL,
        payload           TEXT NOT NULL
    );
    -- Row ids are kept: session_outputs.published_through refers to them.
    INSERT INTO readings_compact (rowid, reading_id, gateway_id, telemonitoring_id, batch_id,
        kind, effective_time, received_at, ingested_at, payload)
        SELECT rowid, reading_id, gateway_id, telemonitoring_id, batch_id, kind, effective_time,
        received_at, ingested_at, payload FROM readings ORDER BY rowid;
    DROP TABLE readings;
    ALTER TABLE readings_compact RENAME TO readings;
    CREATE INDEX readings_id_prefix ON readings(substr(reading_id, 1, 16));
    CREATE INDEX readings_session_time ON readings(telemonitoring_id, effective_time);
    "#,
    // 7: the gateways' reports of executed commands (the first report of each command).
    r#"
    ALTER TABLE ops_commands ADD COLUMN result_status TEXT;
    ALTER TABLE ops_commands ADD COLUMN result_detail TEXT;
    ALTER TABLE ops_commands ADD COLUMN finished_at TEXT;
    ALTER TABLE ops_commands ADD COLUMN reported_at TEXT;
    "#,
    // 8: HUB outbox per session: a row the HUB refused (4xx) is retried with backoff for a bounded
    // window (`first_refused_at_ms`, `refusals`, `next_attempt_at_ms`), then held (state 2, which
    // rows refused by earlier versions already carry) until an operator re-queues it
    // (`held_at_ms` stays set until the row is delivered). Later rows of the session wait behind
    // it; the index finds each session's oldest undelivered row.
    r#"
    ALTER TABLE hub_outbox ADD COLUMN next_attempt_at_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hub_outbox ADD COLUMN first_refused_at_ms INTEGER;
    ALTER TABLE hub_outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hub_outbox ADD COLUMN held_at_ms INTEGER;
    CREATE INDEX hub_outbox_session ON hub_outbox(telemonitoring_id, state, seq);
    "#,
    // 9: the connection number of the latest signed MQTT status (a replayed last-will of an
    // older connection is ignored).
    r#"
    ALTER TABLE ops_gateway_health ADD COLUMN mqtt_status_connection INTEGER;
    "#,
    // 10: readings unique per session, enforced by the store: a UNIQUE key on
    // (telemonitoring_id, reading_id) replaces the global de-duplication through the id-prefix
    // index, so a reading id stored for one patient never hides another patient's reading.
    // The key covers the whole id (a prefix cannot be UNIQUE); the ingest writer inserts with
    // ON CONFLICT DO NOTHING and tells stored from duplicate by the affected-row count.
    r#"
    CREATE TABLE readings_per_session (
        reading_id        TEXT NOT NULL,
        gateway_id        TEXT NOT NULL,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        batch_id          TEXT NOT NULL,
        kind              TEXT NOT NULL,
        effective_time    TEXT NOT NULL,
        received_at       TEXT NOT NULL,
        ingested_at       TEXT NOT NULL,
        payload           TEXT NOT NULL,
        UNIQUE (telemonitoring_id, reading_id)
    );
    -- Row ids are kept: session_outputs.published_through refers to them. Ids were unique
    -- across the store until now, so no row conflicts here.
    INSERT INTO readings_per_session (rowid, reading_id, gateway_id, telemonitoring_id,
        batch_id, kind, effective_time, received_at, ingested_at, payload)
        SELECT rowid, reading_id, gateway_id, telemonitoring_id, batch_id, kind, effective_time,
        received_at, ingested_at, payload FROM readings ORDER BY rowid;
    DROP TABLE readings;
    ALTER TABLE readings_per_session RENAME TO readings;
    CREATE INDEX readings_session_time ON readings(telemonitoring_id, effective_time);
    "#,
    // 11: when the latest heartbeat was sent (gateway clock, microseconds), so one delivered
    // late (a redelivery, another broker path) does not overwrite a newer one.
    r#"
    ALTER TABLE gateway_heartbeats ADD COLUMN sent_at_us INTEGER;
    "#,
    // 12: what the store is served as, pinned at the first start: the fingerprints of its keys
    // (a provider started with other key files refuses to serve) and the FHIR identifier
    // system (it does not follow a change of host name).
    r#"
    CREATE TABLE store_pins (
        name      TEXT PRIMARY KEY,
        value     TEXT NOT NULL,
        pinned_at TEXT NOT NULL
    );
    "#,
    // 13: failed enrollment attempts per minute, all gateways together, kept in the store so
    // the limit holds for every provider instance and across restarts.
    r#"
    CREATE TABLE enroll_failures (
        minute   INTEGER PRIMARY KEY,
        failures INTEGER NOT NULL
    );
    "#,
    // 14: readings keyed by (telemonitoring_id, record_order, reading_id) instead of
    // (telemonitoring_id, reading_id): the same readings are refused as duplicates, and new
    // readings land on the index's last pages instead of random ones (see
    // `store::readings::record_order`, which this computes for the rows already stored: the
    // device time's second, else the sequence number, else the receive time's second).
    r#"
    CREATE TABLE readings_ordered (
        reading_id        TEXT NOT NULL,
        gateway_id        TEXT NOT NULL,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        batch_id          TEXT NOT NULL,
        kind              TEXT NOT NULL,
        effective_time    TEXT NOT NULL,
        received_at       TEXT NOT NULL,
        ingested_at       TEXT NOT NULL,
        payload           TEXT NOT NULL,
        record_order      INTEGER NOT NULL,
        UNIQUE (telemonitoring_id, record_order, reading_id)
    );
    -- Row ids are kept: session_outputs.published_through refers to them.
    INSERT INTO readings_ordered (rowid, reading_id, gateway_id, telemonitoring_id, batch_id,
        kind, effective_time, received_at, ingested_at, payload, record_order)
        SELECT rowid, reading_id, gateway_id, telemonitoring_id, batch_id, kind, effective_time,
        received_at, ingested_at, payload,
        COALESCE(unixepoch(substr(json_extract(payload, '$.device_time'), 1, 19)),
                 json_extract(payload, '$.sequence'),
                 unixepoch(substr(json_extract(payload, '$.received_at'), 1, 19)))
        FROM readings ORDER BY rowid;
    DROP TABLE readings;
    ALTER TABLE readings_ordered RENAME TO readings;
    CREATE INDEX readings_session_time ON readings(telemonitoring_id, effective_time);
    "#,
    // 15: clinical triage: the alerts the carepath rules raise for the nurses, one row per
    // episode (see `store::triage`), and each session's triage cursor (a readings row id).
    r#"
    CREATE TABLE clinical_alerts (
        alert_id          INTEGER PRIMARY KEY,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        rule              TEXT NOT NULL,
        episode_start     TEXT NOT NULL,
        episode_last      TEXT NOT NULL,
        summary           TEXT NOT NULL,
        evidence          TEXT NOT NULL,
        state             TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
        raised_at         TEXT NOT NULL,
        acknowledged_at   TEXT,
        acknowledged_by   TEXT,
        acknowledge_note  TEXT,
        resolved_at       TEXT,
        resolved_by       TEXT,
        resolve_note      TEXT,
        UNIQUE (telemonitoring_id, rule, episode_start)
    );
    CREATE INDEX clinical_alerts_state ON clinical_alerts(state, episode_start);
    CREATE TABLE triage_progress (
        telemonitoring_id TEXT PRIMARY KEY REFERENCES sessions(telemonitoring_id),
        triaged_through   INTEGER NOT NULL
    );
    "#,
    // 16: the patients' check-in links (the token's SHA-256 only; see `store::checkin`). The
    // answers they send are `readings` rows of kind `symptom`.
    r#"
    CREATE TABLE checkin_links (
        token_hash        TEXT PRIMARY KEY,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        language          TEXT NOT NULL,
        issued_at         TEXT NOT NULL,
        revoked_at        TEXT
    );
    CREATE INDEX checkin_links_session ON checkin_links(telemonitoring_id);
    "#,
    // 17: the nurse's setup from her phone (see `store::claims` and `store::setup`): the
    // unclaimed gateways that announced themselves (by key; found by claim code), the wrong
    // claim codes of each session (the per-session rate limit), the claim code and the end of
    // setup of each enrolled gateway, and the first reading the setup page showed per device.
    r#"
    ALTER TABLE gateways ADD COLUMN claim_code TEXT;
    ALTER TABLE gateways ADD COLUMN setup_done_at TEXT;
    CREATE INDEX gateways_claim_code ON gateways(claim_code);
    CREATE TABLE unclaimed_gateways (
        public_key     BLOB PRIMARY KEY,
        claim_code     TEXT NOT NULL,
        agent_version  TEXT NOT NULL,
        first_hello_ms INTEGER NOT NULL,
        last_hello_ms  INTEGER NOT NULL
    );
    CREATE INDEX unclaimed_gateways_code ON unclaimed_gateways(claim_code, last_hello_ms);
    CREATE INDEX unclaimed_gateways_age ON unclaimed_gateways(last_hello_ms);
    CREATE TABLE claim_failures (
        telemonitoring_id TEXT NOT NULL,
        at_ms             INTEGER NOT NULL
    );
    CREATE INDEX claim_failures_session ON claim_failures(telemonitoring_id, at_ms);
    CREATE TABLE setup_first_readings (
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        gateway_id        TEXT NOT NULL,
        address           TEXT NOT NULL,
        reading_id        TEXT NOT NULL,
        shown_at          TEXT NOT NULL,
        PRIMARY KEY (telemonitoring_id, gateway_id, address)
    );
    "#,
];

pub(super) const SELECT_STORE_ID: &str = "SELECT store_id FROM store_identity";

/// Gives the store its id once: a new store at creation, a store from before store ids at its
/// first open by this version. Kept beside `schema_migrations`, outside [`MIGRATIONS`]: it
/// belongs to the file, not to a feature.
pub(super) fn identify(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS store_identity (store_id TEXT PRIMARY KEY, created_at TEXT NOT NULL)",
    )?;
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| rusqlite::Error::InvalidQuery)?;
    let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    conn.execute(
        "INSERT INTO store_identity (store_id, created_at) SELECT ?1, ?2 \
         WHERE NOT EXISTS (SELECT 1 FROM store_identity)",
        rusqlite::params![id, chrono::Utc::now().to_rfc3339()],
    )?;
    Ok(())
}

pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let done: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    tm_protocol::migrations::apply(conn, MIGRATIONS, done, |tx, version| {
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, chrono::Utc::now().to_rfc3339()],
        )
        .map(drop)
    })
}
