//! Every scripted device through the real btleplug path: values, time quality, clock set as
//! the catalog says, stored records not duplicated across reconnects.

use std::sync::Arc;
use std::time::Duration;

use tm_gateway::ble::pairing;
use tm_protocol::TimeQuality;
use tm_sim_bluez::{FakeBluez, bus::shared_test_bus, profiles};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_records_resent_on_reconnect_are_not_duplicated_and_clock_is_set() {
    let _g = SERIAL.lock().await;
    let mut scale = profiles::weight_scale(SCALE);
    scale
        .stored
        .push(profiles::weight_kg(14_000, minutes_ago(30)));
    let agent = start(
        vec![scale, profiles::headphones("C0:FF:EE:00:00:99")],
        &[(SCALE, "sig-weight-scale")],
    )
    .await;
    agent.wait("first weight", |o| o.readings.len() == 1).await;
    // Link loss; the scale keeps advertising and re-sends its memory on the next connection.
    agent.fake.drop_link(SCALE).await.unwrap();
    agent
        .wait_sim("reconnect", |f| f.connections(SCALE).unwrap() >= 2)
        .await;
    agent
        .wait("the re-sent record", |o| o.duplicates >= 1)
        .await;
    // A live reading after reconnecting.
    agent
        .wait_sim("subscribed", |f| f.is_connected(SCALE).unwrap())
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        agent
            .fake
            .indicate(SCALE, 0x2A9D, profiles::weight_kg(14_100, minutes_ago(0)))
            .await
            .unwrap()
    );
    agent
        .wait("the live weight", |o| o.readings.len() == 2)
        .await;
    let written = agent.fake.written(SCALE).unwrap();
    assert!(
        written
            .iter()
            .filter(|w| w.uuid == 0x2A2B && w.value.len() == 10)
            .count()
            >= 2,
        "{written:?}"
    );
    assert!(
        agent
            .fake
            .discovery_filter()
            .iter()
            .any(|u| u.starts_with("0000181d"))
    );
    let paired = agent.store.load().unwrap();
    assert_eq!(paired[0].model.as_deref(), Some("SIM-WS100"));
    assert_eq!(paired[0].battery_pct, Some(88));
    let readings = agent.stop().await;
    assert_eq!(readings.len(), 2, "{readings:#?}");
    assert!(
        (value(&readings[0], "29463-7") - 70.0).abs() < 1e-9,
        "{:?}",
        readings[0].components
    );
    assert!((value(&readings[1], "29463-7") - 70.5).abs() < 1e-9);
    assert!(
        readings
            .iter()
            .all(|r| r.time_quality == TimeQuality::DeviceSynced)
    );
    assert_eq!(readings[0].device.address, SCALE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bp_cuff_reading_values_and_cts() {
    let _g = SERIAL.lock().await;
    let mut cuff = profiles::bp_cuff(CUFF);
    let at = minutes_ago(10);
    cuff.stored
        .push(profiles::blood_pressure(128, 82, 97, 66, at));
    let agent = start(vec![cuff], &[(CUFF, "sig-blood-pressure")]).await;
    agent.wait("BP", |o| o.readings.len() == 1).await;
    let written = agent.fake.written(CUFF).unwrap();
    assert!(written.iter().any(|w| w.uuid == 0x2A2B));
    let r = agent.stop().await.remove(0);
    assert_eq!(value(&r, "8480-6"), 128.0);
    assert_eq!(value(&r, "8462-4"), 82.0);
    assert_eq!(r.device_time, Some(at));
    assert_eq!(r.time_quality, TimeQuality::DeviceSynced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glucose_pin_pairing_and_racp_from_last_sequence() {
    let _g = SERIAL.lock().await;
    let bus = shared_test_bus();
    let mut meter = profiles::glucose_meter(GLUCO);
    meter.stored = (1..=3)
        .map(|s| profiles::glucose_mg_dl(s, 90 + s as i16, minutes_ago(60)))
        .collect();
    // Bond first, answering the PIN prompt, on a simulator of its own.
    {
        let fake = FakeBluez::start(bus, vec![meter.clone()]).await.unwrap();
        let adapter = tm_gateway::ble::open_adapter("hci0").await.unwrap();
        btleplug::api::Central::start_scan(&adapter, Default::default())
            .await
            .unwrap();
        for _ in 0..100 {
            if tm_gateway::ble::find_peripheral(&adapter, GLUCO)
                .await
                .unwrap()
                .is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let wrong = pairing::pair("hci0", GLUCO, Arc::new(|_| Some("0000".into()))).await;
        assert!(wrong.is_err(), "a wrong PIN must fail");
        pairing::pair(
            "hci0",
            GLUCO,
            Arc::new(|p| (p == pairing::Prompt::Pin).then(|| "4321".into())),
        )
        .await
        .unwrap();
        assert!(fake.is_paired(GLUCO).unwrap());
        fake.stop().await.unwrap();
    }
    let agent = start(vec![meter], &[(GLUCO, "sig-glucose")]).await;
    agent
        .wait("3 glucose records", |o| o.readings.len() == 3)
        .await;
    agent.fake.drop_link(GLUCO).await.unwrap();
    agent
        .fake
        .queue_record(GLUCO, profiles::glucose_mg_dl(4, 140, minutes_ago(5)))
        .unwrap();
    agent
        .wait("the new record", |o| o.readings.len() == 4)
        .await;
    let racp: Vec<Vec<u8>> = agent
        .fake
        .written(GLUCO)
        .unwrap()
        .into_iter()
        .filter(|w| w.uuid == 0x2A52)
        .map(|w| w.value)
        .collect();
    assert_eq!(
        racp,
        vec![vec![0x01, 0x01], vec![0x01, 0x03, 0x01, 0x04, 0x00]]
    );
    let dups = agent.outbox.lock().unwrap().duplicates;
    let readings = agent.stop().await;
    assert_eq!(dups, 0, "RACP from the last sequence re-sends nothing");
    let seqs: Vec<_> = readings.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, vec![Some(1), Some(2), Some(3), Some(4)]);
    assert!(
        (value(&readings[3], "2339-0") - 140.0).abs() < 1e-6,
        "{:?}",
        readings[3].components
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn and_cuff_gets_date_time_in_time_and_unset_clock_is_not_trusted() {
    let _g = SERIAL.lock().await;
    let mut cuff = profiles::and_cuff(AND, Duration::from_secs(2));
    // The cuff's clock was never set: its memory carries a 2000-01-01 time stamp.
    let unset = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 3, 0)
        .unwrap();
    cuff.stored
        .push(profiles::blood_pressure(135, 88, 104, 71, unset));
    let agent = start(vec![cuff], &[(AND, "and-ua-651ble")]).await;
    agent.wait("BP", |o| o.readings.len() == 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        agent.fake.is_connected(AND).unwrap(),
        "the cuff dropped the link: no Date Time in time"
    );
    let dt: Vec<_> = agent
        .fake
        .written(AND)
        .unwrap()
        .into_iter()
        .filter(|w| w.uuid == 0x2A08)
        .collect();
    assert_eq!(dt.len(), 1);
    assert_eq!(dt[0].value.len(), 7);
    let r = agent.stop().await.remove(0);
    assert_eq!(r.time_quality, TimeQuality::DeviceUnsetUntrusted);
    assert_eq!(value(&r, "8480-6"), 135.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_advert_of_a_scale_new_to_bluez_is_recorded_once() {
    let _g = SERIAL.lock().await;
    let agent = start_with_mi_weighing().await;
    // The scale goes out of range and BlueZ forgets it. Its next weighing is one stable frame
    // in one advert: BlueZ creates the device object again, with that frame in its
    // properties (InterfacesAdded), and hears nothing more.
    agent.fake.remove_device(MI).await.unwrap();
    agent.weigh_again_on_mi();
    agent.fake.advertise_once(MI).await.unwrap();
    agent
        .wait("the single advert's weight", |o| o.readings.len() == 2)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let readings = agent.stop().await;
    assert_eq!(readings.len(), 2, "recorded once");
    assert!(
        (value(&readings[1], "29463-7") - 71.5).abs() < 1e-9,
        "{:?}",
        readings[1].components
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xiaomi_adverts_are_read_without_connecting_and_repeats_collapse() {
    let _g = SERIAL.lock().await;
    let agent = start_with_mi_weighing().await;
    // The same frame keeps coming every advertising interval: still one reading.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(agent.outbox.lock().unwrap().readings.len(), 1);
    agent.weigh_again_on_mi();
    agent
        .wait("second Mi weight", |o| o.readings.len() == 2)
        .await;
    assert_eq!(agent.fake.connections(MI).unwrap(), 0);
    let readings = agent.stop().await;
    assert!(
        (value(&readings[0], "29463-7") - 70.5).abs() < 1e-9,
        "{:?}",
        readings[0].components
    );
}
