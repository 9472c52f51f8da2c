//! One chain on loopback, every part its own process: a mosquitto with its own configuration
//! (MQTT only), the Portal/HUB emulator, the provider on a SQLite file, the BlueZ simulator on
//! its private bus and the gateway agent. [`Chain`] starts them, talks to each the way its
//! users do (the emulator's control API, the provider's pages, the gateway's CLI) and reads the
//! provider's database read-only. When a test fails, dropping it prints the tail of every log
//! and keeps the directory for a look.
//!
//! The chain's CA ([`TestCa`]) signs one server certificate for 127.0.0.1: the provider serves
//! HTTPS with it and the broker's TLS listener with a copy of its key. The gateway
//! (`[sync] ca_file`), the emulator (`--ca-file`) and the test's client trust the CA.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tm_protocol::Reading;

use std::net::SocketAddr;

use tm_testkit::balancer::Balancer;
use tm_testkit::mosquitto::Mosquitto;
use tm_testkit::net::free_port;
use tm_testkit::pki::TestCa;
use tm_testkit::wait::wait_for;

use super::configs::{self, Broker, HEART_FAILURE, HUB_CLIENT, HUB_SECRET, PORTAL_KEY, PRESCRIBER};
use super::procs::{Proc, bins, run, run_ok, tail};
use super::web::Web;

/// How the gateway ships its readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `POST /api/v1/readings` at the provider.
    Https,
    /// Through the broker, to the provider's shared subscription.
    Mqtt,
}

/// How many providers serve the chain, on which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One instance on a SQLite file (the embedded default).
    One,
    /// Two instances on one PostgreSQL database behind a load balancer: gateways, the Portal
    /// and the EHR reach them through it (HTTPS), the broker splits MQTT ingest between them.
    TwoOnPostgres,
}

/// The chain's store.
enum ChainStore {
    Sqlite(PathBuf),
    Postgres(tm_testkit::postgres::Database),
}

/// One provider instance: its configuration, its own URL, its process while it runs.
struct Instance {
    name: String,
    config: PathBuf,
    url: String,
    proc: Option<Proc>,
}

/// How the provider is stopped before it is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: it must exit by itself, successfully.
    Term,
    /// SIGKILL: nothing gets to finish.
    Kill,
}

/// `TM_LOG` for the children: the caller's, or `info`.
fn log_filter() -> String {
    std::env::var("TM_LOG").unwrap_or_else(|_| "info".into())
}

/// The running chain. Fields drop in order: the gateway stops first, the broker last.
pub struct Chain {
    gateway: Option<Proc>,
    bluez: Option<Proc>,
    providers: Vec<Instance>,
    balancer: Option<Balancer>,
    hub: Proc,
    mosquitto: Option<Mosquitto>,
    web: Web,
    pub hub_url: String,
    /// `https://127.0.0.1:<port>`: the provider, or the balancer in front of the instances.
    pub provider_url: String,
    store: ChainStore,
    gateway_config: PathBuf,
    gateway_state: PathBuf,
    bus: Option<String>,
    logs: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Chain {
    /// Starts the broker (MQTT), the emulator and the provider(s), and waits until they
    /// answer.
    pub fn start(transport: Transport, topology: Topology) -> Self {
        let bins = bins();
        let dir = tempfile::Builder::new()
            .prefix("tm-chain-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_owned();
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        for sub in ["provider", "gateway", "pki"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let ca = TestCa::new(&root.join("pki"), "chain-ca");
        let (cert_file, key_file) = ca.server_cert(&root.join("pki"));

        // A TLS listener for gateways, a plain loopback one for the provider, log on stderr.
        let mosquitto = (transport == Transport::Mqtt).then(|| {
            Mosquitto::builder()
                .config("log_type error")
                .config("log_type warning")
                .config("log_type notice")
                .tls(&cert_file, &key_file)
                .output(&logs.join("mosquitto.log"))
                .start(&root)
        });
        let broker = mosquitto.as_ref().map(|m| Broker {
            plain_port: m.port(),
            tls_port: m.tls_port(),
        });

        let hub_port = free_port();
        let ports: Vec<u16> = match topology {
            Topology::One => vec![free_port()],
            Topology::TwoOnPostgres => vec![free_port(), free_port()],
        };
        let balancer = (topology == Topology::TwoOnPostgres).then(|| {
            Balancer::start(
                ports
                    .iter()
                    .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                    .collect(),
            )
        });
        let public_port = balancer.as_ref().map_or(ports[0], |b| b.addr().port());
        let hub_url = format!("http://127.0.0.1:{hub_port}");
        let provider_url = format!("https://127.0.0.1:{public_port}");
        let mut cmd = Command::new(&bins.hub);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{hub_port}")])
            .args(["--client", &format!("{HUB_CLIENT}:{HUB_SECRET}")])
            .args([
                "--provider-url",
                &format!("{provider_url}/portal/v1/prescriptions"),
            ])
            .args(["--action-url", &format!("{provider_url}/portal/v1/actions")])
            .args(["--header", &format!("X-Tm-Portal-Key: {PORTAL_KEY}")])
            .arg("--ca-file")
            .arg(&ca.pem_file)
            .env("TM_LOG", log_filter());
        let hub = Proc::spawn("tm-sim-hub", cmd, &logs);

        let secret = root.join("provider/hub-secret");
        std::fs::write(&secret, HUB_SECRET).unwrap();
        let (store, database) = match topology {
            Topology::One => {
                let path = root.join("provider/provider.db");
                let setting = format!("[database]\npath = {:?}\n", path.display().to_string());
                (ChainStore::Sqlite(path), setting)
            }
            Topology::TwoOnPostgres => {
                let db = tm_testkit::postgres::Database::create("chain");
                let setting = format!(
                    "[database]\nurl = \"{}?sslmode=disable\"\npassword_file = {:?}\n",
                    db.url(),
                    db.password_file().display().to_string()
                );
                (ChainStore::Postgres(db), setting)
            }
        };
        let keys_dir = root.join("provider");
        let providers: Vec<Instance> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let name = match ports.len() {
                    1 => "tm-provider".to_owned(),
                    _ => format!(
                        "tm-provider-{}",
                        char::from(b'a' + u8::try_from(i).unwrap())
                    ),
                };
                let config = root.join(format!("provider/{name}.toml"));
                let settings = configs::Provider {
                    port: *port,
                    public_port,
                    database: &database,
                    keys_dir: &keys_dir,
                    hub_url: &hub_url,
                    hub_secret_file: &secret,
                    cert_file: &cert_file,
                    key_file: &key_file,
                    broker,
                };
                std::fs::write(&config, configs::provider(&settings)).unwrap();
                Instance {
                    name,
                    config,
                    url: format!("https://127.0.0.1:{port}"),
                    proc: None,
                }
            })
            .collect();

        let gateway_state = root.join("gateway");
        let gateway_config = root.join("gateway.toml");
        std::fs::write(
            &gateway_config,
            configs::gateway(&gateway_state, &ca.pem_file),
        )
        .unwrap();

        let mut chain = Self {
            gateway: None,
            bluez: None,
            providers,
            balancer,
            hub,
            mosquitto,
            web: Web::new(&ca.pem_file),
            hub_url,
            provider_url,
            store,
            gateway_config,
            gateway_state,
            bus: None,
            logs,
            dir: Some(dir),
        };
        chain.wait_http(&format!("{}/control/stats", chain.hub_url));
        // One after the other: the first creates the key files the others then load.
        for i in 0..chain.providers.len() {
            chain.start_provider(i);
        }
        chain
    }

    /// How many provider instances the chain has.
    pub fn instances(&self) -> usize {
        self.providers.len()
    }

    fn wait_http(&mut self, url: &str) {
        let what = format!("{url} to answer");
        wait_for(&what, Duration::from_secs(30), || {
            self.hub.assert_running();
            for p in self.providers.iter_mut().filter_map(|i| i.proc.as_mut()) {
                p.assert_running();
            }
            self.web.answers(url)
        });
    }

    /// Starts instance `i`'s `tm-provider serve` on its configuration (same port, same
    /// database) and waits for its `/healthz`.
    pub fn start_provider(&mut self, i: usize) {
        let instance = &self.providers[i];
        assert!(instance.proc.is_none(), "{} is running", instance.name);
        let mut cmd = Command::new(&bins().provider);
        cmd.arg("--config")
            .arg(&instance.config)
            .arg("serve")
            .env("TM_LOG", log_filter());
        let proc = Proc::spawn(&instance.name, cmd, &self.logs);
        let health = format!("{}/healthz", instance.url);
        self.providers[i].proc = Some(proc);
        self.wait_http(&health);
    }

    /// SIGKILL to instance `i`.
    pub fn kill_provider(&mut self, i: usize) {
        self.providers[i]
            .proc
            .take()
            .expect("the instance runs")
            .kill();
    }

    /// Instance `i`'s log so far.
    pub fn provider_log(&self, i: usize) -> String {
        self.providers[i]
            .proc
            .as_ref()
            .map(|p| std::fs::read_to_string(p.log()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Connections the balancer gave each instance (none without a balancer).
    pub fn balanced(&self) -> Vec<usize> {
        self.balancer
            .as_ref()
            .map(Balancer::served)
            .unwrap_or_default()
    }

    /// Stops instance `i` (`how`) and starts it again on the same database and port.
    pub fn restart_provider(&mut self, i: usize, how: Stop) {
        let mut p = self.providers[i]
            .proc
            .take()
            .expect("the provider is running");
        match how {
            Stop::Term => {
                let status = p.terminate(Duration::from_secs(15));
                assert!(
                    status.success(),
                    "the provider exited with {status} on SIGTERM:\n{}",
                    tail(p.log(), 40)
                );
            }
            Stop::Kill => {
                p.kill();
            }
        }
        self.start_provider(i);
    }

    /// `POST /control/prescribe` for a heart-failure patient: returns the enrollment page the
    /// provider answered with.
    pub fn prescribe(&self, id: &str) -> String {
        let answer = self.web.post_json(
            &format!("{}/control/prescribe", self.hub_url),
            &json!({
                "telemonitoringId": id,
                "patientId": "pseudo-4711",
                "prescriberId": PRESCRIBER,
                "fields": {"patient.language": "nl"},
            }),
        );
        assert_eq!(answer["status"], 200, "the provider's answer: {answer}");
        answer["body"]["url"]
            .as_str()
            .unwrap_or_else(|| panic!("no enrollment page in the answer: {answer}"))
            .to_owned()
    }

    /// The nurse keeps the heart-failure carepath on the page and reads the one-time code.
    pub fn enrollment_code(&self, page: &str) -> String {
        let html = self.web.post_form(page, &[("carepath", HEART_FAILURE)]);
        let start = html
            .find("id=\"code\">")
            .unwrap_or_else(|| panic!("no code on the enrollment page:\n{html}"));
        let rest = &html[start + "id=\"code\">".len()..];
        rest[..rest.find('<').unwrap()].trim().to_owned()
    }

    /// `POST /control/action` (`stop` or `cancel`): the provider's answer.
    pub fn act(&self, id: &str, action: &str) -> Value {
        self.web.post_json(
            &format!("{}/control/action", self.hub_url),
            &json!({"telemonitoringId": id, "action": action}),
        )
    }

    /// `POST /control/faults`: the HUB's next calls fail with `code`, `n` of them.
    pub fn hub_faults(&self, code: u16, n: usize) {
        let faults: Vec<Value> = (0..n)
            .map(|_| json!({"kind": "status", "code": code}))
            .collect();
        let answer = self
            .web
            .post_json(&format!("{}/control/faults", self.hub_url), &json!(faults));
        assert_eq!(answer["queued"], n, "{answer}");
    }

    /// The session as the HUB knows it: status, attachments, timeline.
    pub fn session(&self, id: &str) -> Value {
        self.web
            .get_json(&format!("{}/control/sessions/{id}", self.hub_url))
    }

    /// Every contract violation the emulator recorded.
    pub fn violations(&self) -> Vec<Value> {
        let v = self
            .web
            .get_json(&format!("{}/control/violations", self.hub_url));
        v.as_array().cloned().unwrap_or_default()
    }

    /// GETs `url` with `headers` (an attachment's listed headers) and returns the body.
    pub fn download(&self, url: &str, headers: &Value) -> Vec<u8> {
        self.web.get_bytes(url, headers)
    }

    /// Runs `tm-gateway --config ... ARGS` on the simulator's bus (once it runs) and returns
    /// its stdout; panics when it fails.
    pub fn gateway_cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(&bins().gateway);
        cmd.arg("--config")
            .arg(&self.gateway_config)
            .args(args)
            .env("TM_LOG", "warn");
        if let Some(bus) = &self.bus {
            cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus);
        }
        run_ok(&format!("tm-gateway {}", args.join(" ")), &mut cmd)
    }

    /// `tm-gateway doctor --json`: its checks by name. Its exit status is not asserted (the
    /// simulated BlueZ has no clock synchronisation to report, for one).
    pub fn gateway_doctor(&self) -> BTreeMap<String, Value> {
        let mut cmd = Command::new(&bins().gateway);
        cmd.arg("--config")
            .arg(&self.gateway_config)
            .args(["doctor", "--json"])
            .env("TM_LOG", "warn");
        if let Some(bus) = &self.bus {
            cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus);
        }
        let out: Value = serde_json::from_str(&run("tm-gateway doctor --json", &mut cmd)).unwrap();
        out["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no checks in {out}"))
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
            .collect()
    }

    /// `tm-gateway status --json`.
    pub fn gateway_status(&self) -> Value {
        serde_json::from_str(&self.gateway_cli(&["status", "--json"])).unwrap()
    }

    /// The enrollment the gateway saved.
    pub fn enrollment(&self) -> Value {
        let text = std::fs::read_to_string(self.gateway_state.join("enrollment.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Starts `tm-sim-bluez --household demo --print-address` and waits until it serves.
    pub fn start_bluez(&mut self) {
        let mut cmd = Command::new(&bins().bluez);
        cmd.args(["--household", "demo", "--print-address"])
            .env("TM_LOG", "warn");
        let mut p = Proc::spawn_controlled("tm-sim-bluez", cmd, &self.logs);
        let log = p.log().to_owned();
        let bus = wait_for("the BlueZ simulator", Duration::from_secs(20), || {
            p.assert_running();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let bus = text
                .lines()
                .find_map(|l| l.strip_prefix("DBUS_SYSTEM_BUS_ADDRESS="))
                .map(str::to_owned);
            match bus {
                Some(b) if text.lines().any(|l| l == "READY") => Ok(b),
                _ => Err(text),
            }
        });
        self.bluez = Some(p);
        self.bus = Some(bus);
    }

    /// One control line to the BlueZ simulator (`record ADDR HEX`, `indicate ...`).
    pub fn bluez_control(&mut self, line: &str) {
        self.bluez.as_mut().expect("bluez runs").send_line(line);
    }

    /// The gateway as it leaves the warehouse: its configuration names the provider, it is
    /// not enrolled, and it has the normal one-minute rhythm (setup mode must make it quick).
    /// Returns its claim code, as `tm-gateway identity` prints it for the box's label.
    pub fn unclaimed_gateway(&mut self) -> String {
        let text = std::fs::read_to_string(&self.gateway_config).unwrap();
        let text = text.replace("heartbeat_interval_s = 2\n", "heartbeat_interval_s = 60\n");
        let text = format!("{text}[provider]\nurl = \"{}\"\n", self.provider_url);
        std::fs::write(&self.gateway_config, text).unwrap();
        let identity: Value =
            serde_json::from_str(&self.gateway_cli(&["identity", "--json"])).unwrap();
        identity["claim_code"].as_str().unwrap().to_owned()
    }

    /// The directory the chain's logs and screenshots go to (kept when a test fails).
    pub fn logs(&self) -> &std::path::Path {
        &self.logs
    }

    /// Starts `tm-gateway run` on the simulator's bus with the simulated device feeding
    /// `count` readings at `rate` a second besides the paired devices.
    pub fn start_gateway(&mut self, count: u32, rate: u32) {
        assert!(self.gateway.is_none(), "the gateway is running");
        let mut cmd = Command::new(&bins().gateway);
        cmd.arg("--config")
            .arg(&self.gateway_config)
            .args(["run", "--simulate-readings", &count.to_string()])
            .args(["--simulate-rate", &rate.to_string()])
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                self.bus.as_ref().expect("bluez runs"),
            )
            .env("TM_LOG", log_filter());
        self.gateway = Some(Proc::spawn("tm-gateway", cmd, &self.logs));
    }

    /// Starts `tm-gateway run` on the simulator's bus with nothing but its configuration:
    /// the gateway as the nurse finds it, plugged in.
    pub fn start_gateway_plain(&mut self) {
        assert!(self.gateway.is_none(), "the gateway is running");
        let mut cmd = Command::new(&bins().gateway);
        cmd.arg("--config")
            .arg(&self.gateway_config)
            .arg("run")
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                self.bus.as_ref().expect("bluez runs"),
            )
            .env("TM_LOG", log_filter());
        self.gateway = Some(Proc::spawn("tm-gateway", cmd, &self.logs));
    }

    /// The nurse's form post of `fields` to `url`: the status and the page.
    pub fn post_page(&self, url: &str, fields: &[(&str, &str)]) -> (u16, String) {
        self.web.post_form_status(url, fields)
    }

    /// SIGKILL to the gateway agent.
    pub fn kill_gateway(&mut self) {
        self.gateway.take().expect("the gateway runs").kill();
    }

    /// SIGTERM to the gateway agent; it must exit successfully.
    pub fn stop_gateway(&mut self) {
        let mut p = self.gateway.take().expect("the gateway runs");
        let status = p.terminate(Duration::from_secs(15));
        assert!(
            status.success(),
            "the agent exited with {status}:\n{}",
            tail(p.log(), 40)
        );
    }

    /// Panics with the log tail of any process of the chain that has exited.
    pub fn assert_running(&mut self) {
        for p in [
            self.gateway.as_mut(),
            self.bluez.as_mut(),
            Some(&mut self.hub),
        ]
        .into_iter()
        .flatten()
        {
            p.assert_running();
        }
        for p in self.providers.iter_mut().filter_map(|i| i.proc.as_mut()) {
            p.assert_running();
        }
        if let Some(m) = self.mosquitto.as_mut() {
            m.assert_running();
        }
    }

    /// Every reading the provider stored for session `id`: (reading id column, payload).
    pub fn provider_readings(&self, id: &str) -> Vec<(String, Reading)> {
        let path = match &self.store {
            ChainStore::Sqlite(path) => path,
            ChainStore::Postgres(db) => {
                let rows = db.query_separated(
                    &format!(
                        "SELECT reading_id, payload FROM readings WHERE telemonitoring_id = '{id}'"
                    ),
                    '\u{1f}',
                );
                return rows
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (id, payload) = l.split_once('\u{1f}').unwrap();
                        (id.to_owned(), serde_json::from_str(payload).unwrap())
                    })
                    .collect();
            }
        };
        let conn =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut stmt = conn
            .prepare("SELECT reading_id, payload FROM readings WHERE telemonitoring_id = ?1")
            .unwrap();
        stmt.query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .unwrap()
        .map(|row| {
            let (id, payload) = row.unwrap();
            (id, serde_json::from_str(&payload).unwrap())
        })
        .collect()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.logs)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        for log in logs {
            eprintln!(
                "----- {} (last 40 lines)\n{}",
                log.display(),
                tail(&log, 40)
            );
        }
        let kept = self.dir.take().unwrap().keep();
        eprintln!(
            "----- databases, configurations and logs kept in {}",
            kept.display()
        );
    }
}
