//! Rules of the catalog that serde cannot express, and the matching helpers (UUID forms, name
//! patterns).

use super::{Bonding, ClockSetting, Model, Profile};
use crate::quirks::Quirk;

/// The SIG base UUID tail that turns a 16-bit UUID into a 128-bit one.
pub(super) const SIG_BASE_TAIL: &str = "-0000-1000-8000-00805f9b34fb";

/// Normalises a UUID to lower-case 128-bit text; `None` when it is not a UUID.
pub fn normalize_uuid(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_prefix("0x").unwrap_or(&s);
    let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    if s.len() == 4 && hex(s) {
        return Some(format!("0000{s}{SIG_BASE_TAIL}"));
    }
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    (lens == [8, 4, 4, 4, 12] && groups.iter().all(|g| hex(g))).then(|| s.to_string())
}

/// Case-insensitive glob: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Rules serde cannot express.
pub(super) fn validate_model(m: &Model) -> Result<(), String> {
    if m.id.is_empty()
        || !m
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("id must be lower-case letters, digits and '-'".into());
    }
    if m.name.trim().is_empty() {
        return Err("name is empty".into());
    }
    let r = &m.recognition;
    for u in r.service_uuids.iter().chain(&r.service_data_uuids) {
        if normalize_uuid(u).is_none() {
            return Err(format!("{u:?} is not a 16-bit or 128-bit UUID"));
        }
    }
    if r.name_patterns.is_empty()
        && r.service_uuids.is_empty()
        && r.service_data_uuids.is_empty()
        && r.manufacturer_ids.is_empty()
        && r.dis_models.is_empty()
    {
        return Err("recognition lists nothing to recognise the model by".into());
    }
    if m.advertisement_only && (m.bonding != Bonding::None || m.clock != ClockSetting::None) {
        return Err("an advertisement-only model neither bonds nor has its clock set".into());
    }
    for q in &m.quirks {
        let fits = match q {
            Quirk::BpBigEndianPulseStatus | Quirk::BpAlwaysUserId => {
                m.profile == Profile::BloodPressure
            }
            Quirk::GlucoseReversedSequence => m.profile == Profile::Glucose,
            Quirk::DisconnectsAfterTransfer => !m.advertisement_only,
        };
        if !fits {
            return Err(format!(
                "quirk {q:?} does not apply to profile {:?}",
                m.profile
            ));
        }
    }
    Ok(())
}
