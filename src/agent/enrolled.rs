//! The enrolled run of `tm-gateway run`. Every long-running part is an actor in one
//! [`JoinSet`] sharing the run's [`CancellationToken`] (a child of the agent's, cancelled by
//! SIGTERM/SIGINT, by the first actor that fails, or by a `release` command):
//!
//! - the outbox writer thread (owns SQLite) and the stash forwarder (capture -> writer);
//! - the MQTT event loop (MQTT transport only);
//! - the syncer (lease, seal, send, settle) and the heartbeat;
//! - the command actor ([`crate::sync::commands`]): signed provider commands (re-sync now, log
//!   level, re-read devices, the setup page's commands, release) from the HTTPS poll and, on
//!   MQTT, the gateway's command topic; results reported over the link;
//! - the BLE side ([`crate::ble::supervisor`]): discovery, one link per paired device, stashing
//!   every reading; while BlueZ or the adapter is missing it retries and keeps an alarm raised,
//!   and everything else carries on; a `reread-devices` command restarts it;
//! - the setup scanner ([`crate::setup::scanner`]), scanning only while setup mode is on; the
//!   one [`crate::setup::SetupMode`] of the run is shared with the heartbeat and the command
//!   actor, and pairing jobs started by `pair` commands run under the run's token;
//! - the systemd watchdog ([`crate::health`]), pinged only while both the BLE and the sync
//!   loops turn;
//! - SIMULATOR ONLY, in builds with the `simulator` feature and when asked: a synthetic device
//!   feeding the stash (`crate::simulate`).
//!
//! The agent exits non-zero when an actor fails so systemd restarts it; leases left behind are
//! reset at the next start. An outbox error is not such a failure: the actors log it and retry
//! (a full disk raises the `disk-full` alarm, see [`crate::store::diskfull`]); only the outbox
//! writer being gone stops them. A disk too full to open the outbox at start is waited out.
//! After a `release` the run drains like a stop (the outbox writer is joined) and returns
//! [`RunEnd::Released`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::RunEnd;
use crate::ble::central::BleOptions;
use crate::ble::paired::PairedStore;
use crate::ble::supervisor::{BleActor, reread_channel};
use crate::config::Config;
use crate::enrollment::Enrollment;
use crate::setup::scanner::{Radio, Scanner};
use crate::setup::{SetupControl, SetupMode};
use crate::stash::StashHandle;
use crate::store::{Outbox, OutboxHandle, writer};
use crate::sync::{HttpsLink, Link, MqttParts, Syncer, commands, heartbeat};

/// SIMULATOR ONLY: a synthetic device for tests, soak runs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulation {
    /// Records the simulated device holds in total (sequence 0..count).
    pub count: u32,
    /// Records per second (0 = as fast as the outbox takes them).
    pub per_second: u32,
}

/// Runs the enrolled agent until `agent` is cancelled, an actor fails, or a `release`
/// command was carried out. Setup mode is on until `setup_until`, when given.
#[allow(clippy::too_many_lines)]
pub(super) async fn run(
    config: &Config,
    key: Arc<tm_protocol::SigningKey>,
    enrollment: Enrollment,
    setup_until: Option<chrono::DateTime<chrono::Utc>>,
    simulation: Option<Simulation>,
    agent: &CancellationToken,
) -> anyhow::Result<RunEnd> {
    let cancel = agent.child_token();
    let released = CancellationToken::new();
    let provider_key = enrollment
        .provider_key()
        .context("the enrollment holds no valid provider key: enroll again")?;
    let Some((outbox, report)) = open_outbox(config, &cancel).await? else {
        return Ok(RunEnd::Stopped);
    };
    if let Some(aside) = report.moved_aside {
        tracing::error!(moved_to = %aside.display(), "outbox was corrupt; a fresh one is in use");
    }
    let (outbox, writer_thread) = writer::spawn(outbox);
    let (stash, stash_rx) = StashHandle::channel();

    let mut actors: JoinSet<anyhow::Result<&'static str>> = JoinSet::new();
    {
        // A reported `release` ends this run (not the agent).
        let (released, cancel) = (released.clone(), cancel.clone());
        actors.spawn(async move {
            tokio::select! {
                () = released.cancelled() => cancel.cancel(),
                () = cancel.cancelled() => {}
            }
            Ok("release")
        });
    }
    let setup = SetupMode::new();
    if let Some(until) = setup_until {
        setup.set_until(until, chrono::Utc::now());
        tracing::info!(%until, "setup mode on: the nurse's phone can pair the devices");
    }
    let radio = Radio::new(&config.adapter);
    {
        let scanner = Scanner {
            mode: setup.clone(),
            radio: radio.clone(),
            store: PairedStore::in_state_dir(&config.state_dir),
        };
        let cancel = cancel.clone();
        actors.spawn(
            async move {
                scanner.run(cancel).await;
                Ok("setup-scanner")
            }
            .instrument(tracing::info_span!("setup")),
        );
    }
    {
        let outbox = outbox.clone();
        let cancel = cancel.clone();
        actors.spawn(async move {
            tokio::select! {
                () = outbox.serve_stash(stash_rx) => {}
                () = cancel.cancelled() => {}
            }
            Ok("stash")
        });
    }

    let sync = &enrollment.sync;
    let (link, orphans, pushed_commands) = match sync.transport {
        tm_protocol::Transport::Mqtt => {
            let url = sync
                .mqtt_url
                .as_deref()
                .context("the enrollment selects MQTT but holds no broker URL")?;
            let parts = MqttParts::new(
                url,
                &enrollment.gateway_id,
                key.clone(),
                provider_key,
                &config.sync,
            )?;
            let event_loop = parts.event_loop;
            let cancel = cancel.clone();
            actors.spawn(
                async move {
                    event_loop.run(cancel).await;
                    Ok("mqtt")
                }
                .instrument(tracing::info_span!("mqtt")),
            );
            (
                Link::Mqtt(parts.link),
                Some(parts.orphan_receipts),
                Some(parts.commands),
            )
        }
        tm_protocol::Transport::Https => (
            Link::Https(HttpsLink::new(&sync.https_url, provider_key, &config.sync)?),
            None,
            None,
        ),
    };
    // systemd (Type=notify): the watchdog is pinged only while the sync and BLE loops turn.
    let notifier = crate::health::Notifier::from_env();
    let mut progress = crate::health::Progress::new(notifier.watchdog_interval());
    let resync = Arc::new(tokio::sync::Notify::new());
    let syncer = Syncer {
        outbox: outbox.clone(),
        link: link.clone(),
        orphan_receipts: orphans,
        gateway: enrollment.gateway_id.clone(),
        key: key.clone(),
        config: config.sync.clone(),
        retain_acknowledged: Duration::from_secs(config.store.retain_acknowledged_h * 3600),
        resync: resync.clone(),
        beat: Some(progress.register("sync")),
    };
    {
        let cancel = cancel.clone();
        actors.spawn(
            async move {
                syncer.run(cancel).await?;
                Ok("sync")
            }
            .instrument(tracing::info_span!("sync")),
        );
    }
    let interval = config
        .sync
        .heartbeat_interval_s
        .unwrap_or(sync.heartbeat_interval_s)
        .max(1);
    actors.spawn(
        heartbeat_actor(
            outbox.clone(),
            crate::ble::paired::PairedStore::in_state_dir(&config.state_dir),
            link.clone(),
            enrollment.gateway_id.clone(),
            key.clone(),
            Duration::from_secs(u64::from(interval)),
            setup.clone(),
            cancel.clone(),
        )
        .instrument(tracing::info_span!("heartbeat")),
    );
    let (reread, rereads) = reread_channel();
    {
        // Commands are polled over HTTPS whatever the reading transport, and pushed over MQTT
        // on the MQTT transport; results go back over the link.
        let poll_link = HttpsLink::new(&sync.https_url, provider_key, &config.sync)?;
        let actor = commands::CommandActor {
            guard: commands::CommandGuard::open(
                provider_key,
                enrollment.gateway_id.clone(),
                &config.state_dir,
            ),
            executor: commands::Executor {
                resync,
                reread: Some(reread),
                setup: Some(SetupControl::new(
                    setup.clone(),
                    radio.clone(),
                    PairedStore::in_state_dir(&config.state_dir),
                    cancel.clone(),
                )),
                release: Some(commands::Release {
                    state_dir: config.state_dir.clone(),
                    released: released.clone(),
                }),
            },
            poll: commands::Poll {
                client: poll_link.client(),
                url: format!(
                    "{}{}",
                    sync.https_url.trim_end_matches('/'),
                    tm_protocol::routes::http::commands(&enrollment.gateway_id)
                ),
                interval: Duration::from_secs(u64::from(interval)),
            },
            pushed: pushed_commands,
            reporter: commands::Reporter {
                link,
                gateway: enrollment.gateway_id.clone(),
                key,
            },
        };
        let cancel = cancel.clone();
        actors.spawn(
            async move {
                actor.run(cancel).await;
                Ok("commands")
            }
            .instrument(tracing::info_span!("commands")),
        );
    }
    {
        let ble = BleActor {
            opts: BleOptions::new(&config.adapter),
            store: PairedStore::in_state_dir(&config.state_dir),
            stash: stash.clone(),
            outbox: outbox.clone(),
            rereads,
            beat: Some(progress.register("ble")),
        };
        let cancel = cancel.clone();
        actors.spawn(
            async move {
                ble.run(cancel).await;
                Ok("ble")
            }
            .instrument(tracing::info_span!("ble")),
        );
    }
    #[cfg(feature = "simulator")]
    if let Some(sim) = simulation {
        tracing::warn!("SIMULATOR: feeding synthetic readings into the outbox");
        actors.spawn(simulate(stash.clone(), outbox.clone(), sim, cancel.clone()));
    }
    #[cfg(not(feature = "simulator"))]
    if simulation.is_some() {
        anyhow::bail!("this build has no simulator (cargo feature `simulator`)");
    }

    // Ready once every actor runs.
    {
        let (notifier, cancel) = (notifier.clone(), cancel.clone());
        actors.spawn(async move {
            crate::health::watchdog(notifier, progress, cancel).await;
            Ok("watchdog")
        });
    }
    notifier.notify("READY=1");

    let mut failure = None;
    while let Some(joined) = actors.join_next().await {
        match joined {
            Ok(Ok(name)) => tracing::debug!(actor = name, "actor stopped"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "actor failed; stopping the agent");
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(anyhow::anyhow!("actor panicked: {e}"));
            }
        }
        if !cancel.is_cancelled() && (failure.is_some() || actors.is_empty()) {
            notifier.notify("STOPPING=1");
            cancel.cancel();
        }
    }
    let ended = if released.is_cancelled() && failure.is_none() {
        notifier.notify("STATUS=released by the provider");
        RunEnd::Released
    } else {
        notifier.notify("STOPPING=1");
        RunEnd::Stopped
    };
    drop((stash, outbox));
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    failure.map_or(Ok(ended), Err)
}

/// Opens the outbox. A disk too full even for that (after the reserve was released) is waited
/// out, retrying every [`OPEN_RETRY`], instead of exiting into a restart loop; `None` when
/// cancelled meanwhile.
async fn open_outbox(
    config: &Config,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<(Outbox, crate::store::OpenReport)>> {
    let notifier = crate::health::Notifier::from_env();
    loop {
        let path = config.outbox_path();
        let quota = config.store.quota_bytes();
        match tokio::task::spawn_blocking(move || Outbox::open(&path, quota))
            .await
            .context("outbox open task")?
        {
            Ok(opened) => return Ok(Some(opened)),
            Err(crate::store::StoreError::Sqlite { source, path })
                if crate::store::diskfull::is_disk_full(&source) =>
            {
                tracing::error!(path = %path.display(), error = %source, "the disk is full: the outbox cannot be opened; retrying");
                notifier.notify("STATUS=disk full: the outbox cannot be opened");
                notifier.notify("WATCHDOG=1");
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(OPEN_RETRY) => {}
        }
    }
}

/// Pause between attempts to open the outbox on a full disk.
const OPEN_RETRY: Duration = Duration::from_secs(10);

#[allow(clippy::too_many_arguments)]
async fn heartbeat_actor(
    outbox: OutboxHandle,
    paired: crate::ble::paired::PairedStore,
    link: Link,
    gateway: tm_protocol::GatewayId,
    key: Arc<tm_protocol::SigningKey>,
    interval: Duration,
    setup: SetupMode,
    cancel: CancellationToken,
) -> anyhow::Result<&'static str> {
    heartbeat::run(
        outbox,
        paired,
        link,
        gateway,
        key,
        interval,
        Some(setup),
        cancel,
    )
    .await;
    Ok("heartbeat")
}

#[cfg(feature = "simulator")]
/// SIMULATOR ONLY: stashes records `high-water+1 .. count` of the simulated device, in chunks,
/// waiting for each commit like a BLE link would before acknowledging records to a device.
async fn simulate(
    stash: StashHandle,
    outbox: OutboxHandle,
    sim: Simulation,
    cancel: CancellationToken,
) -> anyhow::Result<&'static str> {
    let device = crate::simulate::SIMULATED_DEVICE;
    let start = outbox
        .high_water(device.into())
        .await?
        .map_or(0, |s| s.saturating_add(1));
    let chunk = if sim.per_second == 0 {
        500
    } else {
        (sim.per_second / 20).clamp(1, 500)
    };
    let pause = if sim.per_second == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(f64::from(chunk) / f64::from(sim.per_second))
    };
    let mut next = start;
    while next < sim.count && !cancel.is_cancelled() {
        let end = next.saturating_add(chunk).min(sim.count);
        let items: Vec<crate::stash::Stashable> = (next..end)
            .map(|s| {
                crate::stash::Stashable::Reading(Box::new(crate::simulate::reading(device, s)))
            })
            .collect();
        match stash.stash(items).await {
            Ok(_) => next = end,
            Err(e) => {
                tracing::warn!(error = %e, "SIMULATOR: outbox refused records; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if !pause.is_zero() {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
    // Finishing the feed is not a reason to stop the agent.
    cancel.cancelled().await;
    Ok("simulator")
}
