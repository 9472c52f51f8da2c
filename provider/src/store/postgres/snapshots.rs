//! Published snapshots and their watermark on PostgreSQL.
//!
//! A snapshot is cut at a watermark: `session_outputs.published_through` is the highest
//! `readings.seq` of the session it includes (on SQLite, the highest `rowid`). `seq` is an
//! identity, so its values are handed out in the order the inserts ran, not the order their
//! transactions commit: a plain `MAX(seq)` could see reading 12 committed while reading 11 is
//! still in flight, and a cut at 12 would skip 11 for ever. The watermark is made
//! commit-ordered by the session's row lock:
//!
//! - the ingest inserts a session's readings under `SELECT ... FOR SHARE` on the session row
//!   (concurrent batches of one session do not wait for each other);
//! - the publisher ([`publish_if_due`]), like every status change, takes `SELECT ... FOR
//!   UPDATE` on the session row first, and only then reads `MAX(seq)` and cuts
//!   ([`transition_with_outputs`]).
//!
//! `FOR UPDATE` waits until no ingest transaction of the session holds its `FOR SHARE`, and
//! keeps new ones out until the cut commits. So when the publisher reads `MAX(seq)`, every
//! reading of the session that got a `seq` has committed, and every later reading gets a
//! larger one (the identity's cache is 1: values follow allocation order across sessions).
//! Readings at or below the cut are therefore fixed, and readings above it are exactly the
//! pending ones. Two publishers of one session serialize on the same lock: the second finds
//! the first's snapshot, nothing pending, and publishes nothing; the watermark never moves
//! backwards.
//!
//! Times: `published_at`, `period_start` and `period_end` are `timestamptz`, written truncated
//! to the millisecond, as the SQLite side writes its RFC 3339 text, so both backends hand back
//! the same instants.

use crate::symptom::Row;
use chrono::{DateTime, FixedOffset, SubsecRound as _, Utc};
use tokio_postgres::GenericClient;
use tokio_postgres::types::{FromSql, Type};

use super::{PgStore, sessions};
use crate::hub::contract::{Carepath, Status};
use crate::store::StoreError;
use crate::store::sessions::TransitionError;
use crate::store::snapshots::{Announcer, PublishOutcome, PublishedSession, Snapshot};

const SNAPSHOT: &str = "SELECT published_through, published_at, period_start, period_end \
    FROM session_outputs WHERE telemonitoring_id = $1";
const UPSERT_SNAPSHOT: &str = "INSERT INTO session_outputs (telemonitoring_id, \
    published_through, published_at, period_start, period_end) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (telemonitoring_id) DO UPDATE SET published_through = excluded.published_through, \
    published_at = excluded.published_at, period_end = excluded.period_end";
const LATEST_READING: &str = "SELECT MAX(seq) FROM readings WHERE telemonitoring_id = $1";
const SNAPSHOT_READINGS: &str = "SELECT payload FROM readings WHERE telemonitoring_id = $1 \
    AND seq <= $2 ORDER BY seq";
/// The period's start when nothing was published yet: the first enrollment, else the
/// session's creation.
const PERIOD_START: &str = "SELECT COALESCE((SELECT MIN(enrolled_at) FROM gateways \
    WHERE telemonitoring_id = $1), s.created_at) FROM sessions s WHERE s.telemonitoring_id = $1";
const PENDING_SESSIONS: &str = "SELECT s.telemonitoring_id FROM sessions s \
    LEFT JOIN session_outputs o ON o.telemonitoring_id = s.telemonitoring_id \
    WHERE s.status IN ('accepted', 'in-progress') AND EXISTS (SELECT 1 FROM readings r \
    WHERE r.telemonitoring_id = s.telemonitoring_id AND r.seq > COALESCE(o.published_through, 0))";

/// A stored row (a reading or a symptom answer), decoded from its JSON `payload` (a failure is
/// the column's conversion error).
struct Payload(Row);

impl<'a> FromSql<'a> for Payload {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        Ok(Self(Row::from_payload(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// The session's published snapshot, if any.
pub async fn snapshot(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<Snapshot>, tokio_postgres::Error> {
    let Some(r) = c.query_opt(SNAPSHOT, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some(Snapshot {
        published_through: r.try_get(0)?,
        published_at: r.try_get(1)?,
        period_start: r.try_get(2)?,
        period_end: r.try_get(3)?,
    }))
}

/// The highest `seq` of the session's readings (0 when it has none). A watermark only under
/// the session's `FOR UPDATE` (see the module's documentation).
pub async fn latest_reading(
    c: &impl GenericClient,
    id: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = c.query_one(LATEST_READING, &[&id]).await?;
    Ok(row.try_get::<_, Option<i64>>(0)?.unwrap_or(0))
}

/// Whether the session has readings its published snapshot does not include.
pub async fn has_pending(c: &impl GenericClient, id: &str) -> Result<bool, tokio_postgres::Error> {
    let through = snapshot(c, id).await?.map_or(0, |s| s.published_through);
    Ok(latest_reading(c, id).await? > through)
}

/// The live sessions (accepted or in progress) with pending readings.
pub async fn pending_sessions(
    c: &impl GenericClient,
) -> Result<Vec<String>, tokio_postgres::Error> {
    c.query(PENDING_SESSIONS, &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// The published snapshot of `id` with its session and readings: `None` when the session does
/// not exist or has published nothing yet.
pub async fn published_session(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<PublishedSession>, tokio_postgres::Error> {
    let (Some(session), Some(snap)) = (sessions::find(c, id).await?, snapshot(c, id).await?) else {
        return Ok(None);
    };
    let (mut readings, mut symptoms) = (Vec::new(), Vec::new());
    for r in c
        .query(SNAPSHOT_READINGS, &[&id, &snap.published_through])
        .await?
    {
        match r.try_get::<_, Payload>(0)?.0 {
            Row::Reading(r) => readings.push(*r),
            Row::Symptom(a) => symptoms.push(a),
        }
    }
    Ok(Some(PublishedSession {
        telemonitoring_id: session.telemonitoring_id,
        patient_id: session.patient_id,
        prescriber_id: session.prescriber_id,
        carepath: session.carepath,
        snapshot: snap,
        readings,
        symptoms,
    }))
}

/// Where the monitoring period of a session that has published nothing yet starts.
async fn first_period_start(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<DateTime<FixedOffset>>, tokio_postgres::Error> {
    c.query_opt(PERIOD_START, &[&id])
        .await?
        .map(|r| r.try_get(0))
        .transpose()
}

/// Cuts a new snapshot of `id` at `now` (every reading committed so far: call under the
/// session's `FOR UPDATE`, in the transaction that announces it); `ending` closes the period.
/// False when the session is gone.
async fn cut(
    c: &impl GenericClient,
    id: &str,
    now: DateTime<Utc>,
    ending: bool,
) -> Result<bool, tokio_postgres::Error> {
    let stamp = now.trunc_subsecs(3);
    let start = match snapshot(c, id).await? {
        Some(s) => s.period_start,
        None => match first_period_start(c, id).await? {
            Some(start) => start.trunc_subsecs(3),
            None => return Ok(false),
        },
    };
    let through = latest_reading(c, id).await?;
    let end = ending.then_some(stamp);
    c.execute(UPSERT_SNAPSHOT, &[&id, &through, &stamp, &start, &end])
        .await?;
    Ok(true)
}

/// Moves `id` to `to` in the caller's transaction, under the session's row lock (taken first),
/// queueing the HUB update. Moving to in-progress or completed with readings stored cuts a
/// new snapshot and sends the full attachment set `announcer` describes with it; any other
/// move sends no attachments. Returns the attachments announced (0 when none).
pub async fn transition_with_outputs(
    pg: &PgStore,
    c: &impl GenericClient,
    announcer: &dyn Announcer,
    id: &str,
    to: Status,
    carepath: Option<Carepath>,
    now: DateTime<Utc>,
) -> Result<Result<usize, TransitionError>, StoreError> {
    let Some(current) = sessions::lock(c, id).await.map_err(pg.sql())? else {
        return Ok(Err(TransitionError::Unknown));
    };
    if !current.status.may_become(to) {
        return Ok(Err(TransitionError::Illegal {
            from: current.status,
            to,
        }));
    }
    let with_outputs = matches!(to, Status::InProgress | Status::Completed)
        && latest_reading(c, id).await.map_err(pg.sql())? > 0;
    let attachments = if with_outputs {
        if !cut(c, id, now, to == Status::Completed)
            .await
            .map_err(pg.sql())?
        {
            return Ok(Err(TransitionError::Unknown));
        }
        let published = published_session(c, id)
            .await
            .map_err(pg.sql())?
            .ok_or_else(|| pg.error("the snapshot just cut is not found"))?;
        Some(announcer.describe(published, now))
    } else {
        None
    };
    let n = attachments.as_ref().map_or(0, Vec::len);
    Ok(sessions::transition(pg, c, id, to, carepath, attachments)
        .await?
        .map(|_| n))
}

/// When `id` is due, as `announcer` judges what is stored.
pub async fn when_due(
    c: &impl GenericClient,
    announcer: &dyn Announcer,
    id: &str,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    let Some(session) = sessions::find(c, id).await? else {
        return Ok(None);
    };
    due_after(c, announcer, id, session.status, session.carepath.as_ref()).await
}

/// When a session in `status` is due, from its snapshot and pending readings.
async fn due_after(
    c: &impl GenericClient,
    announcer: &dyn Announcer,
    id: &str,
    status: Status,
    carepath: Option<&Carepath>,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    let last = snapshot(c, id).await?.map(|s| s.published_at);
    let pending = has_pending(c, id).await?;
    Ok(announcer.next_update(status, carepath, pending, last))
}

/// Publishes `id` if it is due now, in one transaction under the session's row lock: a new
/// snapshot and the move to in-progress with its attachments ([`transition_with_outputs`]).
pub async fn publish_if_due(
    pg: &PgStore,
    announcer: &dyn Announcer,
    id: &str,
) -> Result<Result<PublishOutcome, TransitionError>, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let Some(session) = sessions::lock(&*tx, id).await.map_err(pg.sql())? else {
        return Ok(Ok(PublishOutcome::NotDue));
    };
    // After the lock: every reading below the cut has committed by now.
    let now = Utc::now();
    let due = due_after(
        &*tx,
        announcer,
        id,
        session.status,
        session.carepath.as_ref(),
    )
    .await
    .map_err(pg.sql())?;
    let Some(when) = due else {
        return Ok(Ok(PublishOutcome::NotDue));
    };
    if when > now {
        return Ok(Ok(PublishOutcome::Later(when)));
    }
    let moved =
        transition_with_outputs(pg, &*tx, announcer, id, Status::InProgress, None, now).await?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(moved.map(|attachments| PublishOutcome::Published { attachments }))
}

/// [`crate::store::Store::published_session`] on a pooled connection.
pub async fn read_published(
    pg: &PgStore,
    id: &str,
) -> Result<Option<PublishedSession>, StoreError> {
    let c = pg.client().await?;
    published_session(&**c, id).await.map_err(pg.sql())
}

/// [`crate::store::Store::has_pending_readings`] on a pooled connection.
pub async fn read_has_pending(pg: &PgStore, id: &str) -> Result<bool, StoreError> {
    let c = pg.client().await?;
    has_pending(&**c, id).await.map_err(pg.sql())
}

/// [`crate::store::Store::sessions_with_pending_readings`] on a pooled connection.
pub async fn read_pending_sessions(pg: &PgStore) -> Result<Vec<String>, StoreError> {
    let c = pg.client().await?;
    pending_sessions(&**c).await.map_err(pg.sql())
}

/// [`crate::store::Store::next_session_update`] on a pooled connection.
pub async fn read_when_due(
    pg: &PgStore,
    announcer: &dyn Announcer,
    id: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let c = pg.client().await?;
    when_due(&**c, announcer, id).await.map_err(pg.sql())
}
