//! The central's own subscription to BlueZ's signals, against the simulator's real bus daemon:
//! the adverts of a device that is not watched are not delivered at all.

use std::cell::Cell;
use std::collections::HashSet;
use std::time::Duration;

use btleplug::api::{Central as _, ScanFilter};
use tm_gateway::ble::signals::{DeviceSignal, DeviceSignals};
use tm_sim_bluez::{FakeBluez, bus::shared_test_bus, profiles};

use super::*;

const OXIMETER: &str = "C0:FF:EE:00:00:07";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_watched_devices_adverts_reach_the_agent() {
    let _g = SERIAL.lock().await;
    let mut mi = profiles::xiaomi_scale(MI);
    mi.service_data
        .push((0x181D, profiles::mi_scale_v1(14_100, minutes_ago(0))));
    // Two devices advertise every 200 ms; only the scale is watched.
    let fake = FakeBluez::start(shared_test_bus(), vec![mi, profiles::oximeter(OXIMETER)])
        .await
        .unwrap();
    let mut signals = DeviceSignals::open("hci0").await.unwrap();
    signals.watch(&HashSet::from([MI])).await.unwrap();
    let adapter = tm_gateway::ble::open_adapter("hci0").await.unwrap();
    adapter.start_scan(ScanFilter::default()).await.unwrap();

    let asked_about_oximeter = Cell::new(0u32);
    let mut scale_adverts = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1_500);
    loop {
        let wanted = |address: &str| {
            if address == OXIMETER {
                asked_about_oximeter.set(asked_about_oximeter.get() + 1);
            }
            address == MI
        };
        let signal = tokio::select! {
            s = signals.next(wanted) => s.expect("bus connection"),
            () = tokio::time::sleep_until(deadline) => break,
        };
        if let DeviceSignal::Advertised { address, .. } = signal {
            assert_eq!(address, MI);
            scale_adverts += 1;
        }
    }
    let _ = adapter.stop_scan().await;
    fake.stop().await.unwrap();
    // About 7 adverts of each device went out. The scale's arrived; of the oximeter only its
    // appearance (InterfacesAdded, sent for every device) was looked at, never its adverts.
    assert!(scale_adverts >= 4, "scale adverts: {scale_adverts}");
    assert!(
        asked_about_oximeter.get() <= 1,
        "the oximeter's signals reached the agent {} times",
        asked_about_oximeter.get()
    );
}
