//! Bonding through our own `org.bluez.Agent1`: passkey typed from the device, numeric
//! comparison confirmed (and refused), and a passkey displayed for the device to type. The PIN
//! path runs with the glucose meter in `devices`. The connection `tm-gateway pair` makes after
//! bonding leaves the device's stored records for the agent's link.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use btleplug::api::Peripheral as _;
use tm_devices::catalog::ClockSetting;
use tm_gateway::ble::pairing::{self, Prompt};
use tm_gateway::ble::session;
use tm_sim_bluez::{PairingMode, profiles};

use super::*;

/// Starts the central with no paired device, so discovery exports `device` for the bond.
async fn discovered(device: tm_sim_bluez::DeviceSpec) -> Agent {
    let agent = start(vec![device], &[]).await;
    agent
        .wait_sim("discovery", |f| f.discovery_filter().len() > 1)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oximeter_passkey_pairing_and_spot_check() {
    let _g = SERIAL.lock().await;
    let mut oxi = profiles::oximeter(OXI);
    oxi.stored
        .push(profiles::spot_check(97, 64, minutes_ago(2)));
    let agent = discovered(oxi.clone()).await;
    pairing::pair(
        "hci0",
        OXI,
        Arc::new(|p| (p == Prompt::Passkey).then(|| "123456".into())),
    )
    .await
    .unwrap();
    assert!(agent.fake.is_paired(OXI).unwrap());
    agent.stop().await;
    // The agent restarts with the device recorded as paired.
    let agent = start(vec![oxi], &[(OXI, "sig-pulse-oximeter")]).await;
    agent.wait("SpO2", |o| o.readings.len() == 1).await;
    let r = agent.stop().await.remove(0);
    assert_eq!(value(&r, "2708-6"), 97.0, "{:?}", r.components);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_comparison_bonds_only_when_the_number_is_confirmed() {
    let _g = SERIAL.lock().await;
    let mut th = profiles::thermometer(THERMO);
    th.pairing = Some(PairingMode::Confirm(314_159));
    let agent = discovered(th).await;
    // The nurse sees another number on the device and refuses.
    let refused = pairing::pair("hci0", THERMO, Arc::new(|_| Some("no".into()))).await;
    assert!(refused.is_err(), "a refused comparison must not bond");
    assert!(!agent.fake.is_paired(THERMO).unwrap());
    // `--pin 314159`: the number given matches the device's.
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    pairing::pair(
        "hci0",
        THERMO,
        Arc::new(move |p| {
            seen.lock().unwrap().push(p);
            Some("314159".into())
        }),
    )
    .await
    .unwrap();
    assert!(agent.fake.is_paired(THERMO).unwrap());
    assert_eq!(*asked.lock().unwrap(), vec![Prompt::Confirm(314_159)]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn displayed_passkey_is_shown_to_the_nurse_and_bonds() {
    let _g = SERIAL.lock().await;
    let mut th = profiles::thermometer(THERMO);
    th.pairing = Some(PairingMode::Display(27_182));
    let agent = discovered(th).await;
    let shown = Arc::new(Mutex::new(Vec::new()));
    let seen = shown.clone();
    pairing::pair(
        "hci0",
        THERMO,
        Arc::new(move |p| {
            seen.lock().unwrap().push(p);
            None
        }),
    )
    .await
    .unwrap();
    assert!(agent.fake.is_paired(THERMO).unwrap());
    assert_eq!(*shown.lock().unwrap(), vec![Prompt::Display(27_182)]);
    agent.stop().await;
}

/// `tm-gateway pair` reads Device Information and battery and sets the clock without
/// subscribing: the cuff deletes the records it indicates, so they must wait for the agent's
/// link, which stashes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifying_a_device_for_pairing_leaves_its_records_for_the_link() {
    let _g = SERIAL.lock().await;
    let mut cuff = profiles::bp_cuff(CUFF);
    cuff.stored
        .push(profiles::blood_pressure(131, 84, 99, 70, minutes_ago(3)));
    let agent = discovered(cuff).await;
    let adapter = tm_gateway::ble::open_adapter("hci0").await.unwrap();
    let p = tm_gateway::ble::find_peripheral(&adapter, CUFF)
        .await
        .unwrap()
        .expect("the cuff was discovered");
    let found = session::identify(&p, ClockSetting::Cts).await.unwrap();
    assert_eq!(found.dis.model.as_deref(), Some("SIM-BP200"));
    assert_eq!(found.battery_pct, Some(76));
    assert!(
        agent
            .fake
            .written(CUFF)
            .unwrap()
            .iter()
            .any(|w| w.uuid == 0x2A2B)
    );
    p.disconnect().await.unwrap();
    // Paired now: the agent's link subscribes and receives the record.
    let mut d = tm_gateway::ble::paired::PairedDevice::new(CUFF);
    d.model_id = Some("sig-blood-pressure".into());
    agent.store.upsert(d).unwrap();
    agent.fake.set_paired(CUFF).await.unwrap();
    agent
        .wait("the cuff's stored record", |o| o.readings.len() == 1)
        .await;
    let r = agent.stop().await.remove(0);
    assert_eq!(value(&r, "8480-6"), 131.0, "{:?}", r.components);
}
