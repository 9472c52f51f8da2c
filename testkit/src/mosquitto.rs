//! A mosquitto broker for one test: its own configuration file in the test's directory,
//! anonymous clients, no persistence, listeners on ephemeral ports bound to 127.0.0.1 only,
//! stopped by the PID it spawned (never by name).
//!
//! ```no_run
//! # let dir = std::path::Path::new("/tmp");
//! let broker = tm_testkit::mosquitto::Mosquitto::builder()
//!     .config("max_inflight_messages 64")
//!     .start(dir);
//! let _url = broker.url();
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::net::{free_port, wait_for_port};

/// The broker's TLS listener.
#[derive(Debug, Clone)]
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// The options of a [`Mosquitto`] before it starts.
#[derive(Debug, Clone)]
pub struct Builder {
    plain: bool,
    tls: Option<Tls>,
    config: Vec<String>,
    output: Option<PathBuf>,
}

/// A running broker.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    conf: PathBuf,
    output: Option<PathBuf>,
    plain_port: Option<u16>,
    tls_port: Option<u16>,
}

impl Mosquitto {
    /// A plain listener, nothing else; see [`Builder`] for the options.
    pub fn builder() -> Builder {
        Builder {
            plain: true,
            tls: None,
            config: Vec::new(),
            output: None,
        }
    }

    /// A broker with one plain listener, started in `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::builder().start(dir)
    }

    /// The plain listener's port.
    pub fn port(&self) -> u16 {
        self.plain_port.expect("the broker has a plain listener")
    }

    /// The TLS listener's port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("the broker has a TLS listener")
    }

    /// `mqtt://127.0.0.1:<plain port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port())
    }

    /// `mqtts://127.0.0.1:<TLS port>`.
    pub fn tls_url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.tls_port())
    }

    /// What the broker wrote to stdout and stderr, when [`Builder::output`] was given.
    pub fn output(&self) -> String {
        self.output
            .as_ref()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Panics (with its output) when the broker has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("the broker was started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mosquitto exited ({status}):\n{}", self.output());
        }
    }

    /// Stops the broker (SIGKILL to the PID we spawned) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker and starts it again on the same configuration and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let (stdout, stderr) = match &self.output {
            Some(path) => {
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(bin())
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("mosquitto is installed");
        self.child = Some(child);
        for port in self.plain_port.iter().chain(&self.tls_port) {
            wait_for_port(*port);
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Builder {
    /// No plain listener (a broker reachable over TLS only).
    pub fn without_plain(mut self) -> Self {
        self.plain = false;
        self
    }

    /// A TLS listener presenting `cert` with `key` (the broker reads a copy of the key that its
    /// unprivileged user can read: started as root, mosquitto opens it after switching user).
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: None,
        });
        self
    }

    /// The TLS listener admits only clients presenting a certificate issued by `ca`
    /// (`require_certificate true`).
    pub fn client_ca(mut self, ca: &Path) -> Self {
        self.tls
            .as_mut()
            .expect("client certificates need a TLS listener")
            .client_ca = Some(ca.to_owned());
        self
    }

    /// A line of the broker's configuration, written before the listeners (general settings:
    /// `max_packet_size`, `max_inflight_messages`, `log_type`, ...).
    pub fn config(mut self, line: &str) -> Self {
        self.config.push(line.to_owned());
        self
    }

    /// The broker logs to stderr, and its stdout and stderr are appended to `path` (a restarted
    /// broker continues the same file). Without it both are discarded.
    pub fn output(mut self, path: &Path) -> Self {
        self.output = Some(path.to_owned());
        self
    }

    /// Writes the configuration into `dir` and starts the broker; returns once every listener
    /// accepts connections (bounded).
    pub fn start(self, dir: &Path) -> Mosquitto {
        let plain_port = self.plain.then(free_port);
        let tls_port = self.tls.as_ref().map(|_| free_port());
        let name = plain_port.or(tls_port).expect("the broker has a listener");
        // As deployed (docs/deployment.md): messages forwarded at once, not held by Nagle.
        let mut text =
            String::from("allow_anonymous true\npersistence false\nset_tcp_nodelay true\n");
        if self.output.is_some() {
            text += "log_dest stderr\n";
        }
        for line in &self.config {
            text += line;
            text += "\n";
        }
        if let Some(port) = plain_port {
            text += &format!("listener {port} 127.0.0.1\n");
        }
        if let (Some(tls), Some(port)) = (&self.tls, tls_port) {
            let key = dir.join(format!("mosquitto-{name}.key"));
            readable_copy(&tls.key, &key);
            text += &format!(
                "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                tls.cert.display(),
                key.display()
            );
            if let Some(ca) = &tls.client_ca {
                text += &format!("cafile {}\nrequire_certificate true\n", ca.display());
            }
        }
        let conf = dir.join(format!("mosquitto-{name}.conf"));
        std::fs::write(&conf, text).unwrap();
        let mut broker = Mosquitto {
            child: None,
            conf,
            output: self.output,
            plain_port,
            tls_port,
        };
        broker.spawn();
        broker
    }
}

fn readable_copy(key: &Path, copy: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::copy(key, copy).unwrap();
    std::fs::set_permissions(copy, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// `mosquitto` on the PATH, or where Debian installs it (`/usr/sbin`, often not on a user's
/// PATH).
pub fn bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mosquitto"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/mosquitto")])
        .find(|p| p.is_file())
        .expect("the test needs mosquitto (Debian: apt-get install mosquitto)")
}
