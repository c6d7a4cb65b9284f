#!/usr/bin/env python3
"""Drives a Tern IMAP listener with Python's imaplib, a client Tern did not write.

Called by services/tern-access/tests/imap.rs with a scenario name; exits 0 and prints
"PASS <scenario>" when every expectation held, otherwise raises (nonzero exit, traceback).

Usage: imap_imaplib.py SCENARIO --port P [--port2 P2] [--user U --password PW]
"""

import argparse
import base64
import re
import socket
import ssl
import sys
import threading
import time
import imaplib

HOST = "127.0.0.1"


def ok(result, what=""):
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data!r}"
    return data


def no(fn, *args, code=None):
    """fn(*args) must answer NO (imaplib raises .error), carrying [code] when given."""
    try:
        typ, data = fn(*args)
    except imaplib.IMAP4.error as e:
        text = str(e)
        if code:
            assert f"[{code}" in text, f"expected [{code}] in {text!r}"
        return text
    text = b" ".join(d if isinstance(d, bytes) else b"" for d in data).decode("utf-8", "replace")
    assert typ in ("NO", "BAD"), f"{fn.__name__}{args} answered {typ} {data!r}"
    if code:
        assert f"[{code}" in text, f"expected [{code}] in {text!r}"
    return text


def connect(args, port=None):
    m = imaplib.IMAP4(HOST, port or args.port, timeout=30)
    ok(m.login(args.user, args.password), "LOGIN")
    return m


def msg(subject, body="Hello.\r\n", frm="sender@example.test", extra=""):
    return (
        f"From: {frm}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{subject}@example.test>\r\n"
        f"{extra}\r\n{body}"
    ).encode()


def uids_of(m, criteria="ALL"):
    data = ok(m.uid("SEARCH", None, criteria), "UID SEARCH")
    return [int(x) for x in data[0].split()]


def scenario_commands(args):
    """Every RFC 3501 command, in the state it belongs to, with its responses checked."""
    m = imaplib.IMAP4(HOST, args.port, timeout=30)
    # Not authenticated: CAPABILITY, NOOP, then a wrong password, then LOGIN.
    caps = m.capabilities
    assert "IMAP4REV1" in caps and "AUTH=PLAIN" in caps and "SASL-IR" in caps, caps
    ok(m.noop())
    no(m.select, "INBOX")  # BAD before login
    no(m.login, args.user, "wrong password", code="AUTHENTICATIONFAILED")
    data = ok(m.login(args.user, args.password))
    # Authenticated: the capability list grows.
    typ, data = m.capability()
    caps = data[0].decode().split()
    for c in ["IDLE", "UIDPLUS", "MOVE", "LITERAL+", "NAMESPACE", "ENABLE", "UNSELECT",
              "CHILDREN", "SPECIAL-USE", "QUOTA", "CONDSTORE", "ID"]:
        assert c in caps, (c, caps)
    data = ok(m.namespace())
    assert data[0] == b'(("" "/")) NIL NIL', data
    # CREATE (with a child and a non-ASCII name), LIST, LSUB, SUBSCRIBE, STATUS, RENAME, DELETE.
    ok(m.create("Projects"))
    ok(m.create("Projects/Tern"))
    ok(m.create("&AMk-t&AOk-"))  # "Été" in modified UTF-7
    no(m.create, "Projects", code="ALREADYEXISTS")
    listed = ok(m.list('""', "*"))
    names = {re.search(rb'"/" (.*)$', l).group(1).strip(b'"') for l in listed}
    assert {b"INBOX", b"Projects", b"Projects/Tern", b"&AMk-t&AOk-", b"Sent", b"Trash"} <= names, names
    proj = [l for l in listed if l.endswith(b'"Projects"') or l.endswith(b" Projects")]
    assert proj and b"\\HasChildren" in proj[0], listed
    sent = [l for l in listed if l.endswith(b"Sent") or l.endswith(b'"Sent"')]
    assert sent and b"\\Sent" in sent[0], listed
    top = ok(m.list('""', "%"))
    assert not any(b"Projects/Tern" in l for l in top), top
    root = ok(m.list('""', '""'))
    assert root[0] == b'(\\Noselect) "/" ""', root
    ok(m.subscribe("Projects/Tern"))
    lsub = ok(m.lsub('""', "*"))
    assert any(b"Projects/Tern" in l for l in lsub), lsub
    lsub_top = ok(m.lsub('""', "Projects"))
    ok(m.unsubscribe("Projects/Tern"))
    lsub = ok(m.lsub('""', "Projects/*"))
    assert not any(b"Projects/Tern" in l for l in lsub if l), lsub
    ok(m.rename("Projects/Tern", "Projects/Gull"))
    listed = ok(m.list("Projects/", "%"))
    assert any(b"Projects/Gull" in l for l in listed) and not any(b"Projects/Tern" in l for l in listed), listed
    ok(m.delete("Projects/Gull"))
    no(m.delete, "Nope", code="NONEXISTENT")
    no(m.select, "Nope", code="NONEXISTENT")
    # APPEND (with flags and a date; synchronizing literal), to INBOX.
    date = imaplib.Time2Internaldate(time.mktime((2020, 5, 17, 10, 0, 0, 0, 0, -1)))
    for i in range(5):
        typ, data = m.append("INBOX", "(\\Flagged)" if i == 0 else None, date, msg(f"m{i}", f"body {i}\r\n"))
        assert typ == "OK" and b"APPENDUID" in data[0], data
    no(m.append, "Nope", None, None, msg("x"), code="TRYCREATE")
    st = ok(m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)"))
    # No session has selected INBOX since: all five are still \\Recent to the next one.
    assert b"MESSAGES 5" in st[0] and b"UNSEEN 5" in st[0] and b"RECENT 5" in st[0], st
    # GETQUOTAROOT answers (a user without a quota has no root).
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK", data
    # EXAMINE: read-only.
    typ, data = m.select("INBOX", readonly=True)
    assert typ == "OK" and data == [b"5"], data
    no(m.store, "1", "+FLAGS", "\\Seen", code="READ-ONLY")
    # FETCH BODY[] in EXAMINE leaves \Seen alone.
    ok(m.fetch("1", "(BODY[])"))
    flags = ok(m.fetch("1", "(FLAGS)"))
    assert b"\\Seen" not in flags[0], flags
    # SELECT: the required untagged responses.
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"5"], data
    assert m.untagged_responses.get("UIDVALIDITY"), m.untagged_responses
    assert m.untagged_responses.get("UIDNEXT") == [b"6"], m.untagged_responses
    # EXAMINE took none of the five as \\Recent, so this SELECT gets all of them.
    assert m.untagged_responses.get("RECENT") == [b"5"], m.untagged_responses
    assert m.untagged_responses.get("FLAGS"), m.untagged_responses
    uv = int(m.untagged_responses["UIDVALIDITY"][0])
    # FETCH: every data item.
    data = ok(m.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE UID)"))
    line = data[0]
    assert b"FLAGS (\\Flagged \\Recent)" in line, line
    assert b'INTERNALDATE "17-May-2020' in line, line
    assert b"RFC822.SIZE %d" % len(msg("m0", "body 0\r\n")) in line, line
    assert b'ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "m0" (' in line, line
    assert b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 8 1 NIL NIL NIL NIL)' in line, line
    assert b'BODY ("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 8 1)' in line, line
    assert b"UID 1" in line, line
    data = ok(m.fetch("2", "(RFC822)"))
    assert data[0][1] == msg("m1", "body 1\r\n"), data
    data = ok(m.fetch("2", "(FLAGS)"))
    assert b"\\Seen" in data[0], data  # RFC822 sets \Seen
    data = ok(m.fetch("3", "(RFC822.HEADER)"))
    assert data[0][1] == msg("m2", "")[: msg("m2", "").index(b"\r\n\r\n") + 4], data
    data = ok(m.fetch("3", "(RFC822.TEXT)"))
    assert data[0][1] == b"body 2\r\n", data
    data = ok(m.fetch("4", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])"))
    assert data[0][1] == b"From: sender@example.test\r\nSubject: m3\r\n\r\n", data
    data = ok(m.fetch("4", "(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM DATE MESSAGE-ID)])"))
    assert data[0][1] == b"To: alice@example.test\r\n\r\n", data
    data = ok(m.fetch("4", "(BODY.PEEK[TEXT]<1.3>)"))
    assert data[0][0].endswith(b"BODY[TEXT]<1> {3}") and data[0][1] == b"ody", data
    data = ok(m.fetch("4", "(BODY.PEEK[1])"))
    assert data[0][1] == b"body 3\r\n", data
    data = ok(m.fetch("4", "(FLAGS)"))
    assert b"\\Seen" not in data[0], data
    data = ok(m.fetch("4", "(BODY[HEADER])"))
    data = ok(m.fetch("4", "(FLAGS)"))
    assert b"\\Seen" in data[0], data
    data = ok(m.fetch("1:*", "FAST"))
    assert len(data) == 5, data
    # UID FETCH always returns UID.
    data = ok(m.uid("FETCH", "1:3", "(FLAGS)"))
    assert all(b"UID" in d for d in data), data
    # STORE and UID STORE, with .SILENT.
    data = ok(m.store("5", "+FLAGS", "(\\Deleted $Important)"))
    assert b"\\Deleted" in data[0] and b"$Important" in data[0], data
    data = ok(m.store("5", "-FLAGS.SILENT", "($Important)"))
    assert data == [None], data
    data = ok(m.uid("STORE", "4", "FLAGS", "(\\Answered)"))
    assert b"UID 4" in data[0] and b"FLAGS (\\Answered \\Recent)" in data[0], data
    # SEARCH and UID SEARCH.
    assert ok(m.search(None, "FLAGGED"))[0] == b"1", "FLAGGED"
    assert ok(m.search(None, "DELETED"))[0] == b"5"
    assert ok(m.search(None, 'SUBJECT "m3"'))[0] == b"4"
    assert ok(m.search(None, "BODY", '"body 2"'))[0] == b"3"
    assert ok(m.search("UTF-8", "OR", "ANSWERED", "FLAGGED"))[0] == b"1 4"
    assert ok(m.uid("SEARCH", None, "NOT", "SEEN"))[0] == b"1 4 5"  # 4 lost \\Seen to STORE FLAGS
    no(m.search, "KOI8-R", "ALL", code="BADCHARSET")
    # COPY and UID COPY (UIDPLUS COPYUID), MOVE.
    typ, data = m.copy("1:2", "Projects")
    assert typ == "OK" and b"COPYUID" in data[0], data
    typ, data = m._simple_command("UID", "COPY", "3", "Projects")
    assert typ == "OK" and b"COPYUID" in data[0], data
    no(m.copy, "1", "Nope", code="TRYCREATE")
    m.untagged_responses.pop("EXPUNGE", None)
    typ, data = m._simple_command("UID", "MOVE", "3", "Trash")
    assert typ == "OK", data
    assert m.untagged_responses.pop("EXPUNGE", None) == [b"3"], m.untagged_responses
    assert any(b"COPYUID" in r for r in m.untagged_responses.get("OK", [])), m.untagged_responses
    st = ok(m.status("Projects", "(MESSAGES)"))
    assert b"MESSAGES 3" in st[0], st
    st = ok(m.status("Trash", "(MESSAGES)"))
    assert b"MESSAGES 1" in st[0], st
    # CHECK, EXPUNGE (removes the \Deleted message 5, now number 4), UID EXPUNGE.
    ok(m.check())
    typ, data = m.expunge()
    assert typ == "OK" and data == [b"4"], data
    assert ok(m.search(None, "ALL"))[0] == b"1 2 3"
    ok(m.store("1", "+FLAGS", "\\Deleted"))
    ok(m.store("2", "+FLAGS", "\\Deleted"))
    m.untagged_responses.pop("EXPUNGE", None)
    typ, data = m._simple_command("UID", "EXPUNGE", "1")
    assert typ == "OK" and m.untagged_responses.pop("EXPUNGE", None) == [b"1"], (data, m.untagged_responses)
    assert uids_of(m) == [2, 4], uids_of(m)
    # UNSELECT leaves \Deleted messages alone; CLOSE expunges them silently.
    typ, data = m._simple_command("UNSELECT")
    assert typ == "OK", data
    m.select("INBOX")
    typ, data = m.close()
    assert typ == "OK", data
    m.select("INBOX")
    assert uids_of(m) == [4], uids_of(m)
    # ENABLE CONDSTORE, then MODSEQ in FETCH and STORE UNCHANGEDSINCE.
    m.unselect()
    typ, data = m._simple_command("ENABLE", "CONDSTORE")
    assert typ == "OK" and m.untagged_responses.pop("ENABLED", None) == [b"CONDSTORE"], (data, m.untagged_responses)
    m.select("INBOX")
    typ, data = m.uid("FETCH", "4", "(MODSEQ FLAGS)")
    mod = int(re.search(rb"MODSEQ \((\d+)\)", data[0]).group(1))
    typ, data = m._simple_command("UID", "STORE", "4", f"(UNCHANGEDSINCE {mod - 1})", "+FLAGS", "(\\Flagged)")
    assert typ == "OK" and data[0].startswith(b"[MODIFIED 4]"), data
    typ, data = m._simple_command("UID", "STORE", "4", f"(UNCHANGEDSINCE {mod})", "+FLAGS", "(\\Flagged)")
    assert typ == "OK" and not data[0].startswith(b"[MODIFIED"), data
    typ, data = m.uid("FETCH", "4", "(FLAGS)")
    assert b"\\Flagged" in data[0] and b"MODSEQ" in data[0], data
    # ID and IDLE (DONE right away).
    typ, data = m.xatom("ID", "NIL")
    assert typ == "OK", data
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+"), "IDLE continuation"
    m.send(b"DONE\r\n")
    line = m.readline()
    assert line.startswith(tag + b" OK"), line
    # DELETE a mailbox that had messages; LOGOUT.
    ok(m.delete("Projects"))
    typ, data = m.logout()
    assert typ == "BYE", data
    print(f"uidvalidity {uv}")


def scenario_authenticate(args):
    """AUTHENTICATE PLAIN, with SASL-IR and with the continuation."""
    m = imaplib.IMAP4(HOST, args.port, timeout=30)
    m._mode_ascii = True
    cred = f"\0{args.user}\0{args.password}".encode()
    typ, data = m.authenticate("PLAIN", lambda _: cred)
    assert typ == "OK", data
    m.logout()
    # SASL-IR: the initial response on the command line.
    s = socket.create_connection((HOST, args.port), timeout=30)
    f = s.makefile("rwb")
    f.readline()
    f.write(b"a AUTHENTICATE PLAIN " + base64.b64encode(cred) + b"\r\n")
    f.flush()
    line = f.readline()
    assert line.startswith(b"a OK"), line
    f.write(b"b AUTHENTICATE PLAIN\r\n")
    f.flush()
    line = f.readline()
    assert line.startswith(b"b BAD"), line  # already authenticated
    s.close()


def scenario_hostile(args):
    """Hostile input gets BAD or a close, and the server keeps serving."""
    def raw(lines, read_until=b"\r\n", timeout=10):
        s = socket.create_connection((HOST, args.port), timeout=timeout)
        f = s.makefile("rwb")
        f.readline()
        out = []
        for l in lines:
            f.write(l)
            f.flush()
            try:
                out.append(f.readline())
            except socket.timeout:
                out.append(b"")
        s.close()
        return out
    login = f"a LOGIN {args.user} {args.password}\r\n".encode()
    # The largest ID RFC 2971 allows (30 pairs, 1,024-octet values) is answered before login.
    pairs = " ".join(f'"field-{i:024}" "{"v" * 1024}"' for i in range(30))
    out = raw([f"i ID ({pairs})\r\n".encode(), b"j NOOP\r\n"])
    assert out[0].startswith(b"* ID ("), out
    assert out[1].startswith(b"i OK"), out
    # Before login no command may be large: an APPEND literal is refused at once.
    out = raw([b"p APPEND INBOX {100000}\r\n", b"q NOOP\r\n"])
    assert out[0].startswith(b"p NO [TOOBIG]"), out
    assert out[1].startswith(b"q OK"), out
    # A literal of 4294967295 octets: NO [TOOBIG], connection survives.
    out = raw([login, b"b APPEND INBOX {4294967295}\r\n", b"c NOOP\r\n"])
    assert out[1].startswith(b"b NO [TOOBIG]"), out
    assert out[2].startswith(b"c OK"), out
    # 10,000 nested parentheses: BAD, connection survives.
    deep = b"d SEARCH " + b"(" * 10000 + b"ALL" + b")" * 10000 + b"\r\n"
    out = raw([login, b"s SELECT INBOX\r\n"])
    s = socket.create_connection((HOST, args.port), timeout=10)
    f = s.makefile("rwb")
    f.readline()
    f.write(login)
    f.flush()
    assert f.readline().startswith(b"a OK")
    f.write(b"s SELECT INBOX\r\n")
    f.flush()
    while not (l := f.readline()).startswith(b"s "):
        pass
    f.write(deep)
    f.flush()
    l = f.readline()
    assert l.startswith(b"d BAD"), l
    # Invalid modified UTF-7.
    f.write(b"e CREATE &Jjo\r\n")
    f.flush()
    l = f.readline()
    assert l.startswith(b"e NO"), l  # well-formed command, impossible name: NO
    f.write(b"e2 SELECT \"&AGE-\"\r\n")
    f.flush()
    l = f.readline()
    assert l.startswith(b"e2 NO"), l
    # A 1 MB line: BAD, connection survives.
    f.write(b"f NOOP " + b"x" * (1 << 20) + b"\r\n")
    f.flush()
    l = f.readline()
    assert b"BAD" in l, l
    f.write(b"g NOOP\r\n")
    f.flush()
    while not (l := f.readline()).startswith(b"g "):
        pass
    assert l.startswith(b"g OK"), l
    # Garbage, an unknown command, a command in the wrong state.
    f.write(b"\x00\x01\x02\r\nh FROB\r\ni STARTTLS\r\n")
    f.flush()
    a, b, c = f.readline(), f.readline(), f.readline()
    assert a.startswith(b"* BAD") and b.startswith(b"h BAD") and c.startswith(b"i BAD"), (a, b, c)
    # An unterminated literal: the server waits for the rest; the client goes away.
    f.write(b"j APPEND INBOX {100}\r\n")
    f.flush()
    assert f.readline().startswith(b"+")
    f.write(b"only a few octets")
    f.flush()
    s.close()
    # Others are unaffected.
    m = connect(args)
    ok(m.select("INBOX"))
    m.logout()


def search_corpus():
    """(raw message, internal date, flags) for the known SEARCH mailbox; UIDs 1..5."""
    return [
        (b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: Quarterly report\r\n"
         b"Date: Fri, 1 Jan 2021 10:00:00 +0000\r\n\r\nnumbers attached\r\n",
         '"01-Jan-2021 10:00:00 +0000"', "(\\Seen \\Answered)"),
        (b"From: carol@c.test\r\nTo: alice@example.test\r\nCc: dave@d.test\r\nSubject: Lunch?\r\n"
         b"Date: Tue, 15 Mar 2022 12:00:00 +0000\r\n\r\nsushi or pizza\r\n",
         '"15-Mar-2022 12:00:00 +0000"', "(\\Flagged)"),
        (("From: =?UTF-8?Q?=C3=89mile?= <emile@e.test>\r\nTo: alice@example.test\r\n"
         "Subject: =?UTF-8?Q?Caf=C3=A9?= menu\r\nDate: Tue, 20 Jun 2023 08:00:00 +0000\r\n"
         "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
         "Grüße aus dem Café\r\n").encode(),
         '"20-Jun-2023 08:00:00 +0000"', "(\\Draft $Work)"),
        (b"From: alice@a.test\r\nTo: bob@b.test\r\nBcc: secret@s.test\r\nSubject: Re: Quarterly report\r\n"
         b"Date: Sat, 2 Jan 2021 09:00:00 +0000\r\n\r\n" + b"lorem ipsum dolor\r\n" * 300,
         '"02-Jan-2021 09:00:00 +0000"', "(\\Deleted \\Seen)"),
        (b"From: bob@b.test\r\nTo: alice@example.test\r\nSubject: Meeting\r\nX-Priority: 1\r\n"
         b"Date: Thu, 10 Oct 2024 16:00:00 +0000\r\n\r\nagenda\r\n",
         '"10-Oct-2024 16:00:00 +0000"', None),
    ]


def scenario_search(args):
    """Every RFC 3501 SEARCH key (and MODSEQ) on a known mailbox returns the right UIDs."""
    m = connect(args)
    ok(m.create("Known"))
    corpus = search_corpus()
    for raw, date, flags in corpus:
        ok(m.append("Known", flags, date, raw))
    ok(m.select("Known"))
    sizes = [len(raw) for raw, _, _ in corpus]
    assert sorted(sizes)[-1] > 5000 and sorted(sizes)[-2] < 400, sizes

    def check(criteria, expected, charset=None):
        typ, data = m.uid("SEARCH", charset, *criteria) if charset else m.uid("SEARCH", None, *criteria)
        assert typ == "OK", (criteria, typ, data)
        got = [int(x) for x in data[0].split() if x.isdigit()]
        assert got == expected, f"{criteria}: expected {expected}, got {got} ({data!r})"

    check(["ALL"], [1, 2, 3, 4, 5])
    check(["ANSWERED"], [1])
    check(["UNANSWERED"], [2, 3, 4, 5])
    check(["DELETED"], [4])
    check(["UNDELETED"], [1, 2, 3, 5])
    check(["DRAFT"], [3])
    check(["UNDRAFT"], [1, 2, 4, 5])
    check(["FLAGGED"], [2])
    check(["UNFLAGGED"], [1, 3, 4, 5])
    check(["SEEN"], [1, 4])
    check(["UNSEEN"], [2, 3, 5])
    check(["KEYWORD", "$Work"], [3])
    check(["UNKEYWORD", "$Work"], [1, 2, 4, 5])
    # This session's SELECT was the first to see all five, so all are \Recent here: NEW is
    # RECENT UNSEEN, OLD is NOT RECENT.
    check(["NEW"], [2, 3, 5])
    check(["RECENT"], [1, 2, 3, 4, 5])
    check(["OLD"], [])
    check(["FROM", "alice"], [1, 4])
    check(["TO", "alice@example.test"], [2, 3, 5])
    check(["CC", "dave"], [2])
    check(["BCC", "secret"], [4])
    check(["SUBJECT", "quarterly"], [1, 4])
    check(["SUBJECT", '"Re: Quarterly"'], [4])
    check(["HEADER", "X-Priority", "1"], [5])
    check(["HEADER", "Cc", '""'], [2])
    check(["BODY", "pizza"], [2])
    check(["BODY", "alice"], [])
    check(["TEXT", "alice"], [1, 2, 3, 4, 5])
    check(["TEXT", "dolor"], [4])
    check(["BEFORE", "1-Jan-2022"], [1, 4])
    check(["BEFORE", "2-Jan-2021"], [1])
    check(["ON", "15-Mar-2022"], [2])
    check(["SINCE", "20-Jun-2023"], [3, 5])
    check(["SENTBEFORE", "2-Jan-2021"], [1])
    check(["SENTON", "2-Jan-2021"], [4])
    check(["SENTSINCE", "1-Jan-2024"], [5])
    check(["LARGER", "5000"], [4])
    check(["SMALLER", "400"], [1, 2, 3, 5])
    check(["UID", "2:4"], [2, 3, 4])
    check(["UID", "4:*"], [4, 5])
    check(["1,5"], [1, 5])
    check(["2:*"], [2, 3, 4, 5])
    check(["NOT", "SEEN"], [2, 3, 5])
    check(["NOT", "NOT", "SEEN"], [1, 4])
    check(["OR", "FLAGGED", "DRAFT"], [2, 3])
    check(["OR", "(FROM alice SUBJECT report)", "(CC dave)"], [1, 2, 4])
    check(["(OR (UID 1) (OR (UID 3) (UID 5)))", "NOT", "DRAFT"], [1, 5])
    check(["SEEN", "DELETED", "LARGER", "100"], [4])
    # Only `*` means the largest: a literal 4294967295 past every UID names none.
    check(["UID", "6:4294967295"], [])
    check(["UID", "6:*"], [5])
    # SENT* keys compare the Date: field's date as written, ignoring time and zone: 23:30 at
    # -0800 on 25 March is 26 March in UTC, and still SENTON 25-Mar-2007.
    ok(m.create("Zoned"))
    ok(m.append("Zoned", None, None,
                b"From: z@z.test\r\nSubject: late\r\nDate: Sun, 25 Mar 2007 23:30:00 -0800\r\n\r\nx\r\n"))
    ok(m.append("Zoned", None, None,
                b"From: z@z.test\r\nSubject: later\r\nDate: Tue, 27 Mar 2007 08:00:00 +0000\r\n\r\ny\r\n"))
    ok(m.select("Zoned"))
    check(["SENTON", "25-Mar-2007"], [1])
    check(["SENTBEFORE", "25-Mar-2007"], [])
    check(["SENTBEFORE", "26-Mar-2007"], [1])
    check(["SENTSINCE", "26-Mar-2007"], [2])
    ok(m.select("Known"))
    # CHARSET UTF-8 with non-ASCII strings (as literals).
    m.literal = "Grüße".encode()
    typ, data = m.uid("SEARCH", "CHARSET", "UTF-8", "BODY")
    assert typ == "OK" and data[0].split() == [b"3"], data
    m.literal = "Café".encode()
    typ, data = m.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT")
    assert typ == "OK" and data[0].split() == [b"3"], data
    # Sequence-number SEARCH answers sequence numbers.
    typ, data = m.search(None, "FLAGGED")
    assert data[0] == b"2", data
    # MODSEQ (CONDSTORE): a change after a known modseq is found, with (MODSEQ n).
    typ, data = m.uid("FETCH", "1:*", "(MODSEQ)")
    highest = max(int(re.search(rb"MODSEQ \((\d+)\)", d).group(1)) for d in data)
    ok(m.uid("STORE", "5", "+FLAGS", "($Later)"))
    typ, data = m.uid("SEARCH", None, "MODSEQ", str(highest + 1))
    assert typ == "OK" and re.fullmatch(rb"5 \(MODSEQ \d+\)", data[0]), data
    m.logout()


def scenario_two_nodes(args):
    """An APPEND through node A reaches an IDLE session on node B within a second; an
    EXPUNGE and a flag change through A are seen correctly by a selected session on B."""
    a = connect(args, args.port)
    for i in range(3):
        ok(a.append("INBOX", None, None, msg(f"before-{i}")))
    b = connect(args, args.port2)
    ok(b.select("INBOX"))
    exists = int(b.untagged_responses["EXISTS"][-1])
    tag = b._new_tag()
    b.send(tag + b" IDLE\r\n")
    assert b.readline().startswith(b"+"), "IDLE continuation"
    ok(a.append("INBOX", None, None, msg("across-nodes")))
    appended = time.monotonic()
    b.sock.settimeout(5)
    line = b.readline()
    seen = time.monotonic()
    assert line == f"* {exists + 1} EXISTS\r\n".encode(), line
    delay = seen - appended
    assert delay < 1.0, f"IDLE on B saw the APPEND on A after {delay:.3f}s"
    b.send(b"DONE\r\n")
    line = b.readline()
    # B was the first session told of the new message (and its SELECT of the first three):
    # RECENT follows EXISTS.
    assert line == f"* {exists + 1} RECENT\r\n".encode(), line
    line = b.readline()
    assert line.startswith(tag + b" OK"), line
    print(f"idle-delay-ms {delay * 1000:.1f}")
    # B's view: UIDs by sequence number.
    typ, data = b.fetch("1:*", "(UID)")
    before = [int(re.search(rb"UID (\d+)", d).group(1)) for d in data]
    assert len(before) == exists + 1, before
    # A expunges the first message and flags the last.
    ok(a.select("INBOX"))
    ok(a.store("1", "+FLAGS", "\\Deleted"))
    ok(a.expunge())
    ok(a.store("*", "+FLAGS", "\\Flagged"))
    # B learns at its next command: one EXPUNGE for sequence number 1, then the flags.
    deadline = time.monotonic() + 5
    b.untagged_responses.clear()
    while True:
        ok(b.noop())
        if "EXPUNGE" in b.untagged_responses and "FETCH" in b.untagged_responses:
            break
        assert time.monotonic() < deadline, f"B never saw the EXPUNGE and flag change: {b.untagged_responses}"
        time.sleep(0.05)
    assert b.untagged_responses["EXPUNGE"] == [b"1"], b.untagged_responses
    assert any(b"\\Flagged" in f for f in b.untagged_responses["FETCH"]), b.untagged_responses
    b.untagged_responses.clear()
    typ, data = b.fetch("1:*", "(UID FLAGS)")
    after = [int(re.search(rb"UID (\d+)", d).group(1)) for d in data]
    assert after == before[1:], (before, after)
    assert b"\\Flagged" in data[-1], data
    # A FETCH during which an expunge arrives does not renumber (RFC 3501 §7.4.1).
    ok(a.store("1", "+FLAGS", "\\Deleted"))
    ok(a.expunge())
    time.sleep(0.3)
    b.untagged_responses.clear()
    typ, data = b.fetch("1", "(UID)")
    assert "EXPUNGE" not in b.untagged_responses, b.untagged_responses
    b.untagged_responses.clear()
    ok(b.noop())
    assert b.untagged_responses.get("EXPUNGE") == [b"1"], b.untagged_responses
    # A rename elsewhere is followed by the selected session; a delete ends it with BYE.
    ok(a.create("Shared"))
    ok(a.append("Shared", None, None, msg("shared-1")))
    ok(b.select("Shared"))
    ok(a.rename("Shared", "Shared2"))
    time.sleep(0.3)
    ok(b.noop())
    typ, data = b.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and b"shared-1" in data[0][1], data
    ok(a.delete("Shared2"))
    time.sleep(0.3)
    try:
        typ, data = b.noop()
        raise AssertionError(f"NOOP after the selected mailbox was deleted: {typ} {data!r}")
    except imaplib.IMAP4.abort as e:
        assert "deleted" in str(e), e
    a.logout()


def recent_uids(m):
    return set(int(x) for x in ok(m.uid("SEARCH", None, "RECENT"), "UID SEARCH RECENT")[0].split())


def scenario_recent(args):
    """RFC 3501 \\Recent across two access nodes: the first session told of a message gets
    it as recent and no other does; EXAMINE shows without taking; SELECT, new mail, FETCH,
    SEARCH RECENT/NEW/OLD and STATUS RECENT agree."""
    a = connect(args, args.port)
    b = connect(args, args.port2)
    for i in range(2):
        ok(a.append("INBOX", None, None, msg(f"recent-{i}")))
    st = ok(a.status("INBOX", "(RECENT)"))
    assert b"RECENT 2" in st[0], st
    # EXAMINE on B: both recent, nothing taken.
    ok(b.select("INBOX", readonly=True))
    assert b.untagged_responses.get("RECENT") == [b"2"], b.untagged_responses
    typ, data = b.fetch("1:*", "(FLAGS)")
    assert all(b"\\Recent" in d for d in data), data
    # SELECT on A takes both; SELECT on B then sees none.
    ok(a.select("INBOX"))
    assert a.untagged_responses.get("RECENT") == [b"2"], a.untagged_responses
    typ, data = a.fetch("1:*", "(FLAGS)")
    assert all(b"\\Recent" in d for d in data), data
    ok(b.select("INBOX"))
    assert b.untagged_responses.get("RECENT") == [b"0"], b.untagged_responses
    typ, data = b.fetch("1:*", "(FLAGS)")
    assert not any(b"\\Recent" in d for d in data), data
    assert recent_uids(a) == {1, 2} and recent_uids(b) == set()
    ok(a.store("1", "+FLAGS", "\\Seen"))
    assert uids_of(a, "NEW") == [2] and uids_of(a, "OLD") == [] and uids_of(b, "OLD") == [1, 2]
    st = ok(a.status("INBOX", "(RECENT)"))
    assert b"RECENT 0" in st[0], st
    # New mail while both are selected, on different nodes: after both have been told, each
    # message is recent in exactly one of them.
    c = connect(args, args.port)
    for i in range(5):
        ok(c.append("INBOX", None, None, msg(f"race-{i}")))
        uid = 3 + i
        done = []
        threads = [threading.Thread(target=lambda s=s: done.append(s.noop())) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in (a, b):
            deadline = time.monotonic() + 5
            while uid not in uids_of(s):
                assert time.monotonic() < deadline, f"UID {uid} never reached a session"
                ok(s.noop())
        ra, rb = recent_uids(a), recent_uids(b)
        assert (uid in ra) != (uid in rb), f"UID {uid}: recent in A {ra}, in B {rb}"
        print(f"round {i}: UID {uid} recent in {'A' if uid in ra else 'B'}")
    for s in (a, b, c):
        s.logout()


def scenario_state(args):
    """Prints the INBOX's UIDVALIDITY and UIDs (for the restart test to compare)."""
    m = connect(args)
    ok(m.select("INBOX"))
    uv = m.untagged_responses["UIDVALIDITY"][-1].decode()
    uids = ok(m.uid("SEARCH", None, "ALL"))[0].decode()
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [d[1].strip().decode() for d in data if isinstance(d, tuple)]
    print(f"STATE uidvalidity={uv} uids={uids} subjects={'|'.join(subjects)}")
    m.logout()


def scenario_append(args):
    """Appends N messages to INBOX through IMAP."""
    m = connect(args)
    for i in range(args.count):
        ok(m.append("INBOX", None, None, msg(f"restart-{i}")))
    m.logout()


def scenario_tls(args):
    """Plain-text LOGIN is refused (LOGINDISABLED) until STARTTLS; IMAPS works."""
    ctx = ssl.create_default_context(cafile=args.cafile)
    m = imaplib.IMAP4("localhost", args.port, timeout=30)
    caps = m.capabilities
    assert "LOGINDISABLED" in caps and "STARTTLS" in caps and "AUTH=PLAIN" not in caps, caps
    # imaplib refuses to send LOGIN itself when LOGINDISABLED is advertised; send it raw.
    typ, data = m._simple_command("LOGIN", args.user, args.password)
    assert typ == "NO" and b"PRIVACYREQUIRED" in data[0], (typ, data)
    typ, data = m._simple_command("AUTHENTICATE", "PLAIN", base64.b64encode(f"\0{args.user}\0{args.password}".encode()).decode())
    assert typ == "NO", (typ, data)
    ok(m.starttls(ssl_context=ctx))
    caps = m.capabilities
    assert "AUTH=PLAIN" in caps and "STARTTLS" not in caps and "LOGINDISABLED" not in caps, caps
    no(m._simple_command, "STARTTLS")  # BAD: TLS is already active
    ok(m.login(args.user, args.password))
    ok(m.select("INBOX"))
    m.logout()
    s = imaplib.IMAP4_SSL("localhost", args.imaps_port, ssl_context=ctx, timeout=30)
    assert "AUTH=PLAIN" in s.capabilities and "STARTTLS" not in s.capabilities, s.capabilities
    ok(s.login(args.user, args.password))
    ok(s.list('""', "*"))
    s.logout()
    # A command pipelined behind STARTTLS is not carried into TLS: the server closes.
    raw = socket.create_connection((HOST, args.port), timeout=10)
    raw.recv(4096)
    raw.sendall(b"a STARTTLS\r\nb NOOP\r\n")
    got = b""
    try:
        while True:
            d = raw.recv(4096)
            if not d:
                break
            got += d
    except socket.timeout:
        raise AssertionError(f"connection stayed open after a pipelined STARTTLS: {got!r}")
    assert b"b OK" not in got, got
    raw.close()


SCENARIOS = {
    "commands": scenario_commands,
    "authenticate": scenario_authenticate,
    "hostile": scenario_hostile,
    "search": scenario_search,
    "two-nodes": scenario_two_nodes,
    "recent": scenario_recent,
    "state": scenario_state,
    "append": scenario_append,
    "tls": scenario_tls,
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--port2", type=int)
    p.add_argument("--user", default="alice@example.test")
    p.add_argument("--password", default="pw-alice")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--imaps-port", type=int)
    p.add_argument("--cafile")
    args = p.parse_args()
    SCENARIOS[args.scenario](args)
    print(f"PASS {args.scenario}")


if __name__ == "__main__":
    sys.exit(main())
