//! Our own BlueZ pairing agent (`org.bluez.Agent1`, capability KeyboardDisplay) and the bond
//! procedure btleplug lacks: register the agent, make it the default, `Device1.Pair`, then
//! `Trusted=true` so the device may reconnect by itself. Answers Just-Works, passkey, PIN and
//! numeric-comparison prompts from a [`Secrets`] source (the `--pin` option, or a prompt on the
//! terminal), and shows the passkey a keyboard device must type (`DisplayPasskey`).

use std::sync::Arc;

use zbus::{OwnedObjectPath, interface};

/// Where the agent's own object lives.
pub const AGENT_PATH: &str = "/net/telemonitoring/gateway/agent";

/// What BlueZ asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// A legacy PIN code.
    Pin,
    /// A 6-digit passkey shown on the device.
    Passkey,
    /// Numeric comparison: does the device show this number? `yes`/`y`, or the same number,
    /// confirms; anything else refuses.
    Confirm(u32),
    /// The nurse must type this passkey on the device; the answer is ignored.
    Display(u32),
}

/// Whether `answer` confirms the numeric comparison of `passkey`.
pub fn confirms(answer: &str, passkey: u32) -> bool {
    let a = answer.trim();
    a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes") || a.parse() == Ok(passkey)
}

/// Answers prompts; `None` refuses (BlueZ then fails the bond with AuthenticationRejected).
pub type Secrets = Arc<dyn Fn(Prompt) -> Option<String> + Send + Sync>;

/// Errors of the agent towards BlueZ.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.bluez.Error")]
enum AgentError {
    #[zbus(error)]
    ZBus(zbus::Error),
    Rejected(String),
}

struct Agent {
    secrets: Secrets,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Agent")
    }
}

impl Agent {
    async fn ask(&self, prompt: Prompt) -> Option<String> {
        let secrets = self.secrets.clone();
        tokio::task::spawn_blocking(move || secrets(prompt))
            .await
            .ok()
            .flatten()
    }
}

#[interface(name = "org.bluez.Agent1")]
impl Agent {
    fn release(&self) {}

    async fn request_pin_code(&self, _device: OwnedObjectPath) -> Result<String, AgentError> {
        self.ask(Prompt::Pin)
            .await
            .ok_or_else(|| AgentError::Rejected("no PIN".into()))
    }

    async fn request_passkey(&self, _device: OwnedObjectPath) -> Result<u32, AgentError> {
        let s = self
            .ask(Prompt::Passkey)
            .await
            .ok_or_else(|| AgentError::Rejected("no passkey".into()))?;
        s.trim()
            .parse()
            .map_err(|_| AgentError::Rejected("passkey must be digits".into()))
    }

    async fn display_passkey(&self, _device: OwnedObjectPath, passkey: u32, _entered: u16) {
        self.ask(Prompt::Display(passkey)).await;
    }

    fn display_pin_code(&self, _device: OwnedObjectPath, pincode: String) {
        tracing::info!("type PIN {pincode} on the device");
    }

    async fn request_confirmation(
        &self,
        _device: OwnedObjectPath,
        passkey: u32,
    ) -> Result<(), AgentError> {
        match self.ask(Prompt::Confirm(passkey)).await {
            Some(a) if confirms(&a, passkey) => Ok(()),
            _ => Err(AgentError::Rejected("passkey not confirmed".into())),
        }
    }

    fn request_authorization(&self, _device: OwnedObjectPath) {}

    fn authorize_service(&self, _device: OwnedObjectPath, _uuid: String) {}

    fn cancel(&self) {}
}

/// Errors of the bond procedure, with what the nurse should do.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error(
        "the device refused the bond ({0}); put it in pairing mode and check the PIN or passkey"
    )]
    Refused(String),
}

fn device_path(adapter: &str, address: &str) -> String {
    format!(
        "/org/bluez/{adapter}/dev_{}",
        address.to_ascii_uppercase().replace(':', "_")
    )
}

/// Bonds with `address` on `adapter`, answering prompts from `secrets`. A device already
/// bonded is fine.
pub async fn pair(adapter: &str, address: &str, secrets: Secrets) -> Result<(), PairError> {
    let conn = zbus::Connection::system().await?;
    conn.object_server()
        .at(AGENT_PATH, Agent { secrets })
        .await?;
    let agent = OwnedObjectPath::try_from(AGENT_PATH)?;
    let mgr = "org.bluez.AgentManager1";
    conn.call_method(
        Some("org.bluez"),
        "/org/bluez",
        Some(mgr),
        "RegisterAgent",
        &(&agent, "KeyboardDisplay"),
    )
    .await?;
    conn.call_method(
        Some("org.bluez"),
        "/org/bluez",
        Some(mgr),
        "RequestDefaultAgent",
        &(&agent,),
    )
    .await?;
    let path = device_path(adapter, address);
    let result = conn
        .call_method(
            Some("org.bluez"),
            path.as_str(),
            Some("org.bluez.Device1"),
            "Pair",
            &(),
        )
        .await;
    let outcome = match result {
        Ok(_) => Ok(()),
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.bluez.Error.AlreadyExists" =>
        {
            Ok(())
        }
        Err(zbus::Error::MethodError(name, msg, _)) => {
            Err(PairError::Refused(msg.unwrap_or_else(|| name.to_string())))
        }
        Err(e) => Err(e.into()),
    };
    if outcome.is_ok() {
        let trusted = zbus::Variant::from(true);
        conn.call_method(
            Some("org.bluez"),
            path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Set",
            &("org.bluez.Device1", "Trusted", trusted),
        )
        .await?;
    }
    let _ = conn
        .call_method(
            Some("org.bluez"),
            "/org/bluez",
            Some(mgr),
            "UnregisterAgent",
            &(&agent,),
        )
        .await;
    outcome
}

/// Removes the bond (`Adapter1.RemoveDevice`). A device BlueZ does not know is fine.
pub async fn unpair(adapter: &str, address: &str) -> Result<(), PairError> {
    let conn = zbus::Connection::system().await?;
    let dev = OwnedObjectPath::try_from(device_path(adapter, address))?;
    match conn
        .call_method(
            Some("org.bluez"),
            format!("/org/bluez/{adapter}").as_str(),
            Some("org.bluez.Adapter1"),
            "RemoveDevice",
            &(dev,),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.bluez.Error.DoesNotExist" =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
