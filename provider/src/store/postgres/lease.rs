//! Leases on PostgreSQL: a duty that one instance at a time performs (delivering the HUB
//! outbox, evaluating alerts, sweeping for due attachment updates) is held as a session-level
//! advisory lock (`pg_try_advisory_lock`) on a connection of its own, outside the pool.
//!
//! The lock lives exactly as long as that connection: the holder releases it by dropping the
//! lease (its connection closes), and when the holder dies (`kill -9`, a crash, a lost network)
//! the server ends its session and the lock is free for the next instance that asks. The
//! holder checks its connection regularly ([`PgLease::alive`]) and stops the duty as soon as it
//! fails, so two instances do the duty together at most for one check's interval.
//!
//! The lease's connection also listens on the duty's notification channel, when it has one:
//! any instance that gives the duty work (a HUB update queued) sends `NOTIFY` in the
//! transaction that queued it, and the holder wakes at once instead of at its next poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use super::PgStore;
use crate::store::StoreError;

/// Longest wait for the check of a lease's connection.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A held advisory lock and the connection that holds it.
#[derive(Debug)]
pub struct PgLease {
    client: tokio_postgres::Client,
    /// Set when the connection ended (the lock is gone with it).
    closed: Arc<AtomicBool>,
    /// Drives the connection and forwards notifications; aborted on drop, which closes the
    /// connection and so releases the lock.
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for PgLease {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl PgLease {
    /// Whether the lock is still held: the connection is open and answers within
    /// [`CHECK_TIMEOUT`].
    pub async fn alive(&self) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        matches!(
            tokio::time::timeout(CHECK_TIMEOUT, self.client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }
}

impl PgStore {
    /// Takes the advisory lock `key` on a connection of its own; `None` when another session
    /// holds it. With `channel`, the connection listens on it and `wake` is notified of every
    /// notification.
    pub async fn take_lease(
        &self,
        key: i64,
        channel: Option<&str>,
        wake: Option<Arc<Notify>>,
    ) -> Result<Option<PgLease>, StoreError> {
        let closed = Arc::new(AtomicBool::new(false));
        let config = &self.connector.config;
        let (client, driver) = match &self.connector.tls {
            None => {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(self.sql())?;
                (client, drive(connection, wake, closed.clone()))
            }
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await.map_err(self.sql())?;
                (client, drive(connection, wake, closed.clone()))
            }
        };
        let lease = PgLease {
            client,
            closed,
            driver,
        };
        let taken: bool = lease
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(self.sql())?
            .get(0);
        if !taken {
            return Ok(None);
        }
        if let Some(channel) = channel {
            // The channel is one of ours (an identifier), never input.
            lease
                .client
                .batch_execute(&format!("LISTEN {channel}"))
                .await
                .map_err(self.sql())?;
        }
        Ok(Some(lease))
    }

    /// Sends a notification on `channel` (outside any transaction: at once).
    pub async fn notify(&self, channel: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("SELECT pg_notify($1, '')", &[&channel])
            .await
            .map_err(self.sql())?;
        Ok(())
    }
}

/// Drives `connection` until it ends, notifying `wake` of each notification; marks `closed`.
fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    wake: Option<Arc<Notify>>,
    closed: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if let Some(wake) = &wake {
                        wake.notify_one();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "lease connection failed");
                    break;
                }
                None => break,
            }
        }
        closed.store(true, Ordering::Release);
    })
}
