#!/usr/bin/env python3
"""Python's smtplib against a running tern-smtp: every check asserts and a failure exits
non-zero with the reason. Usage:

  smtp_smtplib.py deliver MX_PORT SUBMISSION_PORT SUBMISSIONS_PORT TAG
      sends three messages (plain MX, STARTTLS + LOGIN on submission, SMTP_SSL + PLAIN on
      submissions), each with the subject "TAG via <how>"; prints one JSON line per message
  smtp_smtplib.py policy SUBMISSION_PORT DELAY_MS
      the submission listener's refusals: 530 before AUTH, 538 before TLS, 535 5.7.8 after a
      delay for a wrong password, 553 5.7.1 for a sender the user does not own
  smtp_smtplib.py spf MX_PORT
      SPF at MAIL FROM (the test's DNS zone lists 127.0.0.1 for remote.example only)
"""
import json
import smtplib
import ssl
import sys
import time
from email.message import EmailMessage

HOST = "127.0.0.1"


def unverified():
    # The test certificate is self-signed; what is tested is the server, not the PKI.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message(subject, sender, to):
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m.set_content("Hello from smtplib.\n.leading dot\n")
    return m


def expect(got, code, enhanced=None):
    c, text = got
    text = text.decode() if isinstance(text, bytes) else text
    assert c == code, f"expected {code}, got {c} {text}"
    if enhanced:
        assert text.startswith(enhanced), f"expected {enhanced} in {c} {text}"


def deliver(mx, sub, subs, tag):
    out = []
    with smtplib.SMTP(HOST, mx, timeout=30) as s:
        s.ehlo("client.example")
        assert s.has_extn("pipelining") and s.has_extn("size") and s.has_extn("8bitmime")
        assert s.has_extn("smtputf8") and s.has_extn("enhancedstatuscodes") and s.has_extn("chunking")
        assert not s.has_extn("auth"), "AUTH must not be offered on the MX listener"
        refused = s.send_message(message(f"{tag} via mx", "someone@remote.test", "alice@example.test"))
        assert refused == {}, refused
        out.append({"how": "mx"})
    with smtplib.SMTP(HOST, sub, timeout=30) as s:
        s.ehlo("client.example")
        assert s.has_extn("starttls")
        assert not s.has_extn("auth"), "AUTH must wait for TLS"
        s.starttls(context=unverified())
        s.ehlo("client.example")
        assert s.has_extn("auth")
        s.login("alice@example.test", "pw-alice")
        s.send_message(message(f"{tag} via submission", "alice@example.test", "bob@example.test"))
        out.append({"how": "submission"})
    with smtplib.SMTP_SSL(HOST, subs, timeout=30, context=unverified()) as s:
        s.ehlo("client.example")
        s.login("bob@example.test", "pw-bob")
        s.send_message(message(f"{tag} via submissions", "bob@example.test", "alice@example.test"))
        out.append({"how": "submissions"})
    for o in out:
        print(json.dumps(o))


def policy(sub, delay_ms):
    with smtplib.SMTP(HOST, sub, timeout=30) as s:
        s.ehlo("client.example")
        expect(s.docmd("MAIL", "FROM:<alice@example.test>"), 530, "5.7.0")
        expect(s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdy1hbGljZQ=="), 538, "5.7.11")
        expect(s.noop(), 250)
        s.starttls(context=unverified())
        s.ehlo("client.example")
        started = time.monotonic()
        try:
            s.login("alice@example.test", "wrong")
            raise AssertionError("a wrong password was accepted")
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535, e
            assert e.smtp_error.decode().startswith("5.7.8"), e
        assert time.monotonic() - started >= delay_ms / 1000.0 * 0.9, "no delay after a wrong password"
        s.login("alice@example.test", "pw-alice")
        expect(s.docmd("AUTH", "PLAIN AA=="), 503, "5.5.1")
        expect(s.docmd("MAIL", "FROM:<bob@example.test>"), 553, "5.7.1")
        # A null sender is the server's, for bounces; never a logged-in user's.
        expect(s.docmd("MAIL", "FROM:<>"), 553, "5.7.1")
        expect(s.docmd("MAIL", "FROM:<alice@example.test>"), 250, "2.1.0")
        # Authenticated: relaying is allowed, unknown local users are still refused.
        expect(s.docmd("RCPT", "TO:<someone@remote.test>"), 250, "2.1.5")
        expect(s.docmd("RCPT", "TO:<nobody@example.test>"), 550, "5.1.1")
        expect(s.docmd("VRFY", "bob@example.test"), 250, "2.1.5")
        expect(s.docmd("RSET"), 250)
        # The header From must be the user's too (the address their recipients see).
        try:
            s.sendmail("alice@example.test", ["bob@example.test"],
                       b"From: Bob <bob@example.test>\r\nSubject: forged\r\n\r\nx\r\n")
            raise AssertionError("a From header naming another user was accepted")
        except smtplib.SMTPDataError as e:
            assert e.smtp_code == 550 and e.smtp_error.decode().startswith("5.7.1"), e
        s.sendmail("alice@example.test", ["bob@example.test"],
                   b"From: Alice <alice@example.test>\r\nSubject: own\r\n\r\nx\r\n")
    print(json.dumps({"policy": "ok"}))


def spf(mx):
    """SPF at MAIL FROM: a sender claiming the hosted domain from an address its SPF does not
    list is refused 550 5.7.23; a sender whose SPF passes is accepted, with a forged
    Authentication-Results field naming this host and one naming another host."""
    with smtplib.SMTP(HOST, mx, timeout=30) as s:
        s.ehlo("client.remote.example")
        expect(s.mail("forger@example.test"), 550, "5.7.23")
        s.rset()
        m = message("spf pass", "someone@remote.example", "alice@example.test")
        m["Authentication-Results"] = "mx.example.test; dkim=pass header.d=example.test"
        m["X-Marker"] = "kept"
        raw = "Authentication-Results: other.example; spf=pass\r\n" + m.as_string()
        refused = s.sendmail("someone@remote.example", ["alice@example.test"], raw)
        assert refused == {}, refused
    print("PASS spf")


def main():
    mode = sys.argv[1]
    if mode == "deliver":
        deliver(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif mode == "policy":
        policy(int(sys.argv[2]), int(sys.argv[3]))
    elif mode == "spf":
        spf(int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
