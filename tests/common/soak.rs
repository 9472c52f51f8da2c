//! The kill soak: the agent is SIGKILLed again and again while the simulated device streams,
//! and every kill lands mid-stream. Each run's stream is open-ended (the simulator resumes after
//! the outbox's high-water mark and never runs out during the kills); a kill comes only after
//! the run has committed readings of its own, at a random moment up to [`KILL_WINDOW_MS`] later,
//! so it finds the stream running. Just before each kill the outbox is looked at through a
//! read-only connection: readings committed but not yet acknowledged (pending or in a batch
//! waiting for its receipt) are readings in flight. After the last kill one more agent finishes
//! the stream at a fixed length and drains; the provider must then hold every sequence exactly
//! once.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use super::{Agent, GatewaySide, ProviderSide, kill};

/// Longest wait, after a run's first own commit, before its kill.
pub const KILL_WINDOW_MS: u64 = 250;

/// A stream length the kills never reach: the simulator keeps producing until killed.
const OPEN_ENDED: u32 = 4_000_000_000;

/// Readings the last run adds after the last kill, before the stream ends.
const TAIL: u32 = 200;

/// What a soak did and found.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoakReport {
    /// SIGKILLs sent.
    pub kills: u32,
    /// Kills that came while the run's stream was being committed (it had committed readings
    /// of its own and had not ended).
    pub mid_stream: u32,
    /// Kills that found committed readings not yet acknowledged by the provider.
    pub in_flight: u32,
    /// Length of the whole stream (sequences `0..readings`).
    pub readings: u32,
    /// Sequences missing at the provider.
    pub lost: u64,
    /// Rows at the provider beyond one per sequence.
    pub duplicated: u64,
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kills={} mid_stream={} in_flight={} readings={} lost={} duplicated={}",
            self.kills, self.mid_stream, self.in_flight, self.readings, self.lost, self.duplicated
        )
    }
}

/// The outbox as seen from outside the agent.
#[derive(Debug, Clone, Copy, Default)]
struct Peek {
    /// Highest committed sequence of the simulated device.
    high_water: Option<u32>,
    /// Rows not acknowledged yet (pending or in flight: leases are known only to the agent).
    unacknowledged: u64,
}

fn peek(outbox: &Path) -> Peek {
    if !outbox.exists() {
        return Peek::default();
    }
    let look = || -> rusqlite::Result<Peek> {
        let conn = Connection::open_with_flags(
            outbox,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let high_water: Option<i64> = conn
            .query_row(
                "SELECT last_sequence FROM device_marks WHERE device_address = ?1",
                [tm_gateway::simulate::SIMULATED_DEVICE],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let unacknowledged: i64 =
            conn.query_row("SELECT COUNT(*) FROM readings WHERE state = 0", [], |r| {
                r.get(0)
            })?;
        Ok(Peek {
            high_water: high_water.and_then(|s| u32::try_from(s).ok()),
            unacknowledged: u64::try_from(unacknowledged).unwrap_or(0),
        })
    };
    // A brand-new outbox may not have its tables yet.
    look().unwrap_or_default()
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Waits until the agent has committed a sequence above `before`.
fn await_own_commit(outbox: &Path, before: Option<u32>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = peek(outbox).high_water;
        if now.is_some() && now > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent committed nothing within 30 s of its start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `kills` mid-stream SIGKILLs of the agent streaming at `rate` readings/s, then lets one
/// more agent finish the stream and waits (up to `drain`) for the provider to hold it all.
pub async fn kill_soak(
    gw: &GatewaySide,
    provider: &ProviderSide,
    kills: u32,
    rate: u32,
    drain: Duration,
) -> SoakReport {
    let outbox = gw.dir.join("outbox.db");
    let mut report = SoakReport::default();
    let mut seed = u64::from(std::process::id()) | 1;
    for _ in 0..kills {
        let before = peek(&outbox).high_water;
        let mut agent: Agent = gw.spawn_agent(OPEN_ENDED, rate);
        await_own_commit(&outbox, before);
        let wait = next(&mut seed) % (KILL_WINDOW_MS + 1);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let seen = peek(&outbox);
        kill(&mut agent);
        report.kills += 1;
        if seen.high_water > before && seen.high_water < Some(OPEN_ENDED - 1) {
            report.mid_stream += 1;
        }
        if seen.unacknowledged > 0 {
            report.in_flight += 1;
        }
    }
    let last = peek(&outbox).high_water.map_or(0, |s| s + 1);
    report.readings = last + TAIL;
    let mut agent = gw.spawn_agent(report.readings, 0);
    let expected = u64::from(report.readings);
    super::eventually(drain, || async {
        provider.count().await >= expected && gw.status()["backlog"] == 0
    })
    .await;
    kill(&mut agent);
    let (rows, mut seqs) = provider.readings().await;
    seqs.sort_unstable();
    seqs.dedup();
    let distinct = u64::try_from(seqs.iter().filter(|s| **s < report.readings).count()).unwrap();
    report.lost = expected - distinct;
    report.duplicated = rows - u64::try_from(seqs.len()).unwrap();
    report
}
