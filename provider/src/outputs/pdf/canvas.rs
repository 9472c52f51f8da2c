//! A small drawing surface over `pdf-writer`: pages of A4 in points (origin bottom-left), text
//! in the built-in Helvetica and Helvetica-Bold with WinAnsiEncoding (so Dutch and French
//! accents render without embedding a font), lines, rectangles and polylines.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// A4 width in points.
pub const WIDTH: f32 = 595.0;
/// A4 height in points.
pub const HEIGHT: f32 = 842.0;
/// Page margin.
pub const MARGIN: f32 = 40.0;

/// An RGB colour, components in 0..=1.
pub type Rgb = (f32, f32, f32);
/// Body text.
pub const INK: Rgb = (0.1, 0.1, 0.12);
/// Secondary text and axes.
pub const GREY: Rgb = (0.45, 0.45, 0.5);
/// Grid lines and header backgrounds.
pub const LIGHT: Rgb = (0.9, 0.91, 0.93);
/// Out-of-range marks.
pub const RED: Rgb = (0.78, 0.1, 0.1);
/// The normal-range band.
pub const BAND: Rgb = (0.88, 0.95, 0.88);
/// First line of a chart.
pub const BLUE: Rgb = (0.1, 0.3, 0.65);
/// Second line of a chart.
pub const TEAL: Rgb = (0.1, 0.6, 0.6);

/// Text in the PDF's WinAnsiEncoding: Latin-1 maps one to one for the letters we use; anything
/// else becomes '?' rather than garbage.
pub fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '€' => 0x80,
            '–' => 0x96,
            '—' => 0x97,
            '‘' => 0x91,
            '’' => 0x92,
            c if (c as u32) < 0x80 || (0xA0..=0xFF).contains(&(c as u32)) => {
                u8::try_from(c as u32).unwrap_or(b'?')
            }
            _ => b'?',
        })
        .collect()
}

/// Approximate width of `s` in Helvetica at `size` (average glyph width), for layout.
pub fn text_width(s: &str, size: f32, bold: bool) -> f32 {
    let per_char = if bold { 0.62 } else { 0.53 };
    s.chars().count() as f32 * size * per_char
}

/// Cuts `s` to fit `width`, ending with "...".
pub fn fit(s: &str, size: f32, width: f32) -> String {
    if text_width(s, size, false) <= width {
        return s.to_owned();
    }
    let mut out: String = String::new();
    for c in s.chars() {
        if text_width(&out, size, false) + text_width("...x", size, false) > width {
            break;
        }
        out.push(c);
    }
    out + "..."
}

/// The document being drawn: finished pages and the current one.
pub struct Canvas {
    pages: Vec<Vec<u8>>,
    current: Content,
}

impl std::fmt::Debug for Canvas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canvas")
            .field("pages", &self.pages.len())
            .finish()
    }
}

impl Default for Canvas {
    fn default() -> Self {
        Self::new()
    }
}

impl Canvas {
    /// An empty document with one blank page.
    pub fn new() -> Self {
        Canvas {
            pages: Vec::new(),
            current: Content::new(),
        }
    }

    /// Starts a new page.
    pub fn new_page(&mut self) {
        let done = std::mem::replace(&mut self.current, Content::new());
        self.pages.push(done.finish().into_vec());
    }

    /// Number of pages so far (the current one included).
    pub fn page_number(&self) -> usize {
        self.pages.len() + 1
    }

    /// Writes `s` with its baseline at (x, y).
    pub fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, color: Rgb, s: &str) {
        let font = if bold { Name(b"F2") } else { Name(b"F1") };
        let bytes = win_ansi(s);
        self.current
            .set_fill_rgb(color.0, color.1, color.2)
            .begin_text()
            .set_font(font, size)
            .next_line(x, y)
            .show(Str(&bytes))
            .end_text();
    }

    /// A straight line.
    pub fn line(&mut self, from: (f32, f32), to: (f32, f32), width: f32, color: Rgb) {
        self.current
            .set_stroke_rgb(color.0, color.1, color.2)
            .set_line_width(width)
            .move_to(from.0, from.1)
            .line_to(to.0, to.1)
            .stroke();
    }

    /// A filled rectangle.
    pub fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Rgb) {
        self.current
            .set_fill_rgb(color.0, color.1, color.2)
            .rect(x, y, w, h)
            .fill_nonzero();
    }

    /// An open polyline through `points`.
    pub fn polyline(&mut self, points: &[(f32, f32)], width: f32, color: Rgb) {
        let Some((first, rest)) = points.split_first() else {
            return;
        };
        self.current
            .set_stroke_rgb(color.0, color.1, color.2)
            .set_line_width(width)
            .move_to(first.0, first.1);
        for p in rest {
            self.current.line_to(p.0, p.1);
        }
        self.current.stroke();
    }

    /// The finished PDF: title and language in the catalog and info dictionary, no dates (the
    /// same report gives the same bytes).
    pub fn finish(mut self, title: &str, lang: &str) -> Vec<u8> {
        self.new_page();
        let catalog = Ref::new(1);
        let tree = Ref::new(2);
        let info = Ref::new(3);
        let regular = Ref::new(4);
        let bold = Ref::new(5);
        let mut next = 6;
        let mut alloc = || {
            let r = Ref::new(next);
            next += 1;
            r
        };
        let ids: Vec<(Ref, Ref)> = self.pages.iter().map(|_| (alloc(), alloc())).collect();

        let mut pdf = Pdf::new();
        pdf.catalog(catalog).pages(tree).lang(TextStr(lang));
        pdf.document_info(info)
            .title(TextStr(title))
            .producer(TextStr("tm-provider"));
        pdf.pages(tree)
            .kids(ids.iter().map(|(page, _)| *page))
            .count(i32::try_from(ids.len()).unwrap_or(i32::MAX));
        pdf.type1_font(regular)
            .base_font(Name(b"Helvetica"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.type1_font(bold)
            .base_font(Name(b"Helvetica-Bold"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        for ((page_id, content_id), content) in ids.iter().zip(&self.pages) {
            let mut page = pdf.page(*page_id);
            page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT))
                .parent(tree)
                .contents(*content_id);
            let mut resources = page.resources();
            let mut fonts = resources.fonts();
            fonts.pair(Name(b"F1"), regular).pair(Name(b"F2"), bold);
            fonts.finish();
            resources.finish();
            page.finish();
            pdf.stream(*content_id, content);
        }
        pdf.finish()
    }
}
