//! Size limits enforced when decoding, so a malformed or hostile peer cannot make either side
//! allocate without bound. Encoders respect the same numbers (the gateway builds batches that
//! fit), so a limit error on decode always means a bug or an attack, never normal traffic.

/// Most readings one batch may carry. The gateway's batcher stops at this count; it also stops
/// earlier when [`MAX_FRAME_BYTES`] would be exceeded.
pub const MAX_READINGS_PER_BATCH: usize = 1_000;

/// Largest signed frame (header + signature + payload) accepted on either transport. Must stay
/// below the MQTT maximum packet size the agent and provider configure (see `routes::mqtt`).
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Largest raw characteristic or advertisement payload kept with a reading. BLE ATT values are
/// at most 512 bytes, so anything longer is not a device payload.
pub const MAX_RAW_PAYLOAD_BYTES: usize = 512;

/// Most components (systolic, diastolic, mean, pulse, ...) one reading may carry.
pub const MAX_COMPONENTS_PER_READING: usize = 32;

/// Most devices one heartbeat may describe.
pub const MAX_DEVICES_PER_HEARTBEAT: usize = 64;

/// Longest free-text string (reasons, errors, model names) in any message.
pub const MAX_TEXT_BYTES: usize = 1024;

/// Shortens `text` to at most [`MAX_TEXT_BYTES`], on a character boundary, so a free-text field
/// built from an error message always fits its message.
pub fn fit_text(text: &mut String) {
    if text.len() > MAX_TEXT_BYTES {
        let mut cut = MAX_TEXT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

/// Longest identifier (gateway id, batch id, command id).
pub const MAX_ID_BYTES: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_text_cuts_on_a_character_boundary() {
        let mut short = "fine".to_owned();
        fit_text(&mut short);
        assert_eq!(short, "fine");
        // 'é' is two bytes: one byte short of the limit, then a character across it.
        let mut long = "a".repeat(MAX_TEXT_BYTES - 1) + "é" + "tail";
        fit_text(&mut long);
        assert_eq!(long.len(), MAX_TEXT_BYTES - 1);
        assert!(long.chars().all(|c| c == 'a'));
    }
}
