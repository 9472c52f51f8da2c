//! The claim label on a gateway's box (`tm-gateway identity --label FILE.svg`): the gateway's
//! claim code ([`tm_protocol::claim`]) as large text for typing and as a QR code for the
//! nurse's phone, on a 62 x 29 mm label (a common continuous-roll width). The QR code carries
//! the 13 symbols alone, with medium error correction and its four-module quiet zone. Pure:
//! the code in, the SVG document out.

use std::fmt::Write as _;

use qrcode::{Color, EcLevel, QrCode};
use tm_protocol::claim::ClaimCode;

/// Label size, millimetres.
const WIDTH_MM: f64 = 62.0;
const HEIGHT_MM: f64 = 29.0;
/// Modules of white around the QR symbol (the standard's quiet zone).
const QUIET: usize = 4;

/// The label of `code`.
pub fn svg(code: ClaimCode) -> String {
    let qr = QrCode::with_error_correction_level(code.compact().as_bytes(), EcLevel::M)
        .expect("13 symbols always fit a QR code");
    let n = qr.width();
    let side = HEIGHT_MM - 2.0;
    let module = side / (n + 2 * QUIET) as f64;
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH_MM}mm\" height=\"{HEIGHT_MM}mm\" \
         viewBox=\"0 0 {WIDTH_MM} {HEIGHT_MM}\">\n\
         <rect width=\"{WIDTH_MM}\" height=\"{HEIGHT_MM}\" fill=\"#fff\"/>\n<g id=\"qr\" fill=\"#000\" \
         data-modules=\"{n}\" data-module-mm=\"{module:.4}\">\n"
    );
    for (i, color) in qr.to_colors().into_iter().enumerate() {
        if color == Color::Dark {
            let (x, y) = ((i % n + QUIET) as f64, (i / n + QUIET) as f64);
            let _ = writeln!(
                out,
                "<rect x=\"{:.4}\" y=\"{:.4}\" width=\"{module:.4}\" height=\"{module:.4}\"/>",
                1.0 + x * module,
                1.0 + y * module
            );
        }
    }
    let text_x = side + 3.0;
    let _ = write!(
        out,
        "</g>\n<text x=\"{text_x}\" y=\"8\" font-family=\"sans-serif\" font-size=\"3.2\">Gateway claim code</text>\n\
         <text id=\"code\" x=\"{text_x}\" y=\"16\" font-family=\"monospace\" font-size=\"4.6\" \
         font-weight=\"bold\">{code}</text>\n\
         <text x=\"{text_x}\" y=\"23\" font-family=\"sans-serif\" font-size=\"2.6\">Scan or type it on the setup page.</text>\n\
         </svg>\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label's QR modules back as a bitmap, one pixel per module, quiet zone included.
    /// Module positions are small whole numbers written by [`svg`] itself.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn modules(svg: &str) -> (usize, Vec<bool>) {
        let attr = |tag: &str, name: &str| -> f64 {
            let at = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            tag[at..at + tag[at..].find('"').unwrap()].parse().unwrap()
        };
        let group = &svg[svg.find("<g id=\"qr\"").unwrap()..svg.find("</g>").unwrap()];
        let n = attr(group, "data-modules") as usize;
        let module = attr(group, "data-module-mm");
        let size = n + 2 * QUIET;
        let mut dark = vec![false; size * size];
        for rect in group.split("<rect").skip(1) {
            let x = ((attr(rect, "x") - 1.0) / module).round() as usize;
            let y = ((attr(rect, "y") - 1.0) / module).round() as usize;
            dark[y * size + x] = true;
        }
        (size, dark)
    }

    #[test]
    fn the_qr_code_on_the_label_reads_back_as_the_claim_code() {
        let (key, _) = tm_protocol::SigningKey::generate().unwrap();
        let code = ClaimCode::of(&key.verifying_key());
        let label = svg(code);
        assert!(label.contains(&format!(">{code}</text>")));
        let (size, dark) = modules(&label);
        // Scaled up four times, as a camera would see it, and decoded by an independent
        // decoder.
        let scale = 4;
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(size * scale, size * scale, |x, y| {
                if dark[(y / scale) * size + x / scale] {
                    0
                } else {
                    255
                }
            });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, code.compact());
        assert_eq!(ClaimCode::parse(&content), Ok(code));
        // The quiet zone is white.
        assert!((0..size).all(|i| !dark[i] && !dark[(size - 1) * size + i]));
    }
}
