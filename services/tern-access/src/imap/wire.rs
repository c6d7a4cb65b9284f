//! Small pieces of IMAP response syntax shared by the session's commands: flag lists,
//! INTERNALDATE, mailbox names, and LIST pattern matching.

use super::structure::string;

/// Appends `(\Seen \Flagged keyword ...)`.
pub fn flag_list(out: &mut Vec<u8>, flags: &[String]) {
    out.push(b'(');
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_bytes());
    }
    out.push(b')');
}

/// The system flags every mailbox supports (RFC 3501 §2.3.2), for FLAGS and PERMANENTFLAGS.
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// INTERNALDATE as RFC 3501 `date-time` in UTC: `"17-Jul-1996 02:44:25 +0000"` (quoted).
pub fn internal_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "\"{:2}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends a mailbox name in modified UTF-7 as an IMAP string.
pub fn mailbox_name(out: &mut Vec<u8>, utf8_name: &str) {
    string(out, super::utf7::encode(utf8_name).as_bytes());
}

/// Whether `name` matches a LIST pattern: `*` matches anything, `%` anything but the
/// hierarchy delimiter `/` (RFC 3501 §6.3.8). INBOX matches without regard to case.
pub fn list_matches(pattern: &str, name: &str) -> bool {
    let norm = |s: &str| -> Vec<char> {
        let mut v: Vec<char> = s.chars().collect();
        if v.len() >= 5
            && v[..5]
                .iter()
                .collect::<String>()
                .eq_ignore_ascii_case("INBOX")
            && (v.len() == 5 || v[5] == '/')
        {
            for (c, up) in v.iter_mut().zip("INBOX".chars()) {
                *c = up;
            }
        }
        v
    };
    let (p, n) = (norm(pattern), norm(name));
    // can[j] after row i: whether p[..i] matches n[..j]. O(|p|·|n|), no backtracking blowup.
    let mut can = vec![false; n.len() + 1];
    can[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                // A wildcard extends any match so far over further characters; `%` stops at
                // a delimiter.
                for j in 0..=n.len() {
                    next[j] = can[j] || (j > 0 && next[j - 1] && (pc == '*' || n[j - 1] != '/'));
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = can[j - 1] && n[j - 1] == c;
                }
            }
        }
        can = next;
    }
    can[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_dates_are_rfc3501_date_time() {
        assert_eq!(internal_date(0), "\" 1-Jan-1970 00:00:00 +0000\"");
        // 2024-02-29 12:34:56 UTC (a leap day).
        assert_eq!(
            internal_date(1_709_210_096),
            "\"29-Feb-2024 12:34:56 +0000\""
        );
    }

    #[test]
    fn list_patterns() {
        assert!(list_matches("*", "INBOX"));
        assert!(list_matches("*", "a/b/c"));
        assert!(list_matches("%", "Sent"));
        assert!(!list_matches("%", "a/b"));
        assert!(list_matches("a/%", "a/b"));
        assert!(!list_matches("a/%", "a/b/c"));
        assert!(list_matches("a/*", "a/b/c"));
        assert!(list_matches("inbox", "INBOX"));
        assert!(list_matches("Inbox/%", "INBOX/x"));
        assert!(!list_matches("inbox", "Inboxes"));
        assert!(list_matches("S%t", "Sent"));
        assert!(!list_matches("S%t", "S/t"));
        assert!(list_matches("%/%", "a/b"));
        assert!(!list_matches("Sent", "sent"));
        assert!(list_matches("*/%", "a/b/c"));
        assert!(!list_matches("%/%", "a/b/c"));
    }

    #[test]
    fn flag_lists() {
        let mut out = Vec::new();
        flag_list(&mut out, &["\\Seen".into(), "$Label1".into()]);
        assert_eq!(out, b"(\\Seen $Label1)");
    }
}
