//! `tm-sim-bluez`: serves a household of scripted devices on its own private D-Bus.
//!
//! `tm-sim-bluez --household demo --print-address` starts a dbus-daemon in a temp dir, serves
//! the household, prints `DBUS_SYSTEM_BUS_ADDRESS=<address>` as its first line, and on SIGTERM
//! or Ctrl-C stops the daemon (by PID) and removes the temp dir.
//!
//! Control from the shell: each line on stdin is a command:
//! `indicate ADDR UUID HEX`, `drop ADDR`, `remove ADDR`, `advertise ADDR on|off`,
//! `record ADDR HEX`, `forget ADDR` (the device's memory emptied), `fail-connect ADDR N`, `fail-notify ADDR N`, `slow-resolve ADDR MS`,
//! `stall` (discovery goes quiet until restarted), `written ADDR`.

use clap::Parser;
use tm_sim_bluez::{DeviceSpec, FakeBluez, Faults, bus::PrivateBus, profiles};
use tokio::io::AsyncBufReadExt as _;

#[derive(Debug, Parser)]
#[command(
    name = "tm-sim-bluez",
    about = "BlueZ D-Bus simulator with scripted health devices"
)]
struct Args {
    /// `demo` (scale, BP cuff, pulse oximeter), `clinic` (every scripted device).
    #[arg(long, default_value = "demo")]
    household: String,
    /// Print `DBUS_SYSTEM_BUS_ADDRESS=<address>` as the first line.
    #[arg(long)]
    print_address: bool,
}

fn household(name: &str) -> anyhow::Result<Vec<DeviceSpec>> {
    let now = chrono::Local::now().naive_local() - chrono::Duration::minutes(5);
    let mut scale = profiles::weight_scale("C0:FF:EE:00:00:01");
    scale.stored.push(profiles::weight_kg(14_000, now));
    let mut cuff = profiles::bp_cuff("C0:FF:EE:00:00:02");
    cuff.stored
        .push(profiles::blood_pressure(128, 82, 97, 66, now));
    // Pairs with the passkey 123456 (`tm-gateway pair C0:FF:EE:00:00:03 --pin 123456`).
    let mut oximeter = profiles::oximeter("C0:FF:EE:00:00:03");
    oximeter.stored.push(profiles::spot_check(97, 64, now));
    Ok(match name {
        "demo" => vec![scale, cuff, oximeter],
        "clinic" => {
            let mut gl = profiles::glucose_meter("C0:FF:EE:00:00:05");
            gl.stored = (1..=3)
                .map(|s| profiles::glucose_mg_dl(s, 95 + 5 * s as i16, now))
                .collect();
            let mut mi = profiles::xiaomi_scale("C0:FF:EE:00:00:06");
            mi.service_data
                .push((0x181D, profiles::mi_scale_v1(14_100, now)));
            vec![
                scale,
                cuff,
                oximeter,
                profiles::thermometer("C0:FF:EE:00:00:04"),
                gl,
                mi,
                profiles::and_cuff("C0:FF:EE:00:00:07", std::time::Duration::from_secs(5)),
            ]
        }
        other => anyhow::bail!("unknown household {other:?} (known: demo, clinic)"),
    })
}

async fn control(sim: &FakeBluez, line: &str) -> anyhow::Result<String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let hex = hex_decode;
    Ok(match w.as_slice() {
        ["indicate", a, u, h] => format!(
            "sent={}",
            sim.indicate(a, u16::from_str_radix(u, 16)?, hex(h)?)
                .await?
        ),
        ["drop", a] => sim.drop_link(a).await.map(|_| "ok".into())?,
        ["remove", a] => sim.remove_device(a).await.map(|_| "ok".into())?,
        ["advertise", a, on] => sim.set_advertising(a, *on == "on").map(|_| "ok".into())?,
        ["record", a, h] => sim.queue_record(a, hex(h)?).map(|_| "ok".into())?,
        ["forget", a] => sim.clear_records(a).map(|_| "ok".into())?,
        ["fail-connect", a, n] => sim
            .set_faults(
                a,
                Faults {
                    connect_failures: n.parse()?,
                    ..Default::default()
                },
            )
            .map(|_| "ok".into())?,
        ["fail-notify", a, n] => sim
            .set_faults(
                a,
                Faults {
                    start_notify_failures: n.parse()?,
                    ..Default::default()
                },
            )
            .map(|_| "ok".into())?,
        ["slow-resolve", a, ms] => sim
            .set_faults(
                a,
                Faults {
                    services_resolved_delay: std::time::Duration::from_millis(ms.parse()?),
                    ..Default::default()
                },
            )
            .map(|_| "ok".into())?,
        ["stall"] => {
            sim.stall_discovery();
            "ok".into()
        }
        ["written", a] => format!("{:?}", sim.written(a)?),
        _ => anyhow::bail!("unknown command"),
    })
}

fn hex_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&s[i..i + 2], 16)?))
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TM_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let devices = household(&args.household)?;
    let bus = PrivateBus::start()?;
    if args.print_address {
        println!("DBUS_SYSTEM_BUS_ADDRESS={}", bus.address());
    }
    let sim = FakeBluez::start(bus.address(), devices).await?;
    println!("READY");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(l)) if !l.trim().is_empty() => match control(&sim, &l).await {
                    Ok(out) => println!("{out}"),
                    Err(e) => println!("error: {e}"),
                },
                Ok(Some(_)) => {}
                _ => stdin_open = false,
            },
        }
    }
    sim.stop().await?;
    drop(bus);
    Ok(())
}
