//! Stable resource ids. An Observation is named by its identifier value
//! (`<reading_id>-<slug>`), a Device by what the gateway reported about it, the Bundle by the
//! telemonitoring id. Each becomes a UUID-shaped id derived with SHA-256, so the same reading
//! keeps the same `id` and `fullUrl` in every update of the attachment, and an EHR that
//! stores Observations updates them in place instead of duplicating them.

use ring::digest;

const DOMAIN: &[u8] = b"tm-provider-fhir-id/v1";

/// A UUID (RFC 9562 layout, version 8 "custom") derived from `kind` and `name`.
pub fn stable_uuid(kind: &str, name: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [DOMAIN, kind.as_bytes(), name.as_bytes()] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(part);
    }
    let d = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_distinct_and_valid_fhir_ids() {
        let a = stable_uuid("Observation", "x-bp");
        assert_eq!(a, stable_uuid("Observation", "x-bp"));
        assert_ne!(a, stable_uuid("Observation", "x-heart-rate"));
        assert_ne!(a, stable_uuid("Device", "x-bp"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase() || c == b'-')
        );
    }
}
