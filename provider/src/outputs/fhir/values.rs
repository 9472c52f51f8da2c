//! How numbers and times are written, so that the JSON states the precision the device and the
//! gateway have and no more (docs/fhir.md §5).
//!
//! In FHIR a decimal's digits are its precision: `128.0` claims a tenth of a mmHg that the cuff
//! never measured. serde_json writes every `f64` with a fraction (`128.0`), so values pass
//! through [`number`]: an integral value becomes a JSON integer (`128`), any other keeps the
//! shortest decimal that round-trips (`36.4`, `78.45`) after binary noise is rounded away
//! (`36.400000000000006` is `36.4`). Times keep their milliseconds when they have any and are
//! written to the second otherwise.

use chrono::{DateTime, SecondsFormat, TimeZone, Timelike};
use serde_json::{Number, Value, json};

use super::rules::UCUM;

/// Decimal places kept from a device value: enough for every resolution the GATT profiles
/// define (SFLOAT and FLOAT exponents down to -4), few enough to drop binary noise.
const DECIMALS: i32 = 4;

/// Rounds away binary noise (36.400000000000006) without touching clinical precision.
pub fn decimal(v: f64) -> f64 {
    let scale = 10f64.powi(DECIMALS);
    (v * scale).round() / scale
}

/// Integers below this are exact in an `f64` and safe to write as JSON integers.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// `v` as a FHIR decimal: an integer when the value is integral, else the shortest decimal of
/// [`decimal`]`(v)`. Not finite (never the case for a charted value): `null`.
pub fn number(v: f64) -> Value {
    let d = decimal(v);
    if d.fract() == 0.0 && d.abs() < MAX_EXACT_INTEGER {
        // Exact: |d| < 2^53 and integral, so the cast neither truncates nor rounds.
        #[allow(clippy::cast_possible_truncation)]
        let i = d as i64;
        return Value::Number(Number::from(i));
    }
    Number::from_f64(d).map_or(Value::Null, Value::Number)
}

/// A UCUM quantity: `value`, the human-readable `unit`, the UCUM `system` and `code`.
pub fn quantity(value: f64, unit_text: &str, ucum: &str) -> Value {
    json!({"value": number(value), "unit": unit_text, "system": UCUM, "code": ucum})
}

/// `t` as a FHIR `dateTime`/`instant`: to the millisecond when it has a fraction of a second,
/// else to the second; `Z` for UTC when `utc_as_z`, else the numeric offset.
pub fn timestamp<Tz: TimeZone>(t: &DateTime<Tz>, utc_as_z: bool) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let format = if t.nanosecond() / 1_000_000 == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Millis
    };
    t.to_rfc3339_opts(format, utc_as_z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    #[test]
    fn integral_values_are_integers_and_decimals_keep_their_digits() {
        assert_eq!(serde_json::to_string(&number(128.0)).unwrap(), "128");
        assert_eq!(serde_json::to_string(&number(-3.0)).unwrap(), "-3");
        assert_eq!(serde_json::to_string(&number(0.0)).unwrap(), "0");
        assert_eq!(serde_json::to_string(&number(-0.0)).unwrap(), "0");
        assert_eq!(serde_json::to_string(&number(36.4)).unwrap(), "36.4");
        assert_eq!(serde_json::to_string(&number(78.45)).unwrap(), "78.45");
        assert_eq!(
            serde_json::to_string(&number(36.400_000_000_000_006)).unwrap(),
            "36.4"
        );
        // 120 kPa-converted to mm[Hg] with one decimal by the decoder.
        assert_eq!(serde_json::to_string(&number(112.5)).unwrap(), "112.5");
        assert_eq!(serde_json::to_string(&number(0.0125)).unwrap(), "0.0125");
        assert_eq!(number(f64::NAN), Value::Null);
        let q = quantity(71.0, "/min", "/min");
        assert_eq!(
            q.to_string(),
            r#"{"code":"/min","system":"http://unitsofmeasure.org","unit":"/min","value":71}"#
        );
    }

    #[test]
    fn times_keep_milliseconds_only_when_they_have_them() {
        let cest = FixedOffset::east_opt(7200).unwrap();
        let whole = cest.with_ymd_and_hms(2026, 5, 1, 7, 30, 0).unwrap();
        assert_eq!(timestamp(&whole, false), "2026-05-01T07:30:00+02:00");
        let fine = whole + chrono::Duration::microseconds(250_400);
        assert_eq!(timestamp(&fine, false), "2026-05-01T07:30:00.250+02:00");
        let sub_ms = whole + chrono::Duration::microseconds(400);
        assert_eq!(timestamp(&sub_ms, false), "2026-05-01T07:30:00+02:00");
        let utc = fine.with_timezone(&Utc);
        assert_eq!(timestamp(&utc, true), "2026-05-01T05:30:00.250Z");
    }
}
