//! # tm-devices: bytes from health devices to normalized readings
//!
//! Pure code: no I/O, no async, no Bluetooth stack. The agent hands it the bytes of one GATT
//! notification or advertisement payload and gets back readings whose components carry a LOINC
//! code, a value and a UCUM unit, or a typed error (the agent then quarantines the raw bytes;
//! nothing is dropped). Formats and test vectors: `docs/gatt.md` (§1 formats, §2 vectors).
//!
//! Map of the crate:
//! - [`decode`]: the one entry point; [`Source`] says where the bytes came from (a 16-bit
//!   characteristic, `adv:<service uuid>`, `mfr:<company id>`) and picks the decoder.
//! - [`ieee11073`]: SFLOAT and FLOAT with their special values; [`time`]: Date Time, Current
//!   Time, Local Time Information (raw device wall clock, never corrected here).
//! - [`profiles`]: the SIG services (blood pressure, weight and body composition, thermometer,
//!   glucose with its RACP, pulse oximetry, heart rate, battery).
//! - [`adverts`]: Xiaomi scale service data, Omron manufacturer data.
//! - [`omron_records`]: the 14-byte memory records of Omron's EEPROM-generation cuffs.
//! - [`reading`]: the output ([`Decoded`], [`DecodedReading`], [`Info`]) and the codes.
//! - [`catalog`]: the declarative catalog of device models (`devices/catalog/*.toml`, embedded),
//!   which also selects the [`Quirks`] a model needs.
//!
//! Time policy lives in the agent: decoders keep the device's wall-clock time raw and say
//! whether it carries one ([`DecodedReading::has_device_time`]), whether it numbers records
//! ([`DecodedReading::has_sequence`]) and whether the clock looks unset (`clock_not_set`).

pub mod adverts;
pub mod catalog;
pub mod error;
pub mod ieee11073;
pub mod omron_records;
pub mod profiles;
pub mod quirks;
mod reader;
pub mod reading;
pub mod source;
pub mod time;

pub use catalog::{Catalog, CatalogError, Model};
pub use error::DecodeError;
pub use quirks::{Quirk, Quirks};
pub use reading::{Decoded, DecodedReading, Info};
pub use source::{InvalidSource, Source};

use profiles::{blood_pressure, glucose, heart_rate, plx, racp, temperature, weight};

/// Omron Healthcare's Bluetooth company id.
pub const OMRON_COMPANY_ID: u16 = 0x020E;

/// Every source [`decode`] understands, for tests and for the CLI's help.
pub const SUPPORTED_SOURCES: &[Source] = &[
    Source::Characteristic(0x2A08),
    Source::Characteristic(0x2A0F),
    Source::Characteristic(0x2A18),
    Source::Characteristic(0x2A19),
    Source::Characteristic(0x2A1C),
    Source::Characteristic(0x2A1E),
    Source::Characteristic(0x2A2B),
    Source::Characteristic(0x2A34),
    Source::Characteristic(0x2A35),
    Source::Characteristic(0x2A36),
    Source::Characteristic(0x2A37),
    Source::Characteristic(0x2A49),
    Source::Characteristic(0x2A51),
    Source::Characteristic(0x2A52),
    Source::Characteristic(0x2A5E),
    Source::Characteristic(0x2A5F),
    Source::Characteristic(0x2A60),
    Source::Characteristic(0x2A9B),
    Source::Characteristic(0x2A9C),
    Source::Characteristic(0x2A9D),
    Source::Characteristic(0x2A9E),
    Source::ServiceData(0x181B),
    Source::ServiceData(0x181D),
    Source::ManufacturerData(OMRON_COMPANY_ID),
];

/// Decodes one frame from `source`, applying the model's `quirks` (use [`Quirks::NONE`] for a
/// device the catalog does not know).
pub fn decode(source: Source, bytes: &[u8], quirks: &Quirks) -> Result<Decoded, DecodeError> {
    match source {
        Source::Characteristic(uuid) => match uuid {
            0x2A08 => {
                let mut r = reader::Reader::new(source, bytes);
                r.require_exact(time::DeviceTime::LEN)?;
                let t = time::DeviceTime::read(&mut r)?;
                Ok(Decoded::info(Info::DateTime {
                    time: t,
                    clock_not_set: t.looks_unset(),
                }))
            }
            0x2A0F => {
                let mut r = reader::Reader::new(source, bytes);
                time::LocalTimeInformation::read(&mut r)
                    .map(|lti| Decoded::info(Info::LocalTimeInformation(lti)))
            }
            0x2A2B => {
                let mut r = reader::Reader::new(source, bytes);
                time::CurrentTime::read(&mut r).map(|ct| Decoded::info(Info::CurrentTime(ct)))
            }
            0x2A18 => glucose::decode_measurement(source, bytes),
            0x2A19 => heart_rate::decode_battery(source, bytes),
            0x2A1C => temperature::decode_temperature(source, bytes, false),
            0x2A1E => temperature::decode_temperature(source, bytes, true),
            0x2A34 => glucose::decode_context(source, bytes),
            0x2A35 => blood_pressure::decode_measurement(source, bytes, quirks, false),
            0x2A36 => blood_pressure::decode_measurement(source, bytes, quirks, true),
            0x2A37 => heart_rate::decode_heart_rate(source, bytes),
            0x2A49 => blood_pressure::decode_feature(source, bytes),
            0x2A51 => glucose::decode_feature(source, bytes),
            0x2A52 => racp::decode(source, bytes),
            0x2A5E => plx::decode_spot_check(source, bytes),
            0x2A5F => plx::decode_continuous(source, bytes),
            0x2A60 => plx::decode_features(source, bytes),
            0x2A9B => weight::decode_body_composition_feature(source, bytes),
            0x2A9C => weight::decode_body_composition(source, bytes),
            0x2A9D => weight::decode_weight(source, bytes),
            0x2A9E => weight::decode_weight_feature(source, bytes),
            _ => Err(DecodeError::Unsupported { origin: source }),
        },
        Source::ServiceData(0x181D) => adverts::xiaomi::decode_mi_scale(source, bytes),
        Source::ServiceData(0x181B) => adverts::xiaomi::decode_mi_body_composition(source, bytes),
        Source::ManufacturerData(OMRON_COMPANY_ID) => adverts::omron::decode(source, bytes),
        _ => Err(DecodeError::Unsupported { origin: source }),
    }
}
