//! Pairing driven from the nurse's phone, through the command executor, against the BlueZ
//! simulator while the agent's central runs: the scale (Just Works) pairs in the background
//! and the central then collects its record; the oximeter waits for its passkey, a wrong one
//! fails in plain words, the right one pairs it; a secret nobody waits for is refused; unpair
//! removes the bond and the entry.

use std::time::Duration;

use tm_gateway::setup::scanner::Radio;
use tm_gateway::setup::{SetupControl, SetupMode};
use tm_gateway::sync::commands::{Executor, Outcome};
use tm_protocol::CommandAction;
use tm_protocol::setup::{PairingProgress, PairingStep};
use tokio_util::sync::CancellationToken;

use super::*;

fn executor(agent: &Agent, cancel: &CancellationToken) -> (Executor, SetupMode) {
    let mode = SetupMode::new();
    let now = chrono::Utc::now();
    mode.set_until(now + chrono::Duration::minutes(5), now);
    let control = SetupControl::new(
        mode.clone(),
        Radio::new("hci0"),
        agent.store.clone(),
        cancel.clone(),
    );
    let exec = Executor {
        resync: Arc::new(tokio::sync::Notify::new()),
        reread: None,
        setup: Some(control),
        release: None,
    };
    (exec, mode)
}

/// Waits (bounded) until the pairing of `address` is at `step`; returns its progress and the
/// steps seen on the way.
async fn step_of(
    mode: &SetupMode,
    address: &str,
    step: PairingStep,
) -> (PairingProgress, Vec<PairingStep>) {
    let mut rx = mode.watch_pairings();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            let now = rx
                .borrow_and_update()
                .iter()
                .find(|p| p.address == address)
                .cloned();
            if let Some(p) = now {
                if seen.last() != Some(&p.step) {
                    seen.push(p.step);
                }
                if p.step == step {
                    return p;
                }
                assert!(
                    !p.step.is_final() || step.is_final(),
                    "pairing ended at {p:?}, waiting for {step:?}"
                );
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    match found {
        Ok(p) => (p, seen),
        Err(_) => panic!("{address} never reached {step:?}; steps {seen:?}"),
    }
}

fn pair(address: &str) -> CommandAction {
    CommandAction::Pair {
        address: address.into(),
    }
}

fn secret(address: &str, secret: &str) -> CommandAction {
    CommandAction::PairSecret {
        address: address.into(),
        secret: secret.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_pairs_in_the_background_and_is_then_collected() {
    let _g = SERIAL.lock().await;
    let mut scale = tm_sim_bluez::profiles::weight_scale(SCALE);
    scale
        .stored
        .push(tm_sim_bluez::profiles::weight_kg(14_100, minutes_ago(4)));
    let agent = start(vec![scale], &[]).await;
    let cancel = CancellationToken::new();
    let (exec, mode) = executor(&agent, &cancel);

    assert_eq!(
        exec.execute(&pair(SCALE)).await,
        Outcome::Done("pairing started".into())
    );
    let (paired, _) = step_of(&mode, SCALE, PairingStep::Paired).await;
    assert_eq!(paired.battery_pct, Some(88));
    assert_eq!(paired.error, None);
    assert!(agent.fake.is_paired(SCALE).unwrap());
    let recorded = agent.store.load().unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].model_id.as_deref(), Some("sig-weight-scale"));
    assert_eq!(recorded[0].model.as_deref(), Some("SIM-WS100"));
    // The central noticed the new entry and collects the scale's stored record.
    agent
        .wait("the newly paired scale's record", |o| o.readings.len() == 1)
        .await;
    cancel.cancel();
    let r = agent.stop().await.remove(0);
    assert_eq!(value(&r, "29463-7"), 70.5, "{:?}", r.components);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oximeter_waits_for_its_passkey_and_a_wrong_one_fails_plainly() {
    let _g = SERIAL.lock().await;
    let agent = start(vec![tm_sim_bluez::profiles::oximeter(OXI)], &[]).await;
    let cancel = CancellationToken::new();
    let (exec, mode) = executor(&agent, &cancel);

    // No pairing waits yet: a secret is refused.
    assert_eq!(
        exec.execute(&secret(OXI, "123456")).await,
        Outcome::Failed("no pairing of that device is waiting for a secret".into())
    );
    // A wrong passkey: the device refuses, the page is told why in plain words.
    assert_eq!(
        exec.execute(&pair(OXI)).await,
        Outcome::Done("pairing started".into())
    );
    step_of(&mode, OXI, PairingStep::NeedsPasskey).await;
    // The command actor is free while the pairing waits: another command runs at once.
    assert_eq!(
        exec.execute(&pair(OXI)).await,
        Outcome::Done("pairing already under way".into())
    );
    assert_eq!(
        exec.execute(&secret(OXI, "654321")).await,
        Outcome::Done("secret handed to the pairing".into())
    );
    let (failed, _) = step_of(&mode, OXI, PairingStep::Failed).await;
    assert_eq!(
        failed.error.as_deref(),
        Some("The device refused the passkey: check the number on its screen and try again")
    );
    assert_eq!(
        failed.failure,
        Some(tm_protocol::setup::PairingFailure::WrongSecret)
    );
    assert!(!agent.fake.is_paired(OXI).unwrap());
    assert!(agent.store.load().unwrap().is_empty());

    // The retry with the passkey on the device's screen pairs it.
    assert_eq!(
        exec.execute(&pair(OXI)).await,
        Outcome::Done("pairing started".into())
    );
    step_of(&mode, OXI, PairingStep::NeedsPasskey).await;
    assert_eq!(
        exec.execute(&secret(OXI, " 123456 ")).await,
        Outcome::Done("secret handed to the pairing".into())
    );
    let (paired, _) = step_of(&mode, OXI, PairingStep::Paired).await;
    assert!(paired.battery_pct.is_some());
    assert!(agent.fake.is_paired(OXI).unwrap());
    assert_eq!(agent.store.load().unwrap()[0].address, OXI);
    // The setup state lists it once, newest first.
    let state = mode.state(chrono::Utc::now()).unwrap();
    assert_eq!(state.pairings.len(), 1);

    // Unpair: bond and entry gone, the page sees it.
    assert_eq!(
        exec.execute(&CommandAction::Unpair {
            address: OXI.into()
        })
        .await,
        Outcome::Done("unpaired".into())
    );
    let (unpaired, _) = step_of(&mode, OXI, PairingStep::Unpaired).await;
    assert_eq!(unpaired.address, OXI);
    assert!(agent.store.load().unwrap().is_empty());
    assert!(!agent.fake.is_paired(OXI).unwrap());

    // A `setup` whose `until` has passed ends setup mode.
    assert_eq!(
        exec.execute(&CommandAction::Setup {
            until: chrono::Utc::now() - chrono::Duration::seconds(1)
        })
        .await,
        Outcome::Done("setup mode off".into())
    );
    assert!(mode.state(chrono::Utc::now()).is_none());
    cancel.cancel();
    agent.stop().await;
}
