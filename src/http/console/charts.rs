//! SVG charts rendered on the server: a horizontal bar chart and a line chart. Pure
//! functions from numbers to markup; no inline styles (classes only, styled by the
//! stylesheet), every label escaped, and a `<title>` for screen readers.

use std::fmt::Write;

/// Escape text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const BAR_H: i64 = 22;
const LABEL_W: i64 = 260;
const WIDTH: i64 = 640;

/// Horizontal bars, one per `(label, value)`, longest bar = largest value.
pub fn bars(title: &str, items: &[(String, i64)]) -> String {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let h = (items.len() as i64).max(1) * BAR_H + 8;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {h}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title)
    );
    if items.is_empty() {
        s.push_str(r#"<text x="4" y="16">no data</text>"#);
    }
    let span = WIDTH - LABEL_W - 70;
    for (i, (label, v)) in items.iter().enumerate() {
        let y = i as i64 * BAR_H + 4;
        let w = (v * span / max).max(1);
        let short: String = label.chars().take(40).collect();
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect class="bar" x="{LABEL_W}" y="{y}" width="{w}" height="{}"><title>{}: {v}</title></rect><text x="{}" y="{}">{v}</text>"#,
            LABEL_W - 6,
            y + 15,
            esc(&short),
            BAR_H - 6,
            esc(label),
            LABEL_W + w + 6,
            y + 15,
        );
    }
    s.push_str("</svg>");
    s
}

/// A line over `points` (x ascending); `x_labels` are placed under the x axis at their x.
pub fn line(
    title: &str,
    points: &[(i64, i64)],
    x_range: (i64, i64),
    x_labels: &[(i64, String)],
) -> String {
    let (w, h, left, bottom, top) = (WIDTH, 220i64, 44i64, 24i64, 10i64);
    let ymax = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let (x0, x1) = (x_range.0, x_range.1.max(x_range.0 + 1));
    let px = |x: i64| left + (x - x0) * (w - left - 8) / (x1 - x0);
    let py = |y: i64| h - bottom - y * (h - bottom - top) / ymax;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title)
    );
    let _ = write!(
        s,
        r#"<line class="axis" x1="{left}" y1="{}" x2="{}" y2="{}"/><line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{}"/>"#,
        h - bottom,
        w - 8,
        h - bottom,
        h - bottom
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{ymax}</text><text x="{}" y="{}" text-anchor="end">0</text>"#,
        left - 4,
        top + 10,
        left - 4,
        h - bottom
    );
    for (x, label) in x_labels {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            px(*x),
            h - 6,
            esc(label)
        );
    }
    if points.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}">no sessions</text>"#,
            left + 10,
            top + 30
        );
    } else {
        let mut d = String::new();
        for (i, (x, y)) in points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{},{} ",
                if i == 0 { "M" } else { "L" },
                px(*x),
                py(*y)
            );
        }
        let _ = write!(s, r#"<path class="line" d="{}"/>"#, d.trim_end());
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_escape_labels() {
        let svg = bars("versions", &[("a<b>".into(), 10), ("c".into(), 5)]);
        assert!(svg.contains("a&lt;b&gt;"), "{svg}");
        assert!(!svg.contains("a<b>"));
        let span = WIDTH - LABEL_W - 70;
        assert!(svg.contains(&format!(r#"width="{span}""#)), "{svg}");
        assert!(svg.contains(&format!(r#"width="{}""#, span / 2)), "{svg}");
        assert!(!svg.contains("style"));
    }

    #[test]
    fn line_maps_points_into_the_box() {
        let svg = line("s", &[(0, 0), (10, 4)], (0, 10), &[(0, "00:00".into())]);
        assert!(svg.contains(r#"d="M44,196 L632,10""#), "{svg}");
        assert!(svg.contains("00:00"));
        assert!(line("s", &[], (0, 10), &[]).contains("no sessions"));
    }
}
