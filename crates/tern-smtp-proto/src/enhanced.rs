//! Enhanced status codes (RFC 3463, announced with ENHANCEDSTATUSCODES, RFC 2034):
//! `class.subject.detail`, the one definition the server's replies, the client's reply
//! parser and the DSN's `Status:` fields all check against.

/// Whether `s` is `class "." subject "." detail` with class 2, 4 or 5 and subject and detail
/// of 1–3 digits (RFC 3463 §2).
pub fn is_valid(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let number = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    matches!(class, "2" | "4" | "5") && number(subject) && number(detail)
}

/// Whether `status` is valid and of the same class as the basic reply `code` (RFC 2034 §4:
/// a 5.x.x code on a 4xx reply is a server's mistake, not information).
pub fn matches_code(status: &str, code: u16) -> bool {
    is_valid(status) && status.as_bytes()[0] == b'0' + (code / 100 % 10) as u8 && code < 1000
}

/// The enhanced status code for an SMTP reply, e.g. for a DSN's `Status:`: the reply's own
/// enhanced code when it is valid and of the basic code's class, else `X.0.0` of the basic
/// code's class (`550` → `5.0.0`). A basic code outside 2xx/4xx/5xx is a protocol violation
/// by the server: `5.5.0`.
pub fn status_for_reply(code: u16, enhanced: Option<&str>) -> String {
    let class = match code / 100 {
        2 => '2',
        4 => '4',
        5 => '5',
        _ => return "5.5.0".to_string(),
    };
    match enhanced.map(str::trim) {
        Some(e) if matches_code(e, code) => e.to_string(),
        _ => format!("{class}.0.0"),
    }
}

/// The basic and enhanced codes at the start of a reply's one-line text ("550 5.1.1 ...", as
/// [`crate::reply::Reply`]'s `Display` writes it and the queue records it); 554 when the text
/// starts with no code, and no enhanced code unless it matches the basic code's class.
pub fn codes_of_text(text: &str) -> (u16, Option<String>) {
    let mut words = text.split_whitespace();
    let code = words
        .next()
        .filter(|c| c.len() == 3)
        .and_then(|c| c.parse().ok())
        .unwrap_or(554);
    let enhanced = words
        .next()
        .filter(|w| matches_code(w, code))
        .map(str::to_string);
    (code, enhanced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        for ok in ["2.0.0", "5.1.1", "4.7.11", "5.3.123"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "", "5.1", "5.1.1.1", "5.1000.1", "5.1.", "x.1.1", "3.1.1", "5..1",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert!(matches_code("5.1.1", 550));
        assert!(!matches_code("4.2.2", 550));
        assert!(!matches_code("5.1.1", 5500));
    }

    #[test]
    fn status_for_reply_cases() {
        assert_eq!(status_for_reply(550, None), "5.0.0");
        assert_eq!(status_for_reply(451, Some("4.2.0")), "4.2.0");
        assert_eq!(status_for_reply(550, Some("5.1.1")), "5.1.1");
        assert_eq!(status_for_reply(421, Some(" 4.4.2 ")), "4.4.2");
        assert_eq!(status_for_reply(250, Some("2.1.5")), "2.1.5");
        assert_eq!(status_for_reply(552, Some("5.3.123")), "5.3.123");
        // A valid code of the wrong class, or a malformed one, falls back to the class.
        assert_eq!(status_for_reply(550, Some("4.2.0")), "5.0.0");
        assert_eq!(status_for_reply(451, Some("5.7.1")), "4.0.0");
        assert_eq!(status_for_reply(550, Some("5.1")), "5.0.0");
        assert_eq!(status_for_reply(550, Some("5.1.1.1")), "5.0.0");
        assert_eq!(status_for_reply(550, Some("5.1000.1")), "5.0.0");
        assert_eq!(status_for_reply(550, Some("5.1.")), "5.0.0");
        assert_eq!(status_for_reply(550, Some("x.1.1")), "5.0.0");
        assert_eq!(status_for_reply(550, Some("")), "5.0.0");
        assert_eq!(status_for_reply(450, Some("3.1.1")), "4.0.0");
        // Not a final reply class at all.
        assert_eq!(status_for_reply(354, Some("3.0.0")), "5.5.0");
        assert_eq!(status_for_reply(0, None), "5.5.0");
        assert_eq!(status_for_reply(999, Some("5.1.1")), "5.5.0");
    }

    #[test]
    fn codes_of_recorded_text() {
        assert_eq!(
            codes_of_text("550 5.1.1 unknown user"),
            (550, Some("5.1.1".into()))
        );
        assert_eq!(codes_of_text("451 try later"), (451, None));
        assert_eq!(codes_of_text("garbage"), (554, None));
        assert_eq!(codes_of_text("451 5.1.1 mismatch"), (451, None));
    }
}
