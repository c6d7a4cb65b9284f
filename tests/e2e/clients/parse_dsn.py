#!/usr/bin/env python3
"""Parse a delivery status notification (RFC 3464 / RFC 6522) with Python's email package.

An independent reader of what tern-queue's DSN builder writes: tests (and people) run it on a
report saved to a file and compare the JSON it prints with what they expect.

    python3 parse_dsn.py REPORT.eml

Exits 1 (with a message on stderr) when the file is not a multipart/report of report-type
delivery-status, or has no message/delivery-status part. Only the standard library is used.
"""

import email
import email.message
import email.policy
import json
import sys

RECIPIENT_FIELDS = ("Final-Recipient", "Action", "Status", "Diagnostic-Code", "Remote-MTA")
RETURNED_PREVIEW = 200


def fail(why):
    print(f"parse_dsn: {why}", file=sys.stderr)
    sys.exit(1)


def unfold(value):
    """A header value on one line: folding whitespace collapsed to single spaces."""
    return " ".join(str(value).split())


def field_blocks(part):
    """The delivery-status part's field blocks as dicts: per-message fields first.

    Python's email package parses message/delivery-status into a list of Message objects,
    one per blank-line-separated block. Fall back to splitting the raw text when the payload
    is not a list (an unusual parser configuration or a malformed part).
    """
    payload = part.get_payload()
    if isinstance(payload, list) and all(isinstance(m, email.message.Message) for m in payload):
        return [{k: unfold(v) for k, v in block.items()} for block in payload], "email"
    raw = part.get_payload(decode=True) or b""
    text = raw.decode("ascii", "replace").replace("\r\n", "\n")
    blocks = []
    for chunk in text.split("\n\n"):
        fields, name = {}, None
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and name:
                fields[name] += " " + line.strip()
            elif ":" in line:
                name, value = line.split(":", 1)
                fields[name] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks, "raw"


def returned_text(part):
    """The third part's text: the returned message or its headers."""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) else inner
        return inner.as_bytes(policy=email.policy.SMTP).decode("utf-8", "replace")
    return (part.get_payload(decode=True) or b"").decode("utf-8", "replace")


def main(argv):
    if len(argv) != 2:
        fail("usage: parse_dsn.py FILE")
    with open(argv[1], "rb") as f:
        data = f.read()
    msg = email.message_from_bytes(data, policy=email.policy.default)

    if msg.get_content_type() != "multipart/report":
        fail(f"not a multipart/report but {msg.get_content_type()}")
    report_type = msg.get_param("report-type")
    if report_type != "delivery-status":
        fail(f"report-type is {report_type!r}, not delivery-status")
    parts = msg.get_payload()
    if not isinstance(parts, list) or len(parts) < 2:
        fail("a report has at least two parts")
    status = parts[1]
    if status.get_content_type() != "message/delivery-status":
        fail(f"the second part is {status.get_content_type()}, not message/delivery-status")

    blocks, parsed_by = field_blocks(status)
    if not blocks:
        fail("the delivery-status part has no fields")
    per_message, per_recipient = blocks[0], blocks[1:]
    returned = returned_text(parts[2]) if len(parts) > 2 else None

    out = {
        "content_type": msg.get_content_type(),
        "report_type": report_type,
        "boundary": msg.get_boundary(),
        "subject": unfold(msg["Subject"]) if msg["Subject"] is not None else None,
        "to": unfold(msg["To"]) if msg["To"] is not None else None,
        "from": unfold(msg["From"]) if msg["From"] is not None else None,
        "auto_submitted": unfold(msg["Auto-Submitted"]) if msg["Auto-Submitted"] else None,
        "parts": [p.get_content_type() for p in parts],
        "status_parsed_by": parsed_by,
        "per_message": per_message,
        "recipients": [
            {name: block.get(name) for name in RECIPIENT_FIELDS} | {
                k: v for k, v in block.items() if k not in RECIPIENT_FIELDS
            }
            for block in per_recipient
        ],
        "human": parts[0].get_content() if parts[0].get_content_maintype() == "text" else None,
        "returned": returned[:RETURNED_PREVIEW] if returned is not None else None,
        "returned_length": len(returned) if returned is not None else 0,
        "defects": [type(d).__name__ for p in msg.walk() for d in p.defects],
    }
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
