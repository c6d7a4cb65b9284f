//! Rendering: aligned tables for people, JSON for scripts, and the small formatters both use.
//!
//! Everything renders to a `String` first and is written in one go by [`emit`], so output is
//! testable and a closed pipe (`ternctl queue list | head`) ends the program quietly instead of
//! panicking inside `println!`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Writes `text` to stdout (adding a final newline when missing).
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Pretty JSON of `value`.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// Left-aligned columns separated by two spaces; the last column is not padded so lines carry
/// no trailing blanks.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for cells in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                line.push_str(cell);
                if i + 1 < n {
                    let pad = width - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// "label:  value" lines with the values aligned, for single-object views.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&format!(
            "{:<width$}  {v}\n",
            format!("{k}:"),
            width = w + 1
        ));
    }
    out
}

/// Unix milliseconds as ISO 8601 UTC with milliseconds ("2026-11-22T04:42:10.123Z"); "-" for 0.
pub fn time_ms(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// [`time_ms`] followed by how far that is from now: "… (in 4m 10s)" / "… (12s ago)".
pub fn time_ms_relative(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    format!("{} ({})", time_ms(ms), relative(ms, now_ms()))
}

/// Distance between `ms` and `now` in words.
pub fn relative(ms: i64, now: i64) -> String {
    let delta = ms.saturating_sub(now);
    if delta.unsigned_abs() < 1000 {
        return "now".into();
    }
    let d = duration_words(delta.unsigned_abs() / 1000);
    if delta > 0 {
        format!("in {d}")
    } else {
        format!("{d} ago")
    }
}

fn duration_words(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm) — avoids a date crate for one conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Human byte count with binary units ("1.5 MiB"); exact below 1 KiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// A quota: 0 means unlimited.
pub fn quota(n: u64) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        bytes(n)
    }
}

/// `value`, or "-" when empty, so columns never collapse.
pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".into()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_without_trailing_blanks() {
        let mut t = Table::new(&["ID", "ADDR", "ROLE"]);
        t.row(vec!["1".into(), "127.0.0.1:7101".into(), "leader".into()]);
        t.row(vec!["22".into(), "h:1".into(), "".into()]);
        assert_eq!(
            t.render(),
            "ID  ADDR            ROLE\n1   127.0.0.1:7101  leader\n22  h:1\n"
        );
    }

    #[test]
    fn fields_align() {
        let s = fields(&[("id", "Q1".into()), ("sender", "<a@b>".into())]);
        assert_eq!(s, "id:      Q1\nsender:  <a@b>\n");
    }

    #[test]
    fn times() {
        assert_eq!(time_ms(0), "-");
        assert_eq!(time_ms(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(time_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(time_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(time_ms(-1000), "1969-12-31T23:59:59.000Z");
    }

    #[test]
    fn relative_words() {
        assert_eq!(relative(10_000, 10_500), "now");
        assert_eq!(relative(70_000, 0), "in 1m 10s");
        assert_eq!(relative(0, 5_000), "5s ago");
        assert_eq!(relative(0, 90_061_000), "1d 1h ago");
        assert_eq!(relative(7_200_000, 0), "in 2h 0m");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(quota(0), "unlimited");
    }
}
