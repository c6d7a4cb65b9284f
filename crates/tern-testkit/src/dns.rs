//! A tiny authoritative DNS server on loopback for tests.
//!
//! MX routing (`tern-queue`'s `mx` module) must be tested against real DNS packets, with
//! answers a test controls: MX sets, null MX, NXDOMAIN, NODATA, SERVFAIL, silence. This
//! server answers from a [`Zone`] built in code, on UDP and TCP (same port) of `127.0.0.1`
//! with a port the OS assigns, and stops when its [`DnsServer`] handle is dropped.
//!
//! Behaviour, as an authoritative server would:
//! - a name below a zone apex that has no records and nothing below it: `NXDOMAIN`, with the
//!   zone's SOA in the authority section (so resolvers can cache and trust it);
//! - a name that exists (or has names below it) without records of the asked type: `NOERROR`
//!   with an empty answer (NODATA) and the SOA in the authority section;
//! - a name outside every zone apex: `REFUSED` (not authoritative for it);
//! - answers carry AA, echo the id and the question (case preserved);
//! - a UDP answer larger than the client's payload size (512 bytes without EDNS) is sent
//!   truncated (TC), and the full answer is served over TCP, like a real server;
//! - malformed packets and responses are ignored.
//!
//! Zone apexes: every owner name's last two labels (`mx1.example.net` → `example.net`) plus
//! whatever [`Zone::apex`] declares.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// TTL of every record the zone serves.
const TTL: u32 = 300;
/// The SOA minimum: how long resolvers may cache NXDOMAIN/NODATA (RFC 2308).
const NEGATIVE_TTL: u32 = 60;

/// A static zone (in fact any number of zones: see the module docs on apexes), built in code.
///
/// Invalid names do not panic the builder: the first one is remembered and
/// [`DnsServer::start`] fails with `InvalidInput`.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    records: Vec<Record>,
    apexes: Vec<Name>,
    servfail: Vec<Name>,
    unresponsive: Vec<Name>,
    error: Option<String>,
}

impl Zone {
    /// An empty zone: every query is refused until names are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name MX preference exchange`: the routing data under test.
    pub fn mx(mut self, name: &str, preference: u16, exchange: &str) -> Self {
        if let (Some(owner), Some(exchange)) = (self.name(name), self.name(exchange)) {
            self.add(owner, RData::MX(MX::new(preference, exchange)));
        }
        self
    }

    /// Adds the null MX of RFC 7505 (`name MX 0 .`): "this domain accepts no mail".
    pub fn null_mx(mut self, name: &str) -> Self {
        if let Some(owner) = self.name(name) {
            self.add(owner, RData::MX(MX::new(0, Name::root())));
        }
        self
    }

    /// Adds `name A addr`: an IPv4 address of an MX host (or of a domain without MX).
    pub fn a(mut self, name: &str, addr: Ipv4Addr) -> Self {
        if let Some(owner) = self.name(name) {
            self.add(owner, RData::A(A(addr)));
        }
        self
    }

    /// Adds `name AAAA addr`: an IPv6 address of an MX host (or of a domain without MX).
    pub fn aaaa(mut self, name: &str, addr: Ipv6Addr) -> Self {
        if let Some(owner) = self.name(name) {
            self.add(owner, RData::AAAA(AAAA(addr)));
        }
        self
    }

    /// Adds `name TXT text`: SPF, DKIM and DMARC records. A text longer than 255 octets is
    /// cut into character-strings of 255, as zone files do (readers join them again).
    pub fn txt(mut self, name: &str, text: &str) -> Self {
        if let Some(owner) = self.name(name) {
            let strings: Vec<String> = text
                .as_bytes()
                .chunks(255)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            self.add(owner, RData::TXT(TXT::new(strings)));
        }
        self
    }

    /// Every query for `name` or a name below it gets SERVFAIL: a broken authoritative
    /// server, which a resolver must treat as temporary.
    pub fn servfail(mut self, name: &str) -> Self {
        if let Some(name) = self.name(name) {
            self.servfail.push(name);
        }
        self
    }

    /// Queries for `name` or a name below it are never answered: a lame or firewalled
    /// server, so tests can exercise timeouts.
    pub fn unresponsive(mut self, name: &str) -> Self {
        if let Some(name) = self.name(name) {
            self.unresponsive.push(name);
        }
        self
    }

    /// Declares a zone apex beyond the inferred ones (e.g. `example` so that
    /// `nosuch.example` is NXDOMAIN rather than REFUSED).
    pub fn apex(mut self, name: &str) -> Self {
        if let Some(name) = self.name(name) {
            self.apexes.push(name);
        }
        self
    }

    fn name(&mut self, text: &str) -> Option<Name> {
        match Name::from_str_relaxed(text) {
            Ok(name) => Some(normalize(&name)),
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(format!("invalid DNS name {text:?} in the zone: {e}"));
                }
                None
            }
        }
    }

    fn add(&mut self, owner: Name, rdata: RData) {
        let apex = if owner.num_labels() > 2 {
            normalize(&owner.trim_to(2))
        } else {
            owner.clone()
        };
        if !self.apexes.contains(&apex) {
            self.apexes.push(apex);
        }
        self.records.push(Record::from_rdata(owner, TTL, rdata));
    }

    /// The closest enclosing apex of `name`, if the server is authoritative for it.
    fn apex_of(&self, name: &Name) -> Option<&Name> {
        self.apexes
            .iter()
            .filter(|apex| apex.zone_of(name))
            .max_by_key(|apex| apex.num_labels())
    }

    fn soa(apex: &Name) -> Record {
        let label = |l: &str| {
            Name::from_ascii(l)
                .and_then(|n| n.append_domain(apex))
                .unwrap_or_else(|_| apex.clone())
        };
        let soa = SOA::new(
            label("ns"),
            label("hostmaster"),
            1,
            3600,
            600,
            86400,
            NEGATIVE_TTL,
        );
        Record::from_rdata(apex.clone(), TTL, RData::SOA(soa))
    }

    /// The response to `request`, or `None` when the server stays silent.
    fn answer(&self, request: &Message) -> Option<Message> {
        let mut response = Message::new();
        response.set_header(Header::response_from_request(request.header()));
        response.add_queries(request.queries().iter().cloned());
        if request.op_code() != OpCode::Query {
            response.set_response_code(ResponseCode::NotImp);
            return Some(response);
        }
        let [query] = request.queries() else {
            response.set_response_code(ResponseCode::FormErr);
            return Some(response);
        };
        let qname = normalize(query.name());
        if self.unresponsive.iter().any(|n| n.zone_of(&qname)) {
            return None;
        }
        if self.servfail.iter().any(|n| n.zone_of(&qname)) {
            response.set_response_code(ResponseCode::ServFail);
            return Some(response);
        }
        let apex = match self.apex_of(&qname) {
            Some(apex) if query.query_class() == DNSClass::IN => apex,
            _ => {
                response.set_response_code(ResponseCode::Refused);
                return Some(response);
            }
        };
        response.set_authoritative(true);
        let exists = qname == *apex || self.records.iter().any(|r| qname.zone_of(r.name()));
        if !exists {
            response.set_response_code(ResponseCode::NXDomain);
            response.add_name_server(Self::soa(apex));
            return Some(response);
        }
        let qtype = query.query_type();
        let mut answers: Vec<Record> = self
            .records
            .iter()
            .filter(|r| {
                *r.name() == qname && (qtype == RecordType::ANY || r.record_type() == qtype)
            })
            .cloned()
            .collect();
        if qname == *apex && matches!(qtype, RecordType::SOA | RecordType::ANY) {
            answers.push(Self::soa(apex));
        }
        if answers.is_empty() {
            response.add_name_server(Self::soa(apex));
        }
        for mut record in answers {
            // The owner as the client spelled it (DNS 0x20 case randomization).
            record.set_name(query.name().clone());
            response.add_answer(record);
        }
        Some(response)
    }
}

/// Lower case and fully qualified: the one spelling the zone compares.
fn normalize(name: &Name) -> Name {
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    name
}

/// Decodes a query; `None` for garbage and for responses (never answer those: loops).
fn parse(bytes: &[u8]) -> Option<Message> {
    Message::from_vec(bytes)
        .ok()
        .filter(|m| m.message_type() == MessageType::Query)
}

/// A running server; dropping it stops it and closes its sockets.
#[derive(Debug)]
pub struct DnsServer {
    /// Where it listens (UDP and TCP): `127.0.0.1:port`, to give to a resolver.
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    /// The UDP and TCP tasks (and, inside the TCP one, its connections); dropping the set
    /// aborts them all.
    _tasks: JoinSet<()>,
}

impl DnsServer {
    /// Binds UDP and TCP on one OS-assigned port of 127.0.0.1 and starts answering from
    /// `zone`. Fails with `InvalidInput` if the zone had an invalid name.
    pub async fn start(zone: Zone) -> io::Result<DnsServer> {
        if let Some(error) = &zone.error {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, error.clone()));
        }
        let (udp, tcp) = bind_pair().await?;
        let addr = udp.local_addr()?;
        let zone = Arc::new(zone);
        let queries = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(udp, zone.clone(), queries.clone()));
        tasks.spawn(serve_tcp(tcp, zone, queries.clone()));
        Ok(DnsServer {
            addr,
            queries,
            _tasks: tasks,
        })
    }

    /// How many well-formed queries arrived (UDP and TCP, answered or not): lets a test
    /// check that a lookup really went to the network, or was cached, or was never made.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// A UDP socket and a TCP listener on the same loopback port (retrying if the TCP side of
/// the port the OS gave the UDP socket happens to be taken).
async fn bind_pair() -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port pair")))
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Zone>, queries: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(_) => {
                // E.g. an ICMP error surfacing on some platforms: keep serving, gently.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(request) = parse(&buf[..len]) else {
            continue;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        let Some(response) = zone.answer(&request) else {
            continue;
        };
        let Ok(mut bytes) = response.to_vec() else {
            continue;
        };
        if bytes.len() > usize::from(request.max_payload()) {
            match response.truncate().to_vec() {
                Ok(truncated) => bytes = truncated,
                Err(_) => continue,
            }
        }
        let _ = socket.send_to(&bytes, peer).await;
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Zone>, queries: Arc<AtomicUsize>) {
    // Owned here so that aborting this task also drops (aborts) every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_tcp_conn(stream, zone.clone(), queries.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// RFC 1035 §4.2.2 / RFC 7766: two-byte length-prefixed messages, several per connection.
async fn serve_tcp_conn(mut stream: TcpStream, zone: Arc<Zone>, queries: Arc<AtomicUsize>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut buf = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Some(request) = parse(&buf) else {
            return;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        let Some(response) = zone.answer(&request) else {
            continue;
        };
        let Ok(bytes) = response.to_vec() else {
            continue;
        };
        let Ok(len) = u16::try_from(bytes.len()) else {
            continue;
        };
        if stream.write_all(&len.to_be_bytes()).await.is_err()
            || stream.write_all(&bytes).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn zone() -> Zone {
        Zone::new()
            .mx("example.net", 10, "mx1.example.net")
            .mx("example.net", 20, "mx2.example.net")
            .a("mx1.example.net", Ipv4Addr::new(192, 0, 2, 1))
            .aaaa("mx1.example.net", "2001:db8::1".parse().unwrap())
            .null_mx("nomail.example")
            .servfail("broken.example")
            .unresponsive("silent.example")
    }

    fn query(id: u16, name: &str, qtype: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m
    }

    async fn ask(server: &DnsServer, request: &Message) -> Option<Message> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        socket
            .send_to(&request.to_vec().unwrap(), server.addr)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65535];
        let got = tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf));
        let (len, _) = got.await.ok()?.unwrap();
        Some(Message::from_vec(&buf[..len]).unwrap())
    }

    async fn ask_tcp(server: &DnsServer, request: &Message) -> Message {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let bytes = request.to_vec().unwrap();
        stream.write_u16(bytes.len() as u16).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    }

    #[tokio::test]
    async fn round_trips_an_mx_query() {
        let server = DnsServer::start(zone()).await.unwrap();
        assert!(server.addr.ip().is_loopback());
        let request = query(0x1234, "Example.NET.", RecordType::MX);
        let response = ask(&server, &request).await.expect("an answer");
        assert_eq!(response.id(), 0x1234);
        assert_eq!(response.message_type(), MessageType::Response);
        assert!(response.authoritative());
        assert_eq!(response.response_code(), ResponseCode::NoError);
        assert_eq!(response.queries(), request.queries());
        assert!(response.queries()[0]
            .name()
            .eq_case(request.queries()[0].name()));
        let mut mx: Vec<(u16, String)> = response
            .answers()
            .iter()
            .filter_map(|r| r.data().as_mx())
            .map(|mx| (mx.preference(), mx.exchange().to_ascii()))
            .collect();
        mx.sort();
        assert_eq!(
            mx,
            vec![
                (10, "mx1.example.net.".to_string()),
                (20, "mx2.example.net.".to_string())
            ]
        );
        assert_eq!(server.queries(), 1);
    }

    #[tokio::test]
    async fn serves_long_txt_records_in_pieces() {
        let long = "v=DKIM1; k=rsa; p=".to_string() + &"A".repeat(400);
        let zone = Zone::new()
            .txt("example.org", "v=spf1 ip4:127.0.0.1 -all")
            .txt("sel._domainkey.example.org", &long);
        let server = DnsServer::start(zone).await.unwrap();
        let txt = |r: &Message| -> Vec<Vec<String>> {
            r.answers()
                .iter()
                .filter_map(|r| r.data().as_txt())
                .map(|t| {
                    t.iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect()
                })
                .collect()
        };
        let r = ask_tcp(&server, &query(1, "example.org.", RecordType::TXT)).await;
        assert_eq!(txt(&r), vec![vec!["v=spf1 ip4:127.0.0.1 -all".to_string()]]);
        let r = ask_tcp(
            &server,
            &query(2, "sel._domainkey.example.org.", RecordType::TXT),
        )
        .await;
        let pieces = &txt(&r)[0];
        assert_eq!(pieces.len(), 2, "cut at 255 octets");
        assert_eq!(pieces.concat(), long);
    }

    #[tokio::test]
    async fn answers_nxdomain_nodata_servfail_refused_and_silence() {
        let server = DnsServer::start(zone()).await.unwrap();

        let r = ask(&server, &query(1, "nosuch.example.net.", RecordType::MX))
            .await
            .unwrap();
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        assert!(r.authoritative());
        assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);

        // mx1 exists (A, AAAA) but has no MX: NODATA.
        let r = ask(&server, &query(2, "mx1.example.net.", RecordType::MX))
            .await
            .unwrap();
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.answers().is_empty());
        assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);

        let r = ask(&server, &query(3, "mx1.example.net.", RecordType::AAAA))
            .await
            .unwrap();
        assert_eq!(r.answers().len(), 1);

        let r = ask(&server, &query(4, "nomail.example.", RecordType::MX))
            .await
            .unwrap();
        assert!(r.answers()[0].data().as_mx().unwrap().exchange().is_root());

        let r = ask(&server, &query(5, "x.broken.example.", RecordType::A))
            .await
            .unwrap();
        assert_eq!(r.response_code(), ResponseCode::ServFail);

        let r = ask(&server, &query(6, "elsewhere.org.", RecordType::A))
            .await
            .unwrap();
        assert_eq!(r.response_code(), ResponseCode::Refused);

        assert!(ask(&server, &query(7, "silent.example.", RecordType::MX))
            .await
            .is_none());
        assert_eq!(server.queries(), 7);
    }

    #[tokio::test]
    async fn ignores_garbage_and_keeps_serving() {
        let server = DnsServer::start(zone()).await.unwrap();
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        socket
            .send_to(b"\x01\x02garbage", server.addr)
            .await
            .unwrap();
        socket.send_to(&[], server.addr).await.unwrap();
        // A response (QR set) is not answered either.
        let mut response = query(9, "example.net.", RecordType::MX);
        response.set_message_type(MessageType::Response);
        socket
            .send_to(&response.to_vec().unwrap(), server.addr)
            .await
            .unwrap();
        let r = ask(&server, &query(10, "example.net.", RecordType::MX))
            .await
            .unwrap();
        assert_eq!(r.id(), 10);
        assert_eq!(server.queries(), 1);
    }

    #[tokio::test]
    async fn truncates_large_udp_answers_and_serves_them_over_tcp() {
        let mut zone = Zone::new();
        for i in 0..40 {
            zone = zone.mx("big.example", i, &format!("mx{i}.big.example"));
        }
        let server = DnsServer::start(zone).await.unwrap();
        let request = query(11, "big.example.", RecordType::MX);
        let udp = ask(&server, &request).await.unwrap();
        assert!(udp.truncated());
        let tcp = ask_tcp(&server, &request).await;
        assert!(!tcp.truncated());
        assert_eq!(tcp.id(), 11);
        assert_eq!(tcp.answers().len(), 40);
    }

    #[tokio::test]
    async fn rejects_an_invalid_zone_and_stops_on_drop() {
        let bad = Zone::new().a("bad..name", Ipv4Addr::LOCALHOST);
        let err = DnsServer::start(bad).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let server = DnsServer::start(zone()).await.unwrap();
        let addr = server.addr;
        drop(server);
        // The port is free again once the tasks are gone.
        let mut rebound = false;
        for _ in 0..50 {
            if UdpSocket::bind(addr).await.is_ok() {
                rebound = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(rebound, "the UDP port was not released");
    }
}
