//! Property test: every decoder gets 100,000 random byte strings and must answer each with a
//! value or a typed one-line error, never a panic, and never a non-finite component value. The
//! generator is a seeded SplitMix64, so a failure reproduces exactly. Lengths run from 0 to 32
//! bytes, which covers every frame size the formats define (with all optional fields), so the
//! random flag bytes reach the optional-field paths and not only the length checks.

use tm_devices::{Quirk, Quirks, SUPPORTED_SOURCES, Source, decode};

const CASES_PER_DECODER: usize = 100_000;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next() % n).unwrap_or(0)
    }
}

fn fuzz(source: Source, quirks: &Quirks, seed: u64) -> (usize, usize) {
    let mut rng = SplitMix64(seed);
    let mut buf = Vec::with_capacity(40);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..CASES_PER_DECODER {
        buf.clear();
        let len = rng.below(33);
        buf.extend((0..len).map(|_| rng.next().to_le_bytes()[0]));
        match decode(source, &buf, quirks) {
            Ok(decoded) => {
                ok += 1;
                for reading in &decoded.readings {
                    for c in &reading.components {
                        assert!(
                            c.value.is_finite(),
                            "{source}: non-finite value from {buf:02X?}"
                        );
                    }
                }
            }
            Err(e) => {
                err += 1;
                let line = e.to_string();
                assert!(
                    !line.contains('\n') && !line.is_empty(),
                    "{source}: {line:?}"
                );
            }
        }
    }
    (ok, err)
}

#[test]
fn random_bytes_never_panic_any_decoder() {
    let bm85 = Quirks::from_list(&[Quirk::BpBigEndianPulseStatus, Quirk::BpAlwaysUserId]);
    for (i, source) in SUPPORTED_SOURCES.iter().enumerate() {
        let seed = 0x7E1E_0000 + u64::try_from(i).unwrap_or(0);
        let (ok, err) = fuzz(*source, &Quirks::NONE, seed);
        assert_eq!(ok + err, CASES_PER_DECODER);
        if matches!(source, Source::Characteristic(0x2A35 | 0x2A36)) {
            fuzz(*source, &bm85, seed ^ 0xB385);
        }
    }
}

#[test]
fn random_bytes_never_panic_racp_and_unknown_sources() {
    fuzz(Source::Characteristic(0xFFFF), &Quirks::NONE, 1);
    fuzz(Source::ManufacturerData(0x0001), &Quirks::NONE, 2);
}

#[test]
fn random_bytes_never_panic_omron_records() {
    use tm_devices::omron_records::{RECORD_LEN, RecordLayout, decode_record};
    let mut rng = SplitMix64(0x0E0E);
    for i in 0..CASES_PER_DECODER {
        let len = if i % 8 == 0 {
            rng.below(20)
        } else {
            RECORD_LEN
        };
        let buf: Vec<u8> = (0..len).map(|_| rng.next().to_le_bytes()[0]).collect();
        let _ = decode_record(&buf, RecordLayout::ByteAligned);
        let _ = decode_record(&buf, RecordLayout::BitPacked);
    }
}
