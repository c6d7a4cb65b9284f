#!/usr/bin/env python3
"""One message's journey with Python's standard clients (smtplib, imaplib, poplib), which
Tern did not write: used by the delivery-trace and metrics tests in services/tern-access/tests.

Usage:
  mail_journey.py send --port P --user U --password PW --message-id ID --to A [--to B ...]
      submission with STARTTLS and AUTH LOGIN, one message to every --to
  mail_journey.py imap --port P --user U --password PW --needle TEXT
      IMAP LOGIN, SELECT INBOX, FETCH BODY[] of the message containing TEXT
  mail_journey.py pop3 --port P --user U --password PW --needle TEXT
      POP3 USER/PASS, RETR of the message containing TEXT (kept on the server)
Prints "PASS <command>" when every expectation held; otherwise raises (nonzero exit).
"""

import argparse
import imaplib
import poplib
import smtplib
import ssl
from email.message import EmailMessage

HOST = "127.0.0.1"


def send(a):
    msg = EmailMessage()
    msg["From"] = a.user
    msg["To"] = ", ".join(a.to)
    msg["Subject"] = "journey " + a.message_id
    msg["Message-ID"] = a.message_id
    msg.set_content("A message followed through every service.\n" + a.message_id + "\n")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(HOST, a.port, timeout=30) as s:
        s.ehlo("client.example.test")
        s.starttls(context=ctx)
        s.ehlo("client.example.test")
        s.login(a.user, a.password)
        refused = s.send_message(msg)
        assert not refused, refused


def imap(a):
    m = imaplib.IMAP4(HOST, a.port)
    typ, _ = m.login(a.user, a.password)
    assert typ == "OK"
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    typ, data = m.search(None, "BODY", a.needle)
    assert typ == "OK" and data[0], f"no message with {a.needle!r}: {data!r}"
    n = data[0].split()[-1]
    typ, data = m.fetch(n, "(BODY[])")
    assert typ == "OK", data
    body = data[0][1]
    assert a.needle.encode() in body, body[:200]
    m.logout()


def pop3(a):
    p = poplib.POP3(HOST, a.port, timeout=30)
    p.user(a.user)
    p.pass_(a.password)
    _, listing, _ = p.list()
    for line in listing:
        n = int(line.split()[0])
        _, lines, _ = p.retr(n)
        if any(a.needle.encode() in l for l in lines):
            break
    else:
        raise AssertionError(f"no message with {a.needle!r} in {len(listing)} messages")
    p.quit()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["send", "imap", "pop3"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--message-id")
    ap.add_argument("--to", action="append", default=[])
    ap.add_argument("--needle")
    a = ap.parse_args()
    {"send": send, "imap": imap, "pop3": pop3}[a.command](a)
    print("PASS", a.command)


if __name__ == "__main__":
    main()
