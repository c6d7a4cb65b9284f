//! Reading one protocol line without ever buffering more than a fixed bound.
//!
//! A line that exceeds the bound is consumed up to its end (so the connection stays in
//! step) but its content is dropped, and the caller answers with a protocol error.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line; the buffer holds it without the line ending (CRLF or bare LF).
    Complete,
    /// The line was longer than the bound; it was read and discarded.
    TooLong,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

/// Reads the next line into `buf` (cleared first), keeping at most `max` octets of content.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let used = chunk.len();
        if !too_long {
            if buf.len() + used > max + 2 {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if found {
            if too_long {
                return Ok(Line::TooLong);
            }
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if buf.len() > max {
                buf.clear();
                return Ok(Line::TooLong);
            }
            return Ok(Line::Complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn lines_bounds_and_eof() {
        let input: &[u8] = b"USER a\r\nbare\nxxxxxxxxxxxxxxxxxxxx\r\nok\r\npartial";
        let mut r = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"USER a");
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"bare");
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::TooLong
        );
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"ok");
        assert_eq!(read_line(&mut r, &mut buf, 10).await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn exactly_the_bound_is_accepted() {
        let input: &[u8] = b"0123456789\r\n01234567890\r\n";
        let mut r = BufReader::new(input);
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::TooLong
        );
    }
}
