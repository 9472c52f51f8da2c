//! `tm-gateway decode <SOURCE> <HEX> [--model "<DIS model string>"]`: decodes one frame offline
//! with the same code the agent uses (`tm_devices::decode`) and prints the readings as JSON.
//!
//! SOURCE is a 16-bit characteristic (`2A35`), `adv:<service uuid>` for service-data adverts
//! (`adv:181B`) or `mfr:<company id>` for manufacturer data (`mfr:020E`); HEX may contain
//! spaces. `--model` looks the DIS model string up in the catalog and applies that model's
//! quirks. Output: `{"readings":[...]}` (empty for a frame without a reading), plus `"info"`
//! for frames that are not measurements (features, RACP responses, adverts' status). Malformed
//! input exits with status 2 and one line on stderr that says what is wrong.

use tm_devices::{Catalog, Quirks, Source};

/// Arguments of `tm-gateway decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the bytes came from: `2A35`, `adv:181B` or `mfr:020E`.
    source: String,
    /// The payload in hex; spaces allowed (quote it, or pass several words).
    #[arg(required = true, num_args = 1..)]
    hex: Vec<String>,
    /// The device's DIS model string (0x2A24), to apply its catalog quirks.
    #[arg(long)]
    model: Option<String>,
}

/// Input the command refuses, as one line for stderr.
#[derive(Debug, thiserror::Error)]
enum InputError {
    #[error(transparent)]
    Source(#[from] tm_devices::InvalidSource),
    #[error("HEX: {0}")]
    Hex(String),
    #[error("--model {0:?}: no catalog model has this DIS model string")]
    UnknownModel(String),
    #[error(transparent)]
    Decode(#[from] tm_devices::DecodeError),
}

fn parse_hex(words: &[String]) -> Result<Vec<u8>, InputError> {
    let digits: String = words
        .iter()
        .flat_map(|w| w.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(InputError::Hex(format!("{bad:?} is not a hex digit")));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(InputError::Hex(format!(
            "{} hex digits, a byte needs two",
            digits.len()
        )));
    }
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| InputError::Hex("not hexadecimal".to_string()))
        })
        .collect()
}

fn decode_to_json(args: &Args, catalog: &Catalog) -> Result<String, InputError> {
    let source: Source = args.source.parse()?;
    let bytes = parse_hex(&args.hex)?;
    let quirks = match &args.model {
        None => Quirks::NONE,
        Some(model) => catalog
            .by_dis_model(model)
            .map(|e| e.model.decode_quirks())
            .ok_or_else(|| InputError::UnknownModel(model.clone()))?,
    };
    let decoded = tm_devices::decode(source, &bytes, &quirks)?;
    // Serializing plain data with string keys cannot fail.
    Ok(serde_json::to_string(&decoded).unwrap_or_default())
}

pub(super) fn run(args: &Args) -> anyhow::Result<i32> {
    let catalog = Catalog::embedded()?;
    match decode_to_json(args, catalog) {
        Ok(json) => {
            println!("{json}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(2)
        }
    }
}
