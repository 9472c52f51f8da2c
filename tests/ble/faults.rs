//! The link state machine and the central under faults: connections refused, StartNotify
//! failing, services resolved too slowly, discovery stalling, link loss, the device removed
//! from BlueZ and the device unpaired while the agent runs. Every case ends with the reading
//! stashed once and no link task left behind.

use std::time::Duration;

use tm_sim_bluez::profiles;

use super::*;

fn thermometer_with_record() -> tm_sim_bluez::DeviceSpec {
    let mut th = profiles::thermometer(THERMO);
    th.stored
        .push(profiles::temperature_tenths_c(372, minutes_ago(1)));
    th
}

fn cuff_with_record() -> tm_sim_bluez::DeviceSpec {
    let mut cuff = profiles::bp_cuff(CUFF);
    cuff.stored
        .push(profiles::blood_pressure(131, 84, 99, 70, minutes_ago(3)));
    cuff
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thermometer_that_fails_to_connect_three_times_then_succeeds() {
    let _g = SERIAL.lock().await;
    let refuse_three = Faults {
        connect_failures: 3,
        ..Default::default()
    };
    let agent = start_with(
        vec![thermometer_with_record()],
        &[(THERMO, "sig-thermometer")],
        &[(THERMO, refuse_three)],
        test_options(),
    )
    .await;
    agent.wait("temperature", |o| o.readings.len() == 1).await;
    // Only the fourth attempt was accepted.
    assert_eq!(agent.fake.connections(THERMO).unwrap(), 1);
    let r = agent.stop().await.remove(0);
    assert!(
        (value(&r, "8310-5") - 37.2).abs() < 1e-9,
        "{:?}",
        r.components
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_notify_failure_is_retried_on_a_fresh_connection() {
    let _g = SERIAL.lock().await;
    let notify_fails_once = Faults {
        start_notify_failures: 1,
        ..Default::default()
    };
    let agent = start_with(
        vec![cuff_with_record()],
        &[(CUFF, "sig-blood-pressure")],
        &[(CUFF, notify_fails_once)],
        test_options(),
    )
    .await;
    agent.wait("BP", |o| o.readings.len() == 1).await;
    assert_eq!(
        agent.fake.connections(CUFF).unwrap(),
        2,
        "the failed subscription must end in a disconnect and a second connection"
    );
    let cts = agent
        .fake
        .written(CUFF)
        .unwrap()
        .iter()
        .filter(|w| w.uuid == 0x2A2B)
        .count();
    assert_eq!(cts, 2, "the clock is set on each connection");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(agent.outbox.lock().unwrap().duplicates, 0);
    let r = agent.stop().await.remove(0);
    assert_eq!(value(&r, "8480-6"), 131.0);
    assert_eq!(value(&r, "8462-4"), 84.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_resolved_too_late_times_out_and_the_next_connection_succeeds() {
    let _g = SERIAL.lock().await;
    let slow = Faults {
        services_resolved_delay: Duration::from_secs(4),
        ..Default::default()
    };
    let opts = BleOptions {
        connect_timeout: Duration::from_secs(1),
        ..test_options()
    };
    let agent = start_with(
        vec![cuff_with_record()],
        &[(CUFF, "sig-blood-pressure")],
        &[(CUFF, slow)],
        opts,
    )
    .await;
    agent
        .wait_sim("first connection", |f| f.connections(CUFF).unwrap() >= 1)
        .await;
    // The device behaves on its next connection.
    agent.fake.set_faults(CUFF, Faults::default()).unwrap();
    agent.wait("BP", |o| o.readings.len() == 1).await;
    assert_eq!(agent.fake.connections(CUFF).unwrap(), 2);
    let r = agent.stop().await.remove(0);
    assert_eq!(value(&r, "8480-6"), 131.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_restarts_discovery_when_bluez_goes_quiet() {
    let _g = SERIAL.lock().await;
    let agent = start_with_mi_weighing().await;
    let starts = agent.fake.discovery_starts();
    // BlueZ stops reporting while still claiming to discover; a new weighing happens.
    agent.fake.stall_discovery();
    agent.weigh_again_on_mi();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        agent.outbox.lock().unwrap().readings.len(),
        1,
        "the stall hides adverts"
    );
    agent
        .wait("the weight seen after the restart", |o| {
            o.readings.len() == 2
        })
        .await;
    assert!(agent.fake.discovery_starts() > starts);
    assert!(agent.status.borrow().discovery_starts >= 2);
    let readings = agent.stop().await;
    assert!((value(&readings[1], "29463-7") - 71.5).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_device_is_recovered_when_it_advertises_again() {
    let _g = SERIAL.lock().await;
    let mut cuff = profiles::bp_cuff(CUFF);
    cuff.stored
        .push(profiles::blood_pressure(120, 80, 93, 60, minutes_ago(20)));
    let agent = start(vec![cuff], &[(CUFF, "sig-blood-pressure")]).await;
    let t0 = std::time::Instant::now();
    agent.wait("BP", |o| o.readings.len() == 1).await;
    let first = agent.outbox.lock().unwrap().first_at.unwrap() - t0;
    println!("advertisement to reading stashed: {} ms", first.as_millis());
    agent.fake.remove_device(CUFF).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent
        .fake
        .queue_record(
            CUFF,
            profiles::blood_pressure(118, 79, 92, 61, minutes_ago(1)),
        )
        .unwrap();
    agent.fake.set_advertising(CUFF, true).unwrap();
    agent
        .wait("BP after coming back", |o| o.readings.len() == 2)
        .await;
    let readings = agent.stop().await;
    assert_eq!(value(&readings[1], "8480-6"), 118.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_tasks_do_not_leak_across_losses_removals_and_unpairing() {
    let _g = SERIAL.lock().await;
    let mut scale = profiles::weight_scale(SCALE);
    scale
        .stored
        .push(profiles::weight_kg(14_000, minutes_ago(4)));
    let agent = start(
        vec![scale, cuff_with_record()],
        &[(SCALE, "sig-weight-scale"), (CUFF, "sig-blood-pressure")],
    )
    .await;
    agent.wait("both devices", |o| o.readings.len() == 2).await;
    agent.wait_status("two links", |s| s.live_links == 2).await;
    // Three rounds of link loss on the scale and removal of the cuff from BlueZ.
    for round in 1..=3u32 {
        agent.fake.drop_link(SCALE).await.unwrap();
        agent.fake.remove_device(CUFF).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        agent.fake.set_advertising(CUFF, true).unwrap();
        agent
            .wait_sim("both reconnected", |f| {
                f.connections(SCALE).unwrap() > round && f.connections(CUFF).unwrap() > round
            })
            .await;
        assert_eq!(agent.status.borrow().live_links, 2, "round {round}");
    }
    // Unpaired while the agent runs: its link task stops and lets go of the device.
    assert!(agent.store.remove(CUFF).unwrap());
    agent.wait_status("one link", |s| s.live_links == 1).await;
    agent
        .wait_sim("cuff released", |f| !f.is_connected(CUFF).unwrap())
        .await;
    let cuff_connections = agent.fake.connections(CUFF).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(agent.fake.connections(CUFF).unwrap(), cuff_connections);
    // Paired again: one new task, not two.
    let mut again = PairedDevice::new(CUFF);
    again.model_id = Some("sig-blood-pressure".into());
    agent.store.upsert(again).unwrap();
    agent
        .wait_status("two links again", |s| s.live_links == 2)
        .await;
    agent
        .wait_sim("cuff reconnected", |f| {
            f.connections(CUFF).unwrap() > cuff_connections
        })
        .await;
    let readings = agent.stop().await;
    assert_eq!(readings.len(), 2, "nothing read twice: {readings:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_paired_while_the_agent_runs_is_linked_at_once_and_unpaired_released() {
    let _g = SERIAL.lock().await;
    // The fallback re-read is ten minutes away: only the file's change can start the link.
    let opts = BleOptions {
        paired_reload: Duration::from_secs(600),
        ..test_options()
    };
    let agent = start_with(vec![cuff_with_record()], &[], &[], opts).await;
    agent.wait_status("discovering", |s| s.discovering).await;
    assert_eq!(agent.status.borrow().live_links, 0);
    // The nurse pairs the cuff with the CLI, another process writing the file.
    let mut cuff = tm_gateway::ble::paired::PairedDevice::new(CUFF);
    cuff.model_id = Some("sig-blood-pressure".into());
    agent.store.upsert(cuff).unwrap();
    agent.fake.set_paired(CUFF).await.unwrap();
    agent
        .wait("the cuff's record", |o| o.readings.len() == 1)
        .await;
    assert_eq!(agent.status.borrow().live_links, 1);
    // And unpairs it: the link stops and lets go of the device.
    assert!(agent.store.remove(CUFF).unwrap());
    agent.wait_status("no link", |s| s.live_links == 0).await;
    agent
        .wait_sim("cuff released", |f| !f.is_connected(CUFF).unwrap())
        .await;
    agent.stop().await;
}

/// Discovery is per client, as in BlueZ: one client stopping its scan (the setup scanner when
/// setup mode ends) leaves another client's (the agent's central) running; a client that never
/// started one cannot stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_stopped_discovery_leaves_anothers_running() {
    let _g = SERIAL.lock().await;
    let bus = tm_sim_bluez::bus::PrivateBus::start().expect("dbus-daemon");
    let _sim = tm_sim_bluez::FakeBluez::start(bus.address(), vec![])
        .await
        .expect("simulator");
    let connect = || async {
        zbus::connection::Builder::address(bus.address())
            .build()
            .await
            .unwrap()
    };
    let (central, scanner, other) = (connect().await, connect().await, connect().await);
    async fn adapter(c: &zbus::Connection, method: &str) -> zbus::Result<zbus::Message> {
        c.call_method(
            Some("org.bluez"),
            "/org/bluez/hci0",
            Some("org.bluez.Adapter1"),
            method,
            &(),
        )
        .await
    }
    async fn discovering(c: &zbus::Connection) -> bool {
        let answer = c
            .call_method(
                Some("org.bluez"),
                "/org/bluez/hci0",
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.bluez.Adapter1", "Discovering"),
            )
            .await
            .unwrap();
        let value: zbus::OwnedVariant = answer.body().deserialize().unwrap();
        bool::try_from(value).unwrap()
    }
    adapter(&central, "StartDiscovery").await.unwrap();
    adapter(&scanner, "StartDiscovery").await.unwrap();
    adapter(&scanner, "StopDiscovery").await.unwrap();
    assert!(
        discovering(&central).await,
        "the central's discovery goes on"
    );
    let refused = adapter(&other, "StopDiscovery").await.unwrap_err();
    assert!(
        refused.to_string().contains("No discovery started"),
        "{refused}"
    );
    adapter(&central, "StopDiscovery").await.unwrap();
    assert!(!discovering(&central).await);
}
