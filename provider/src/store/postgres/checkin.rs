//! Check-in links and answers on PostgreSQL (see [`crate::store::checkin`]). Issuing and
//! saving lock the session row (`FOR UPDATE` to issue, so two nurses issuing at once leave one
//! live link; `FOR SHARE` to save, as ingest does, so the snapshot watermark stays
//! commit-ordered) and check the link and the session on the locked row.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::PgStore;
use crate::store::StoreError;
use crate::store::checkin::{CheckinLink, Issue, LIVE, Saved, may_issue};
use crate::symptom::{KIND, RECORD_ORDER, SymptomAnswer};

const LIVE_LINK: &str = "SELECT l.telemonitoring_id, l.language, l.issued_at \
    FROM checkin_links l JOIN sessions s USING (telemonitoring_id) \
    WHERE l.token_hash = $1 AND l.revoked_at IS NULL AND s.status = ANY($2)";
const REVOKE: &str = "UPDATE checkin_links SET revoked_at = $2 \
    WHERE telemonitoring_id = $1 AND revoked_at IS NULL";
const INSERT_ANSWER: &str = "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, \
    batch_id, kind, effective_time, received_at, ingested_at, payload, record_order) \
    VALUES ($1, '', $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (telemonitoring_id, record_order, reading_id) DO NOTHING";

async fn find_on(
    c: &impl GenericClient,
    token_hash: &str,
) -> Result<Option<CheckinLink>, tokio_postgres::Error> {
    let live: Vec<&str> = LIVE.to_vec();
    let Some(row) = c.query_opt(LIVE_LINK, &[&token_hash, &live]).await? else {
        return Ok(None);
    };
    let language: String = row.try_get(1)?;
    Ok(Some(CheckinLink {
        telemonitoring_id: row.try_get(0)?,
        language,
        issued_at: row.try_get(2)?,
    }))
}

/// Issues a link (session, token hash, language), revoking the session's earlier ones.
pub async fn issue(
    pg: &PgStore,
    link: &(String, String, &'static str),
    carepaths: &[&str],
    now: DateTime<Utc>,
) -> Result<Issue, StoreError> {
    let (telemonitoring_id, token_hash, language) = link;
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let session = tx
        .query_opt(
            "SELECT status, carepath_id FROM sessions WHERE telemonitoring_id = $1 FOR UPDATE",
            &[telemonitoring_id],
        )
        .await
        .map_err(pg.sql())?
        .map(|r| Ok::<_, tokio_postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
        .map_err(pg.sql())?;
    let decided = may_issue(session, carepaths);
    if decided != Issue::Issued {
        return Ok(decided);
    }
    tx.execute(REVOKE, &[telemonitoring_id, &now])
        .await
        .map_err(pg.sql())?;
    tx.execute(
        "INSERT INTO checkin_links (token_hash, telemonitoring_id, language, issued_at) \
         VALUES ($1, $2, $3, $4)",
        &[token_hash, telemonitoring_id, &language, &now],
    )
    .await
    .map_err(pg.sql())?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(Issue::Issued)
}

/// Revokes the session's links; how many were live.
pub async fn revoke(
    pg: &PgStore,
    telemonitoring_id: &str,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let c = pg.client().await?;
    let n = c
        .execute(REVOKE, &[&telemonitoring_id, &now])
        .await
        .map_err(pg.sql())?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// The live link of `token_hash`.
pub async fn find(pg: &PgStore, token_hash: &str) -> Result<Option<CheckinLink>, StoreError> {
    let c = pg.client().await?;
    find_on(&**c, token_hash).await.map_err(pg.sql())
}

/// When the session's live link was issued.
pub async fn issued_at(
    pg: &PgStore,
    telemonitoring_id: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let c = pg.client().await?;
    c.query_one(
        "SELECT MAX(issued_at) FROM checkin_links \
         WHERE telemonitoring_id = $1 AND revoked_at IS NULL",
        &[&telemonitoring_id],
    )
    .await
    .and_then(|r| r.try_get(0))
    .map_err(pg.sql())
}

/// Stores a check-in's answers if `link` (token hash, session) is live.
pub async fn save(
    pg: &PgStore,
    link: &(String, String),
    answers: &[SymptomAnswer],
    now: DateTime<Utc>,
) -> Result<Saved, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    tx.execute(
        "SELECT 1 FROM sessions WHERE telemonitoring_id = $1 FOR SHARE",
        &[&link.1],
    )
    .await
    .map_err(pg.sql())?;
    let found = find_on(&*tx, &link.0).await.map_err(pg.sql())?;
    if found.is_none_or(|l| l.telemonitoring_id != link.1) {
        return Ok(Saved::LinkGone);
    }
    let insert = tx.prepare(INSERT_ANSWER).await.map_err(pg.sql())?;
    let mut inserted = 0;
    for a in answers {
        let payload = a.to_json();
        let n = tx
            .execute(
                &insert,
                &[
                    &a.answer_id,
                    &link.1,
                    &a.submission,
                    &KIND,
                    &a.end.with_timezone(&Utc),
                    &a.end.with_timezone(&Utc),
                    &now,
                    &payload,
                    &RECORD_ORDER,
                ],
            )
            .await
            .map_err(pg.sql())?;
        inserted += usize::try_from(n).unwrap_or(0);
    }
    tx.commit().await.map_err(pg.sql())?;
    Ok(Saved::Stored { inserted })
}
