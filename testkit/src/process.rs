//! Child processes a test starts, stopped by the PID it spawned. Nothing here signals a process
//! the test did not start.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL, by its PID) and reaped when dropped, also when a test fails.
#[derive(Debug)]
pub struct Spawned(Child);

impl From<Child> for Spawned {
    fn from(child: Child) -> Self {
        Self(child)
    }
}

impl Spawned {
    /// Starts `cmd`; panics naming `what` when it cannot be started.
    pub fn start(what: &str, cmd: &mut Command) -> Self {
        Self(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {what}: {e}")),
        )
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The child itself (its piped streams, `wait`).
    pub fn child(&mut self) -> &mut Child {
        &mut self.0
    }

    /// The exit status, when the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().unwrap()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Sends signal `name` (`TERM`, `HUP`, ...) to this process; whether it was delivered.
    pub fn signal(&self, name: &str) -> bool {
        signal(&self.0, name)
    }

    /// SIGKILL, and waits for it.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.0.kill();
        self.0.wait().unwrap()
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.0, limit)
    }

    /// SIGTERM, then waits up to `limit` for a clean exit; `None` when it is still running.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let _ = self.signal("TERM");
        self.wait_exit(limit)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends signal `name` (`TERM`, `HUP`, ...) to `child`, by its PID; whether it was delivered.
pub fn signal(child: &Child, name: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits up to `limit` for `child` to exit; `None` when it is still running.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
