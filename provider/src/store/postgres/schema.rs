//! The PostgreSQL schema: its migrations, applied at connect under an advisory lock.
//!
//! The first migration is the whole schema the SQLite store reached in its own 13 steps, in
//! PostgreSQL's terms rather than a replay of those steps:
//! - times are `timestamptz`; times kept as milliseconds or microseconds since the epoch on
//!   SQLite (code expiry, outbox backoff, heartbeat order) stay `bigint` with the same unit;
//! - generated keys are identity columns;
//! - a reading is unique per session by constraint, and carries `seq`, an identity the
//!   published snapshots are cut at (the ingest and the publisher lock the session row, so every
//!   `seq` below a cut has committed before it: the watermark is commit-ordered);
//! - the audit log is append-only by trigger, and `UPDATE`/`DELETE` on it are revoked from
//!   everyone but its owner;
//! - `schema_migrations` and `store_identity` are created by the runner itself.
//!
//! A migration that has shipped is never edited, only followed by another.

/// Key of the transaction-level advisory lock the migration runner holds: instances that start
/// together apply the migrations one after the other, and the later ones find nothing to do.
pub const MIGRATION_LOCK: i64 = super::locks::MIGRATION;

/// The migrations, in order; index + 1 is the version.
pub const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite version 13.
    r#"
    CREATE TABLE sessions (
        telemonitoring_id text PRIMARY KEY,
        patient_id        text NOT NULL,
        prescriber_id     text NOT NULL,
        status            text NOT NULL,
        carepath_id       text,
        carepath_version  text,
        created_at        timestamptz NOT NULL,
        updated_at        timestamptz NOT NULL
    );
    CREATE TABLE gateways (
        gateway_id        text PRIMARY KEY,
        public_key        bytea NOT NULL UNIQUE,
        telemonitoring_id text REFERENCES sessions(telemonitoring_id),
        state             text NOT NULL,
        enrolled_at       timestamptz NOT NULL,
        revoked_at        timestamptz
    );
    CREATE INDEX gateways_session ON gateways(telemonitoring_id);
    CREATE TABLE prescriptions (
        telemonitoring_id text PRIMARY KEY REFERENCES sessions(telemonitoring_id),
        patient_fields    text NOT NULL,
        page_token        text NOT NULL UNIQUE
    );
    CREATE TABLE enrollment_codes (
        code_digest       text PRIMARY KEY,
        telemonitoring_id text NOT NULL REFERENCES sessions(telemonitoring_id),
        carepath_id       text NOT NULL,
        carepath_version  text NOT NULL,
        issued_at_ms      bigint NOT NULL,
        expires_at_ms     bigint NOT NULL,
        used_at_ms        bigint
    );
    CREATE INDEX enrollment_codes_session ON enrollment_codes(telemonitoring_id, issued_at_ms);
    CREATE TABLE enroll_failures (
        minute   bigint PRIMARY KEY,
        failures bigint NOT NULL
    );
    CREATE TABLE hub_outbox (
        seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        telemonitoring_id   text NOT NULL,
        body                text NOT NULL,
        state               smallint NOT NULL DEFAULT 0,
        attempts            integer NOT NULL DEFAULT 0,
        last_error          text,
        created_at          timestamptz NOT NULL,
        done_at             timestamptz,
        next_attempt_at_ms  bigint NOT NULL DEFAULT 0,
        first_refused_at_ms bigint,
        refusals            integer NOT NULL DEFAULT 0,
        held_at_ms          bigint
    );
    CREATE INDEX hub_outbox_pending ON hub_outbox(state, seq);
    CREATE INDEX hub_outbox_session ON hub_outbox(telemonitoring_id, state, seq);
    CREATE TABLE readings (
        seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        reading_id        text NOT NULL,
        gateway_id        text NOT NULL,
        telemonitoring_id text NOT NULL REFERENCES sessions(telemonitoring_id),
        batch_id          text NOT NULL,
        kind              text NOT NULL,
        effective_time    timestamptz NOT NULL,
        received_at       timestamptz NOT NULL,
        ingested_at       timestamptz NOT NULL,
        payload           text NOT NULL,
        UNIQUE (telemonitoring_id, reading_id)
    );
    CREATE INDEX readings_session_seq ON readings(telemonitoring_id, seq);
    CREATE INDEX readings_session_time ON readings(telemonitoring_id, effective_time);
    CREATE TABLE gateway_heartbeats (
        gateway_id  text PRIMARY KEY,
        received_at timestamptz NOT NULL,
        payload     text NOT NULL,
        sent_at_us  bigint
    );
    CREATE TABLE session_outputs (
        telemonitoring_id text PRIMARY KEY REFERENCES sessions(telemonitoring_id),
        published_through bigint NOT NULL,
        published_at      timestamptz NOT NULL,
        period_start      timestamptz NOT NULL,
        period_end        timestamptz
    );
    CREATE TABLE ops_gateway_health (
        gateway_id             text PRIMARY KEY,
        heartbeats_total       bigint NOT NULL DEFAULT 0,
        backlog_depth          bigint NOT NULL DEFAULT 0,
        backlog_growing_since  timestamptz,
        mqtt_status            text,
        mqtt_status_at         timestamptz,
        mqtt_status_connection bigint
    );
    CREATE TABLE ops_devices (
        gateway_id   text NOT NULL,
        address      text NOT NULL,
        model        text,
        last_seen    timestamptz,
        last_reading timestamptz,
        battery_pct  integer,
        rssi_dbm     integer,
        paired_at    timestamptz NOT NULL,
        PRIMARY KEY (gateway_id, address)
    );
    CREATE TABLE ops_alerts (
        alert_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind              text NOT NULL,
        subject           text NOT NULL,
        gateway_id        text,
        telemonitoring_id text,
        state             text NOT NULL,
        detail            text NOT NULL,
        opened_at         timestamptz NOT NULL,
        acknowledged_at   timestamptz,
        acknowledged_by   text,
        resolved_at       timestamptz
    );
    CREATE UNIQUE INDEX ops_alerts_one_open ON ops_alerts(kind, subject) WHERE state <> 'resolved';
    CREATE INDEX ops_alerts_gateway ON ops_alerts(gateway_id, alert_id);
    CREATE TABLE ops_audit (
        seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at                timestamptz NOT NULL,
        actor             text NOT NULL,
        action            text NOT NULL,
        gateway_id        text NOT NULL,
        telemonitoring_id text,
        device            text,
        detail            text NOT NULL
    );
    CREATE FUNCTION ops_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'ops_audit is append-only'; END $$;
    CREATE TRIGGER ops_audit_no_change BEFORE UPDATE OR DELETE ON ops_audit
        FOR EACH ROW EXECUTE FUNCTION ops_audit_append_only();
    CREATE TRIGGER ops_audit_no_truncate BEFORE TRUNCATE ON ops_audit
        FOR EACH STATEMENT EXECUTE FUNCTION ops_audit_append_only();
    REVOKE UPDATE, DELETE, TRUNCATE ON ops_audit FROM PUBLIC;
    CREATE TABLE ops_commands (
        command_id    text PRIMARY KEY,
        gateway_id    text NOT NULL,
        action        text NOT NULL,
        issued_by     text NOT NULL,
        issued_at     timestamptz NOT NULL,
        expires_at_ms bigint NOT NULL,
        frame         bytea NOT NULL,
        result_status text,
        result_detail text,
        finished_at   timestamptz,
        reported_at   timestamptz
    );
    CREATE INDEX ops_commands_gateway ON ops_commands(gateway_id, expires_at_ms);
    CREATE TABLE store_pins (
        name      text PRIMARY KEY,
        value     text NOT NULL,
        pinned_at timestamptz NOT NULL
    );
    "#,
    // 2: every change to the HUB outbox (an update queued or re-queued, by any instance)
    // notifies `tm_hub_outbox` at commit; the instance delivering the outbox listens there
    // (see store/postgres/lease.rs) and wakes at once instead of at its next poll.
    r#"
    CREATE FUNCTION notify_hub_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('tm_hub_outbox', '');
        RETURN NULL;
    END $$;
    CREATE TRIGGER hub_outbox_changed AFTER INSERT OR UPDATE ON hub_outbox
        FOR EACH STATEMENT EXECUTE FUNCTION notify_hub_outbox();
    "#,
    // 3: readings keyed by (telemonitoring_id, record_order, reading_id), as SQLite's migration
    // 14: the same duplicates refused, new readings on the index's last pages. The order of the
    // rows already stored is computed as `store::readings::record_order` does (the device
    // time's second, else the sequence number, else the receive time's second).
    r#"
    ALTER TABLE readings ADD COLUMN record_order bigint;
    UPDATE readings SET record_order = COALESCE(
        floor(extract(epoch FROM left(payload::jsonb ->> 'device_time', 19)::timestamp))::bigint,
        (payload::jsonb ->> 'sequence')::bigint,
        floor(extract(epoch FROM received_at))::bigint);
    ALTER TABLE readings ALTER COLUMN record_order SET NOT NULL;
    ALTER TABLE readings DROP CONSTRAINT readings_telemonitoring_id_reading_id_key;
    ALTER TABLE readings ADD CONSTRAINT readings_once
        UNIQUE (telemonitoring_id, record_order, reading_id);
    "#,
    // 4: clinical triage, as SQLite's migration 15: one alert per episode, and each session's
    // triage cursor (a readings `seq`).
    r#"
    CREATE TABLE clinical_alerts (
        alert_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        telemonitoring_id text NOT NULL REFERENCES sessions(telemonitoring_id),
        rule              text NOT NULL,
        episode_start     timestamptz NOT NULL,
        episode_last      timestamptz NOT NULL,
        summary           text NOT NULL,
        evidence          text NOT NULL,
        state             text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
        raised_at         timestamptz NOT NULL,
        acknowledged_at   timestamptz,
        acknowledged_by   text,
        acknowledge_note  text,
        resolved_at       timestamptz,
        resolved_by       text,
        resolve_note      text,
        UNIQUE (telemonitoring_id, rule, episode_start)
    );
    CREATE INDEX clinical_alerts_state ON clinical_alerts(state, episode_start);
    CREATE TABLE triage_progress (
        telemonitoring_id text PRIMARY KEY REFERENCES sessions(telemonitoring_id),
        triaged_through   bigint NOT NULL
    );
    "#,
    // 5: the patients' check-in links, as SQLite's migration 16.
    r#"
    CREATE TABLE checkin_links (
        token_hash        text PRIMARY KEY,
        telemonitoring_id text NOT NULL REFERENCES sessions(telemonitoring_id),
        language          text NOT NULL,
        issued_at         timestamptz NOT NULL,
        revoked_at        timestamptz
    );
    CREATE INDEX checkin_links_session ON checkin_links(telemonitoring_id);
    "#,
    // 6: the nurse's setup from her phone, as SQLite's migration 17.
    r#"
    ALTER TABLE gateways ADD COLUMN claim_code text;
    ALTER TABLE gateways ADD COLUMN setup_done_at timestamptz;
    CREATE INDEX gateways_claim_code ON gateways(claim_code);
    CREATE TABLE unclaimed_gateways (
        public_key     bytea PRIMARY KEY,
        claim_code     text NOT NULL,
        agent_version  text NOT NULL,
        first_hello_ms bigint NOT NULL,
        last_hello_ms  bigint NOT NULL
    );
    CREATE INDEX unclaimed_gateways_code ON unclaimed_gateways(claim_code, last_hello_ms);
    CREATE INDEX unclaimed_gateways_age ON unclaimed_gateways(last_hello_ms);
    CREATE TABLE claim_failures (
        telemonitoring_id text NOT NULL,
        at_ms             bigint NOT NULL
    );
    CREATE INDEX claim_failures_session ON claim_failures(telemonitoring_id, at_ms);
    CREATE TABLE setup_first_readings (
        telemonitoring_id text NOT NULL REFERENCES sessions(telemonitoring_id),
        gateway_id        text NOT NULL,
        address           text NOT NULL,
        reading_id        text NOT NULL,
        shown_at          timestamptz NOT NULL,
        PRIMARY KEY (telemonitoring_id, gateway_id, address)
    );
    "#,
];
