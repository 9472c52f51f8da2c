//! BlueZ's device signals, read from D-Bus without a call back to BlueZ.
//!
//! The central needs two things from BlueZ while it scans: that a paired device advertised
//! (with the service data of advertisement-only devices) and that a device's link went down.
//! btleplug's event stream answers every `PropertiesChanged` signal of every device in range,
//! paired or not, with a `Properties.GetAll` round trip before it says anything, and it drops
//! the service data that come with `InterfacesAdded`: the first advert of a device BlueZ had
//! not seen (one weighing lost per scale that comes into range).
//!
//! So the central reads the two signals itself. BlueZ exports a device as
//! `/org/bluez/hciN/dev_AA_BB_CC_DD_EE_FF`, so the central asks the bus daemon for the
//! `PropertiesChanged` of the paired devices' paths only ([`DeviceSignals::watch`]): the
//! adverts of other devices in range are not even delivered. `InterfacesAdded` (a device BlueZ
//! had not seen, rare) comes for every device, and [`DeviceSignals::next`] decides from the
//! path whether it is wanted before it decodes the properties. Nothing is asked of BlueZ per
//! advert. btleplug stays the path for everything else (connections, GATT, notifications).
//!
//! The signals are matched with `sender='org.bluez'`: the bus delivers only what the owner of
//! that name sent, so another process on the bus cannot forge an advert.

use std::collections::{HashMap, HashSet};

use futures::StreamExt as _;
use zbus::message::Type;
use zbus::{MatchRule, Message, MessageStream, OwnedVariant, Variant};

/// What a device's signal tells the central.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSignal {
    /// The device advertised: it appeared, or its RSSI, advertised services or advertising
    /// data changed. `service_data` holds the service data the signal carried (16-bit UUID
    /// and bytes), empty when it carried none.
    Advertised {
        /// Upper-case Bluetooth address.
        address: String,
        /// Service data of this advert, by 16-bit service UUID.
        service_data: Vec<(u16, Vec<u8>)>,
    },
    /// BlueZ reports the device's link down.
    Disconnected {
        /// Upper-case Bluetooth address.
        address: String,
    },
    /// BlueZ reported something of a device the caller does not want, or a change the central
    /// has no use for: proof that BlueZ still talks (the discovery watchdog), nothing more.
    Other,
}

/// The device signals of one adapter.
pub struct DeviceSignals {
    /// Every message the bus delivers to this connection: what the match rules below select,
    /// and the replies to this connection's own calls.
    stream: MessageStream,
    /// The bus daemon, to add and remove match rules as devices are paired and unpaired.
    bus: zbus::fdo::DBusProxy<'static>,
    /// The connection the match rules live on.
    conn: zbus::Connection,
    /// `/org/bluez/hciN`.
    adapter_path: String,
    /// The `PropertiesChanged` rule of each watched device, by upper-case address. The bus
    /// delivers the signals of these devices only: an unpaired device in range, advertising
    /// five times a second, never wakes the agent.
    watched: HashMap<String, MatchRule<'static>>,
}

impl std::fmt::Debug for DeviceSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSignals")
            .field("adapter_path", &self.adapter_path)
            .field("watched", &self.watched.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

const BLUEZ: &str = "org.bluez";
const DEVICE: &str = "org.bluez.Device1";

impl DeviceSignals {
    /// Subscribes to the appearance of devices (`InterfacesAdded`) under adapter `adapter`
    /// (`hci0`) on the system bus; [`DeviceSignals::watch`] adds the devices whose property
    /// changes are wanted.
    pub async fn open(adapter: &str) -> zbus::Result<Self> {
        let conn = zbus::Connection::system().await?;
        let stream = MessageStream::from(&conn);
        let bus = zbus::fdo::DBusProxy::new(&conn).await?;
        let added = MatchRule::builder()
            .msg_type(Type::Signal)
            .sender(BLUEZ)
            .interface("org.freedesktop.DBus.ObjectManager")
            .member("InterfacesAdded")
            .build()?;
        bus.add_match_rule(added).await?;
        Ok(Self {
            stream,
            bus,
            conn,
            adapter_path: format!("/org/bluez/{adapter}"),
            watched: HashMap::new(),
        })
    }

    /// Receives the property changes (adverts, link state) of exactly the devices in
    /// `addresses` (upper case) from now on: rules for new ones are added, rules of devices no
    /// longer listed removed.
    pub async fn watch(&mut self, addresses: &HashSet<&str>) -> zbus::Result<()> {
        let gone: Vec<String> = self
            .watched
            .keys()
            .filter(|a| !addresses.contains(a.as_str()))
            .cloned()
            .collect();
        for address in gone {
            if let Some(rule) = self.watched.remove(&address) {
                self.bus.remove_match_rule(rule).await?;
            }
        }
        for address in addresses {
            if self.watched.contains_key(*address) {
                continue;
            }
            let rule = MatchRule::builder()
                .msg_type(Type::Signal)
                .sender(BLUEZ)
                .interface("org.freedesktop.DBus.Properties")
                .member("PropertiesChanged")
                .path(device_path(&self.adapter_path, address))
                .arg(0, DEVICE)
                .build()?;
            self.bus.add_match_rule(rule.clone()).await?;
            self.watched.insert((*address).to_owned(), rule);
        }
        Ok(())
    }

    /// The devices BlueZ knows under the adapter now, as adverts without service data (a
    /// cached advert is not a new measurement), and whether each is connected. One call, at
    /// start: a paired device BlueZ already knows is tried at once, as after an advert.
    pub async fn present(&self) -> zbus::Result<Vec<(String, bool)>> {
        let proxy = zbus::fdo::ObjectManagerProxy::builder(&self.conn)
            .destination(BLUEZ)
            .path("/")
            .build()
            .await?;
        let objects = proxy.get_managed_objects().await?;
        let mut present = Vec::new();
        for (path, interfaces) in objects {
            let Some(address) = address_of(path.as_str(), &self.adapter_path) else {
                continue;
            };
            let Some(props) = interfaces.get(DEVICE) else {
                continue;
            };
            let connected = props
                .get("Connected")
                .and_then(|v| bool::try_from(v).ok())
                .unwrap_or(false);
            present.push((address, connected));
        }
        Ok(present)
    }

    /// The next signal; the body of a device's signal is decoded only when `wanted` says yes
    /// to its address. `None` when the bus connection ended.
    pub async fn next(&mut self, wanted: impl Fn(&str) -> bool) -> Option<DeviceSignal> {
        let msg = loop {
            match self.stream.next().await? {
                Ok(msg) if msg.message_type() == Type::Signal => break msg,
                // A reply to one of this connection's calls.
                Ok(_) => {}
                // A message that could not be read from the socket: skip it, as a lost advert.
                Err(e) => tracing::debug!(error = %e, "unreadable D-Bus message"),
            }
        };
        Some(decode(&msg, &self.adapter_path, wanted))
    }
}

/// The object path BlueZ gives the device `address` under `adapter_path`.
fn device_path(adapter_path: &str, address: &str) -> String {
    format!(
        "{adapter_path}/dev_{}",
        address.to_ascii_uppercase().replace(':', "_")
    )
}

/// What one signal says, for the devices `wanted` accepts.
pub fn decode(msg: &Message, adapter_path: &str, wanted: impl Fn(&str) -> bool) -> DeviceSignal {
    let header = msg.header();
    let member = header.member().map(|m| m.as_str().to_owned());
    match member.as_deref() {
        Some("PropertiesChanged") => {
            let Some(address) = header
                .path()
                .and_then(|p| address_of(p.as_str(), adapter_path))
            else {
                return DeviceSignal::Other;
            };
            if !wanted(&address) {
                return DeviceSignal::Other;
            }
            let body = msg.body();
            match body.deserialize::<(String, HashMap<String, OwnedVariant>, Vec<String>)>() {
                Ok((_, changed, _)) => from_properties(address, &changed, false),
                Err(e) => {
                    tracing::debug!(device = %address, error = %e, "malformed PropertiesChanged");
                    DeviceSignal::Other
                }
            }
        }
        Some("InterfacesAdded") => {
            type Added = (
                zbus::OwnedObjectPath,
                HashMap<String, HashMap<String, OwnedVariant>>,
            );
            let body = msg.body();
            let Ok((path, interfaces)) = body.deserialize::<Added>() else {
                return DeviceSignal::Other;
            };
            let Some(address) = address_of(path.as_str(), adapter_path) else {
                return DeviceSignal::Other;
            };
            match interfaces.get(DEVICE) {
                Some(props) if wanted(&address) => from_properties(address, props, true),
                _ => DeviceSignal::Other,
            }
        }
        _ => DeviceSignal::Other,
    }
}

/// The address of a device object directly under `adapter_path`
/// (`/org/bluez/hci0/dev_C0_26_DA_01_02_03` → `C0:26:DA:01:02:03`); `None` for any other path
/// (the adapter, a GATT object below a device, another adapter's device).
pub fn address_of(path: &str, adapter_path: &str) -> Option<String> {
    let name = path.strip_prefix(adapter_path)?.strip_prefix("/dev_")?;
    let octets: Vec<&str> = name.split('_').collect();
    let valid = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    valid.then(|| octets.join(":").to_ascii_uppercase())
}

/// The signal a device's properties make: `appeared` for a new object (`InterfacesAdded`
/// carries every property; the object itself is the advert).
fn from_properties(
    address: String,
    props: &HashMap<String, OwnedVariant>,
    appeared: bool,
) -> DeviceSignal {
    if props
        .get("Connected")
        .is_some_and(|v| bool::try_from(v).ok() == Some(false))
        && !appeared
    {
        return DeviceSignal::Disconnected { address };
    }
    let advertised = appeared
        || ["RSSI", "ServiceData", "ManufacturerData", "UUIDs"]
            .iter()
            .any(|k| props.contains_key(*k));
    if !advertised {
        return DeviceSignal::Other;
    }
    let service_data = props
        .get("ServiceData")
        .map(service_data)
        .unwrap_or_default();
    DeviceSignal::Advertised {
        address,
        service_data,
    }
}

/// `ServiceData` (`a{sv}`, UUID string to a variant holding `ay`) as 16-bit UUIDs and bytes,
/// sorted by UUID; entries that are not SIG 16-bit UUIDs or not bytes are left out.
fn service_data(value: &OwnedVariant) -> Vec<(u16, Vec<u8>)> {
    let Ok(map) = value
        .try_clone()
        .and_then(HashMap::<String, OwnedVariant>::try_from)
    else {
        return Vec::new();
    };
    let mut out: Vec<(u16, Vec<u8>)> = map
        .into_iter()
        .filter_map(|(uuid, v)| {
            let short = super::short_uuid(&uuid::Uuid::parse_str(&uuid).ok()?)?;
            let bytes = match Variant::try_from(&v).ok()? {
                Variant::Variant(inner) => Vec::<u8>::try_from(*inner).ok()?,
                other => Vec::<u8>::try_from(other).ok()?,
            };
            Some((short, bytes))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADAPTER: &str = "/org/bluez/hci0";
    const SCALE: &str = "/org/bluez/hci0/dev_C0_26_DA_01_02_03";

    fn uuid16(short: u16) -> String {
        format!("0000{short:04x}-0000-1000-8000-00805f9b34fb")
    }

    fn service_data_variant(entries: &[(u16, &[u8])]) -> Variant<'static> {
        let map: HashMap<String, Variant<'static>> = entries
            .iter()
            .map(|(u, b)| (uuid16(*u), Variant::from(b.to_vec())))
            .collect();
        Variant::from(map)
    }

    fn changed(path: &str, props: HashMap<&str, Variant<'_>>) -> Message {
        Message::signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged")
            .build(&(DEVICE, props, Vec::<String>::new()))
            .unwrap()
    }

    #[test]
    fn the_path_of_a_device_is_the_one_its_address_is_read_from() {
        for address in ["C0:26:DA:01:02:03", "c0:26:da:01:02:03"] {
            let path = device_path(ADAPTER, address);
            assert_eq!(path, SCALE);
            assert_eq!(
                address_of(&path, ADAPTER).as_deref(),
                Some("C0:26:DA:01:02:03")
            );
        }
    }

    #[test]
    fn the_address_comes_from_the_path_of_a_device_object_only() {
        assert_eq!(
            address_of(SCALE, ADAPTER).as_deref(),
            Some("C0:26:DA:01:02:03")
        );
        assert_eq!(
            address_of("/org/bluez/hci0/dev_c0_26_da_01_02_03", ADAPTER).as_deref(),
            Some("C0:26:DA:01:02:03")
        );
        for other in [
            ADAPTER,
            "/org/bluez/hci0/dev_C0_26_DA_01_02_03/service000a",
            "/org/bluez/hci1/dev_C0_26_DA_01_02_03",
            "/org/bluez/hci0/dev_C0_26_DA_01_02",
            "/org/bluez/hci0/dev_C0_26_DA_01_02_XY",
            "/org/bluez/hci0/other",
        ] {
            assert_eq!(address_of(other, ADAPTER), None, "{other}");
        }
    }

    #[test]
    fn an_advert_carries_its_service_data() {
        let msg = changed(
            SCALE,
            HashMap::from([
                ("RSSI", Variant::from(-60i16)),
                (
                    "ServiceData",
                    service_data_variant(&[(0x181D, &[0x02, 0xA4, 0x37]), (0x181B, &[9])]),
                ),
            ]),
        );
        assert_eq!(
            decode(&msg, ADAPTER, |_| true),
            DeviceSignal::Advertised {
                address: "C0:26:DA:01:02:03".into(),
                service_data: vec![(0x181B, vec![9]), (0x181D, vec![0x02, 0xA4, 0x37])],
            }
        );
        let rssi_only = changed(SCALE, HashMap::from([("RSSI", Variant::from(-61i16))]));
        assert_eq!(
            decode(&rssi_only, ADAPTER, |_| true),
            DeviceSignal::Advertised {
                address: "C0:26:DA:01:02:03".into(),
                service_data: vec![],
            }
        );
    }

    #[test]
    fn a_device_not_wanted_is_not_decoded() {
        let msg = changed(
            SCALE,
            HashMap::from([("ServiceData", service_data_variant(&[(0x181D, &[1])]))]),
        );
        let asked = std::cell::Cell::new(0);
        let signal = decode(&msg, ADAPTER, |a| {
            asked.set(asked.get() + 1);
            a == "AA:AA:AA:AA:AA:AA"
        });
        assert_eq!((signal, asked.get()), (DeviceSignal::Other, 1));
    }

    #[test]
    fn a_link_down_is_a_disconnect_and_other_changes_are_nothing() {
        let down = changed(SCALE, HashMap::from([("Connected", Variant::from(false))]));
        assert_eq!(
            decode(&down, ADAPTER, |_| true),
            DeviceSignal::Disconnected {
                address: "C0:26:DA:01:02:03".into()
            }
        );
        let up = changed(SCALE, HashMap::from([("Connected", Variant::from(true))]));
        assert_eq!(decode(&up, ADAPTER, |_| true), DeviceSignal::Other);
        let resolved = changed(
            SCALE,
            HashMap::from([("ServicesResolved", Variant::from(true))]),
        );
        assert_eq!(decode(&resolved, ADAPTER, |_| true), DeviceSignal::Other);
    }

    #[test]
    fn a_new_device_object_is_an_advert_with_its_first_service_data() {
        let props: HashMap<&str, Variant<'_>> = HashMap::from([
            ("Address", Variant::from("C0:26:DA:01:02:03")),
            ("Connected", Variant::from(false)),
            ("ServiceData", service_data_variant(&[(0x181D, &[7, 7])])),
        ]);
        let interfaces = HashMap::from([(DEVICE, props)]);
        let msg = Message::signal("/", "org.freedesktop.DBus.ObjectManager", "InterfacesAdded")
            .build(&(zbus::ObjectPath::try_from(SCALE).unwrap(), interfaces))
            .unwrap();
        assert_eq!(
            decode(&msg, ADAPTER, |_| true),
            DeviceSignal::Advertised {
                address: "C0:26:DA:01:02:03".into(),
                service_data: vec![(0x181D, vec![7, 7])],
            }
        );
        assert_eq!(decode(&msg, ADAPTER, |_| false), DeviceSignal::Other);
    }

    #[test]
    fn a_malformed_body_is_nothing() {
        let msg = Message::signal(
            SCALE,
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
        )
        .build(&(42u32,))
        .unwrap();
        assert_eq!(decode(&msg, ADAPTER, |_| true), DeviceSignal::Other);
    }
}
