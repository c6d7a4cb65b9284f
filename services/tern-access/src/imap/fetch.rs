//! FETCH (RFC 3501 §6.4.5): which data items a command asks for, what of the message they
//! need from the store, and the untagged FETCH response for one message.

use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItemName, Part, Section as WireSection,
};
use mail_parser::Message;

use super::section::{partial, section_bytes, Section, Text};
use super::structure::{body_structure, envelope, string};
use super::view::MessageMeta;
use super::wire::internal_date;

/// One requested data item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// FLAGS.
    Flags,
    /// INTERNALDATE.
    InternalDate,
    /// RFC822.SIZE.
    Size,
    /// ENVELOPE.
    Envelope,
    /// BODY (no section): the non-extensible structure.
    Body,
    /// BODYSTRUCTURE.
    BodyStructure,
    /// UID.
    Uid,
    /// MODSEQ (CONDSTORE).
    ModSeq,
    /// RFC822, RFC822.HEADER, RFC822.TEXT, BODY[...] and BODY.PEEK[...].
    Section {
        /// What to cut.
        section: Section,
        /// `<start.count>`.
        partial: Option<(u32, u32)>,
        /// Whether reading it leaves \Seen alone.
        peek: bool,
        /// The item's name in the response (`BODY[HEADER]<0>`, `RFC822.TEXT`, ...).
        label: String,
    },
}

/// How much of the message the items need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Only the metadata the view holds.
    Nothing,
    /// The header section (and nothing of the body).
    Header,
    /// The whole message.
    Everything,
}

/// Why a FETCH was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// RFC 3516 BINARY is not offered.
    #[error("BINARY is not supported here")]
    Binary,
}

/// The items a FETCH names, in order, with UID added first when the command is UID FETCH.
pub fn items(
    names: &MacroOrMessageDataItemNames<'_>,
    uid_command: bool,
) -> Result<Vec<Item>, FetchError> {
    let expanded: Vec<MessageDataItemName<'_>> = match names {
        MacroOrMessageDataItemNames::Macro(m) => m.expand(),
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v.clone(),
    };
    let mut out = Vec::with_capacity(expanded.len() + 1);
    if uid_command {
        out.push(Item::Uid);
    }
    for n in expanded {
        let item = match n {
            MessageDataItemName::Flags => Item::Flags,
            MessageDataItemName::InternalDate => Item::InternalDate,
            MessageDataItemName::Rfc822Size => Item::Size,
            MessageDataItemName::Envelope => Item::Envelope,
            MessageDataItemName::Body => Item::Body,
            MessageDataItemName::BodyStructure => Item::BodyStructure,
            MessageDataItemName::Uid => Item::Uid,
            MessageDataItemName::ModSeq => Item::ModSeq,
            MessageDataItemName::Rfc822 => Item::Section {
                section: Section {
                    part: vec![],
                    text: Text::All,
                },
                partial: None,
                peek: false,
                label: "RFC822".into(),
            },
            MessageDataItemName::Rfc822Header => Item::Section {
                section: Section {
                    part: vec![],
                    text: Text::Header,
                },
                partial: None,
                peek: true,
                label: "RFC822.HEADER".into(),
            },
            MessageDataItemName::Rfc822Text => Item::Section {
                section: Section {
                    part: vec![],
                    text: Text::Text,
                },
                partial: None,
                peek: false,
                label: "RFC822.TEXT".into(),
            },
            MessageDataItemName::BodyExt {
                section,
                partial,
                peek,
            } => {
                let (section, spec) = convert_section(section.as_ref());
                // The response names the section as asked, and only the origin of a partial.
                let mut label = format!("BODY[{spec}]");
                if let Some((start, _)) = partial {
                    label.push_str(&format!("<{start}>"));
                }
                Item::Section {
                    section,
                    partial: partial.map(|(s, c)| (s, c.get())),
                    peek,
                    label,
                }
            }
            MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => {
                return Err(FetchError::Binary)
            }
        };
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

fn part_path(p: Option<&Part>) -> Vec<u32> {
    p.map(|p| p.0.as_ref().iter().map(|n| n.get()).collect())
        .unwrap_or_default()
}

fn part_prefix(path: &[u32]) -> String {
    path.iter().map(|n| format!("{n}.")).collect()
}

fn field_names(names: &[imap_codec::imap_types::core::AString<'_>]) -> (Vec<String>, String) {
    let list: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n.as_ref()).into_owned())
        .collect();
    let shown = list
        .iter()
        .map(|n| {
            let atom = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
            if atom {
                n.to_ascii_uppercase()
            } else {
                let mut q = Vec::new();
                string(&mut q, n.as_bytes());
                String::from_utf8_lossy(&q).into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    (list, shown)
}

/// The library section for a wire section, and the section spec as the response shows it.
fn convert_section(s: Option<&WireSection<'_>>) -> (Section, String) {
    match s {
        None => (
            Section {
                part: vec![],
                text: Text::All,
            },
            String::new(),
        ),
        Some(WireSection::Part(p)) => {
            let path = part_path(Some(p));
            let spec = path
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".");
            (
                Section {
                    part: path,
                    text: Text::All,
                },
                spec,
            )
        }
        Some(WireSection::Header(p)) => {
            let path = part_path(p.as_ref());
            let spec = format!("{}HEADER", part_prefix(&path));
            (
                Section {
                    part: path,
                    text: Text::Header,
                },
                spec,
            )
        }
        Some(WireSection::HeaderFields(p, names)) => {
            let path = part_path(p.as_ref());
            let (list, shown) = field_names(names.as_ref());
            let spec = format!("{}HEADER.FIELDS ({shown})", part_prefix(&path));
            (
                Section {
                    part: path,
                    text: Text::HeaderFields(list),
                },
                spec,
            )
        }
        Some(WireSection::HeaderFieldsNot(p, names)) => {
            let path = part_path(p.as_ref());
            let (list, shown) = field_names(names.as_ref());
            let spec = format!("{}HEADER.FIELDS.NOT ({shown})", part_prefix(&path));
            (
                Section {
                    part: path,
                    text: Text::HeaderFieldsNot(list),
                },
                spec,
            )
        }
        Some(WireSection::Text(p)) => {
            let path = part_path(p.as_ref());
            let spec = format!("{}TEXT", part_prefix(&path));
            (
                Section {
                    part: path,
                    text: Text::Text,
                },
                spec,
            )
        }
        Some(WireSection::Mime(p)) => {
            let path = part_path(Some(p));
            let spec = format!("{}MIME", part_prefix(&path));
            (
                Section {
                    part: path,
                    text: Text::Mime,
                },
                spec,
            )
        }
    }
}

/// What of the message `items` need from the store.
pub fn need(items: &[Item]) -> Need {
    items
        .iter()
        .map(|i| match i {
            Item::Flags | Item::InternalDate | Item::Size | Item::Uid | Item::ModSeq => {
                Need::Nothing
            }
            Item::Section { section, .. }
                if section.part.is_empty()
                    && matches!(
                        section.text,
                        Text::Header | Text::HeaderFields(_) | Text::HeaderFieldsNot(_)
                    ) =>
            {
                Need::Header
            }
            Item::Envelope => Need::Header,
            _ => Need::Everything,
        })
        .max()
        .unwrap_or(Need::Nothing)
}

/// Whether fetching `items` sets \Seen (a BODY[] without PEEK, RFC822, RFC822.TEXT).
pub fn sets_seen(items: &[Item]) -> bool {
    items
        .iter()
        .any(|i| matches!(i, Item::Section { peek: false, .. }))
}

/// Whether FLAGS is among the items.
pub fn has_flags(items: &[Item]) -> bool {
    items.contains(&Item::Flags)
}

/// Appends `* seq FETCH (...)` for one message. `message` is the parsed content when the
/// items needed any (the header section alone when [`need`] said [`Need::Header`]).
/// `extra_flags`: \Seen was just set, so FLAGS goes along even if not asked for.
/// `condstore`: CONDSTORE is on, so FLAGS comes with MODSEQ, and unasked FLAGS with UID
/// (RFC 7162 §3.1).
pub fn render(
    out: &mut Vec<u8>,
    seq: u32,
    meta: &MessageMeta,
    items: &[Item],
    message: Option<&Message<'_>>,
    extra_flags: bool,
    condstore: bool,
) {
    out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    let mut flags_written = false;
    for item in items {
        sep(out);
        match item {
            Item::Uid => out.extend_from_slice(format!("UID {}", meta.uid).as_bytes()),
            Item::Flags => {
                out.extend_from_slice(b"FLAGS ");
                meta.write_flags(out);
                flags_written = true;
            }
            Item::InternalDate => {
                out.extend_from_slice(b"INTERNALDATE ");
                out.extend_from_slice(internal_date(meta.internal_date).as_bytes());
            }
            Item::Size => out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes()),
            Item::ModSeq => out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes()),
            Item::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                match message {
                    Some(m) => out.extend_from_slice(&envelope(m)),
                    None => out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"),
                }
            }
            Item::Body | Item::BodyStructure => {
                let ext = *item == Item::BodyStructure;
                out.extend_from_slice(if ext { b"BODYSTRUCTURE " } else { b"BODY " });
                match message {
                    Some(m) => out.extend_from_slice(&body_structure(m, ext)),
                    None => out.extend_from_slice(
                        b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0)",
                    ),
                }
            }
            Item::Section {
                section,
                partial: range,
                label,
                ..
            } => {
                out.extend_from_slice(label.as_bytes());
                out.push(b' ');
                let bytes = message
                    .and_then(|m| section_bytes(m, section))
                    .unwrap_or_default();
                let cut = match range {
                    Some((start, count)) => partial(&bytes, *start, *count),
                    None => &bytes[..],
                };
                // Message data goes as a literal: it may hold anything.
                out.extend_from_slice(format!("{{{}}}\r\n", cut.len()).as_bytes());
                out.extend_from_slice(cut);
            }
        }
    }
    if extra_flags && !flags_written {
        if condstore && !items.contains(&Item::Uid) {
            sep(out);
            out.extend_from_slice(format!("UID {}", meta.uid).as_bytes());
        }
        sep(out);
        out.extend_from_slice(b"FLAGS ");
        meta.write_flags(out);
        flags_written = true;
    }
    if condstore && flags_written && !items.contains(&Item::ModSeq) {
        sep(out);
        out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::command::{parse, Parsed};
    use imap_codec::imap_types::command::CommandBody;
    use mail_parser::MessageParser;

    fn fetch_items(line: &str) -> Vec<Item> {
        let Parsed::Command(c, _) = parse(line.as_bytes(), 1024) else {
            panic!("{line}")
        };
        let CommandBody::Fetch {
            macro_or_item_names,
            uid,
            ..
        } = c.body
        else {
            panic!("{line}")
        };
        items(&macro_or_item_names, uid).expect("items")
    }

    fn meta() -> MessageMeta {
        MessageMeta {
            uid: 7,
            flags: vec!["\\Seen".into()],
            internal_date: 0,
            size: 40,
            modseq: 3,
            recent: false,
        }
    }

    #[test]
    fn needs_follow_the_items() {
        assert_eq!(
            need(&fetch_items("a FETCH 1 (FLAGS UID)\r\n")),
            Need::Nothing
        );
        assert_eq!(need(&fetch_items("a FETCH 1 FAST\r\n")), Need::Nothing);
        assert_eq!(need(&fetch_items("a FETCH 1 ALL\r\n")), Need::Header);
        assert_eq!(
            need(&fetch_items(
                "a FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n"
            )),
            Need::Header
        );
        assert_eq!(
            need(&fetch_items("a FETCH 1 BODY[1.MIME]\r\n")),
            Need::Everything
        );
        assert_eq!(
            need(&fetch_items("a FETCH 1 BODYSTRUCTURE\r\n")),
            Need::Everything
        );
        assert!(sets_seen(&fetch_items("a FETCH 1 BODY[]\r\n")));
        assert!(!sets_seen(&fetch_items("a FETCH 1 BODY.PEEK[]\r\n")));
        assert!(!sets_seen(&fetch_items("a FETCH 1 RFC822.HEADER\r\n")));
        assert!(sets_seen(&fetch_items("a FETCH 1 RFC822.TEXT\r\n")));
        assert_eq!(fetch_items("a UID FETCH 1 FLAGS\r\n")[0], Item::Uid);
    }

    #[test]
    fn responses_echo_the_section_and_partial_origin() {
        let raw = b"Subject: hi\r\nFrom: a@b\r\n\r\nHello body\r\n";
        let msg = MessageParser::default().parse(&raw[..]).unwrap();
        let mut out = Vec::new();
        render(
            &mut out,
            2,
            &meta(),
            &fetch_items(
                "a UID FETCH 7 (BODY.PEEK[HEADER.FIELDS (subject)] BODY[TEXT]<6.4> FLAGS)\r\n",
            ),
            Some(&msg),
            false,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 2 FETCH (UID 7 BODY[HEADER.FIELDS (SUBJECT)] {15}\r\nSubject: hi\r\n\r\n BODY[TEXT]<6> {4}\r\nbody FLAGS (\\Seen))\r\n"
        );
    }

    #[test]
    fn binary_is_refused() {
        let Parsed::Command(c, _) = parse(b"a FETCH 1 BINARY[1]\r\n", 1024) else {
            panic!()
        };
        let CommandBody::Fetch {
            macro_or_item_names,
            ..
        } = c.body
        else {
            panic!()
        };
        assert_eq!(items(&macro_or_item_names, false), Err(FetchError::Binary));
    }
}
