#!/usr/bin/env python3
"""Drives a Tern POP3 listener with Python's poplib, a client Tern did not write.

Called by services/tern-access/tests/pop3.rs with a scenario name; exits 0 and prints
"PASS <scenario>" when every expectation held, otherwise raises (nonzero exit, traceback).

Usage: pop3_poplib.py SCENARIO --port P [--user U --password PW] [--expect N] ...
"""

import argparse
import base64
import poplib
import socket
import ssl
import sys
import time

HOST = "127.0.0.1"


def expect_error(fn, *args, code=None):
    """Calls fn(*args), which must fail with -ERR (and carry [code] when given)."""
    try:
        resp = fn(*args)
    except poplib.error_proto as e:
        text = e.args[0]
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        assert text.startswith("-ERR"), text
        if code:
            assert f"[{code}]" in text, f"expected [{code}] in {text!r}"
        return text
    raise AssertionError(f"{fn.__name__}{args} succeeded: {resp!r}")


def login(args, port=None):
    p = poplib.POP3(HOST, port or args.port, timeout=30)
    p.user(args.user)
    p.pass_(args.password)
    return p


def retr_bytes(p, n):
    """RETR n as the octets the server sent (poplib strips CRLF and dot-stuffing)."""
    resp, lines, octets = p.retr(n)
    data = b"".join(line + b"\r\n" for line in lines)
    return resp, data, octets


def scenario_commands(args):
    """Every command in every state, including refusals in the wrong state."""
    p = poplib.POP3(HOST, args.port, timeout=30)
    assert p.getwelcome().startswith(b"+OK"), p.getwelcome()
    caps = p.capa()
    for cap in ["TOP", "UIDL", "RESP-CODES", "USER", "SASL", "PIPELINING"]:
        assert cap in caps, (cap, caps)
    assert caps["SASL"] == ["PLAIN", "LOGIN"], caps
    assert "STLS" not in caps, caps  # no certificate configured on this listener

    # AUTHORIZATION: transaction commands are refused.
    for cmd in ["STAT", "LIST", "RETR 1", "DELE 1", "RSET", "UIDL", "TOP 1 0", "NOOP"]:
        expect_error(p._shortcmd, cmd)
    expect_error(p._shortcmd, "PASS whatever")  # PASS without USER
    expect_error(p._shortcmd, "APOP alice@example.test 0123456789abcdef0123456789abcdef")
    expect_error(p._shortcmd, "XYZZY")
    expect_error(p._shortcmd, "STLS")  # not offered here
    expect_error(p._shortcmd, "AUTH CRAM-MD5")
    # AUTH with no argument lists the mechanisms.
    resp, mechs, _ = p._longcmd("AUTH")
    assert mechs == [b"PLAIN", b"LOGIN"], mechs

    # A wrong password: -ERR [AUTH], then the session goes on.
    p.user(args.user)
    t0 = time.monotonic()
    expect_error(p.pass_, "wrong-password", code="AUTH")
    # AUTH PLAIN with a wrong password, then the right one (initial response form).
    bad = base64.b64encode(f"\0{args.user}\0nope".encode()).decode()
    expect_error(p._shortcmd, f"AUTH PLAIN {bad}", code="AUTH")
    good = base64.b64encode(f"\0{args.user}\0{args.password}".encode()).decode()
    resp = p._shortcmd(f"AUTH PLAIN {good}")
    assert resp.startswith(b"+OK"), resp

    # TRANSACTION.
    count, octets = p.stat()
    assert count == args.expect, (count, args.expect)
    resp, listing, _ = p.list()
    sizes = {}
    for line in listing:
        n, size = line.split()
        sizes[int(n)] = int(size)
    assert sorted(sizes) == list(range(1, count + 1)), listing
    assert sum(sizes.values()) == octets, (sizes, octets)
    one = p.list(1)
    assert one.split()[1:] == [b"1", str(sizes[1]).encode()], one
    expect_error(p.list, count + 1)
    expect_error(p._shortcmd, "LIST 0")
    expect_error(p._shortcmd, "LIST x")

    resp, uidls, _ = p.uidl()
    uids = {}
    for line in uidls:
        n, uid = line.split()
        uids[int(n)] = uid
    assert len(set(uids.values())) == count, uidls
    assert p.uidl(1).split()[2] == uids[1]
    for uid in uids.values():
        assert 1 <= len(uid) <= 70 and all(0x21 <= c <= 0x7E for c in uid), uid

    # Sizes: what RETR sends is exactly what LIST announced, for every message.
    for n in range(1, count + 1):
        resp, data, _ = retr_bytes(p, n)
        assert len(data) == sizes[n], (n, len(data), sizes[n], data[:200])
    # TOP: headers, blank line, then at most that many body lines.
    resp, top0, _ = p.top(1, 0)
    assert b"" in top0, top0
    head = top0[: top0.index(b"")]
    resp, full, _ = p.retr(1)
    assert full[: len(head)] == head
    resp, top1, _ = p.top(1, 1)
    assert len(top1) <= len(top0) + 1
    expect_error(p._shortcmd, "TOP 1")  # missing line count
    expect_error(p._shortcmd, f"RETR {count + 1}")

    # DELE marks; the message is then gone from LIST, STAT and RETR; RSET unmarks.
    assert p.dele(1).startswith(b"+OK")
    expect_error(p.dele, 1)
    expect_error(p.retr, 1)
    expect_error(p.list, 1)
    c2, o2 = p.stat()
    assert (c2, o2) == (count - 1, octets - sizes[1]), (c2, o2)
    resp, listing2, _ = p.list()
    assert len(listing2) == count - 1
    assert p.rset().startswith(b"+OK")
    assert p.stat() == (count, octets)
    assert p.noop().startswith(b"+OK")
    # Authentication commands are refused once authenticated.
    expect_error(p._shortcmd, f"USER {args.user}")
    expect_error(p._shortcmd, "PASS x")
    expect_error(p._shortcmd, "STLS")
    expect_error(p._shortcmd, "AUTH PLAIN")
    # CAPA works in TRANSACTION too.
    assert "UIDL" in p.capa()
    # QUIT with nothing marked deletes nothing.
    resp = p.quit()
    assert resp.startswith(b"+OK"), resp

    # QUIT in AUTHORIZATION is fine too.
    p = poplib.POP3(HOST, args.port, timeout=30)
    assert p.quit().startswith(b"+OK")

    # UIDLs are stable across sessions, and RETR marked messages \Seen (checked by the caller).
    p = login(args)
    resp, again, _ = p.uidl()
    assert again == uidls, (again, uidls)
    p.quit()


def scenario_drop_after_dele(args):
    """DELE everything, then drop the connection without QUIT."""
    p = login(args)
    count, _ = p.stat()
    assert count == args.expect, (count, args.expect)
    for n in range(1, count + 1):
        p.dele(n)
    p.sock.shutdown(socket.SHUT_RDWR)
    p.sock.close()


def scenario_quit_deletes(args):
    """DELE the first --delete messages and QUIT: +OK only after they are gone."""
    p = login(args)
    count, _ = p.stat()
    assert count == args.expect, (count, args.expect)
    for n in range(1, args.delete + 1):
        p.dele(n)
    resp = p.quit()
    assert resp.startswith(b"+OK"), resp


def scenario_count(args):
    """Logs in and checks STAT's message count."""
    p = login(args)
    count, _ = p.stat()
    p.quit()
    assert count == args.expect, (count, args.expect)


def scenario_in_use(args):
    """A second session for the same user gets -ERR [IN-USE]; after the first QUITs, it works."""
    first = login(args)
    second = poplib.POP3(HOST, args.port2 or args.port, timeout=30)
    second.user(args.user)
    expect_error(second.pass_, args.password, code="IN-USE")
    # A different user is not blocked.
    if args.other_user:
        other = poplib.POP3(HOST, args.port, timeout=30)
        other.user(args.other_user)
        other.pass_(args.other_password)
        other.quit()
    first.quit()
    second.user(args.user)
    second.pass_(args.password)
    second.quit()


def scenario_hold(args):
    """Logs in and then waits to be killed (holds the maildrop lock)."""
    p = login(args)
    print("HOLDING", flush=True)
    time.sleep(600)
    p.quit()


def scenario_tls(args):
    """No plain-text login before STLS; STLS then login; POP3S (implicit TLS) login."""
    ctx = ssl.create_default_context(cafile=args.cafile)
    ctx.check_hostname = False
    p = poplib.POP3(HOST, args.port, timeout=30)
    caps = p.capa()
    assert "STLS" in caps, caps
    assert "USER" not in caps and "SASL" not in caps, caps
    expect_error(p.user, args.user, code="AUTH")
    good = base64.b64encode(f"\0{args.user}\0{args.password}".encode()).decode()
    expect_error(p._shortcmd, f"AUTH PLAIN {good}", code="AUTH")
    p.stls(context=ctx)
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps, caps
    p.user(args.user)
    p.pass_(args.password)
    p.stat()
    p.quit()
    s = poplib.POP3_SSL(HOST, args.pop3s_port, timeout=30, context=ctx)
    assert "STLS" not in s.capa()
    s.user(args.user)
    s.pass_(args.password)
    s.stat()
    s.quit()


def raw(port):
    s = socket.create_connection((HOST, port), timeout=30)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    return s, f


def scenario_hostile(args):
    """Over-long lines, binary junk, NUL bytes, and too many errors."""
    s, f = raw(args.port)
    s.sendall(b"USER " + b"a" * 100_000 + b"\r\n")
    line = f.readline()
    assert line.startswith(b"-ERR") and b"too long" in line, line
    s.sendall(b"\x00\xff\xfe\r\n")
    assert f.readline().startswith(b"-ERR")
    s.sendall(b"NOOP\r\n")  # still in AUTHORIZATION: refused, connection alive
    assert f.readline().startswith(b"-ERR")
    s.sendall(b"CAPA\r\n")
    assert f.readline().startswith(b"+OK")
    while f.readline() != b".\r\n":
        pass
    # Errors past the bound close the connection.
    s.sendall(b"BOGUS\r\n" * 50)
    lines = []
    while True:
        line = f.readline()
        if not line:
            break
        lines.append(line)
    assert len(lines) < 50, len(lines)
    assert b"too many errors" in lines[-1], lines[-3:]
    s.close()
    # Pipelined commands (RFC 2449 PIPELINING) are all answered, in order.
    s, f = raw(args.port)
    s.sendall(f"USER {args.user}\r\nPASS {args.password}\r\nSTAT\r\nNOOP\r\nQUIT\r\n".encode())
    replies = [f.readline() for _ in range(5)]
    assert all(r.startswith(b"+OK") for r in replies), replies
    s.close()


def scenario_idle(args):
    """A session idle past the timeout is closed by the server."""
    s, f = raw(args.port)
    t0 = time.monotonic()
    line = f.readline()
    assert line.startswith(b"-ERR") and b"idle" in line, line
    assert f.readline() == b""
    assert time.monotonic() - t0 < 30


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--port2", type=int)
    ap.add_argument("--pop3s-port", type=int)
    ap.add_argument("--cafile")
    ap.add_argument("--user", default="alice@example.test")
    ap.add_argument("--password", default="pw-alice")
    ap.add_argument("--other-user")
    ap.add_argument("--other-password")
    ap.add_argument("--expect", type=int, default=0)
    ap.add_argument("--delete", type=int, default=0)
    args = ap.parse_args()
    globals()["scenario_" + args.scenario.replace("-", "_")](args)
    print("PASS", args.scenario)


if __name__ == "__main__":
    sys.exit(main())
