//! The in-memory pair: a client session and a server session wired through byte buffers with a
//! simulated clock. Every protocol path, on both sides, with what each side reports; no
//! sockets, no io_uring.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use super::*;
use crate::{CloseCode, Config, DataKind, Error, Role};

/// Masking keys for tests (a real driver draws them from the operating system).
pub(super) struct TestKeys(pub(super) u64);

impl MaskKeys for TestKeys {
    fn next_key(&mut self) -> [u8; 4] {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 as u32).to_le_bytes()
    }
}

/// What one side handed out, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Got {
    Message(bool, Vec<u8>),
    Chunk(bool, Vec<u8>, bool),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Error(Error),
}

/// One side: its session, the bytes it received and did not consume, what it got.
pub(super) struct Side {
    pub(super) s: Session,
    input: Vec<u8>,
    scratch: Vec<u8>,
    pub(super) got: Vec<Got>,
    /// Its transport is closed (it stops reading and writing).
    pub(super) gone: bool,
    /// A protocol error failed the connection: it reads no more (as a driver would).
    failed: bool,
    #[cfg(feature = "deflate")]
    pub(super) pmd: Option<(crate::deflate::PerMessageDeflate, crate::deflate::Pool)>,
}

impl Side {
    fn new(role: Role, config: Config, timeouts: Timeouts) -> Side {
        let mut s = Session::new(role, config, timeouts, Duration::ZERO);
        if role == Role::Client {
            s.set_keys(Box::new(TestKeys(0x9e37_79b9_7f4a_7c15)));
        }
        Side {
            s,
            input: Vec::new(),
            scratch: Vec::new(),
            got: Vec::new(),
            gone: false,
            failed: false,
            #[cfg(feature = "deflate")]
            pmd: None,
        }
    }

    /// Sends a whole message (compressed when the pair negotiated it); text must be UTF-8.
    pub(super) fn send(&mut self, kind: DataKind, payload: &[u8]) -> Result<(), SendError> {
        let msg = match kind {
            DataKind::Text => Message::Text(core::str::from_utf8(payload).expect("test text")),
            DataKind::Binary => Message::Binary(payload),
        };
        #[cfg(feature = "deflate")]
        if let Some((state, pool)) = self.pmd.as_mut() {
            let mut d = Deflating { state, pool };
            return self.s.send(msg, Some(&mut d));
        }
        self.s.send(msg, None)
    }

    /// Receives everything in `input` that can be decoded.
    fn receive(&mut self, now: Duration) {
        if self.gone || self.failed {
            self.input.clear();
            return;
        }
        let mut at = 0;
        loop {
            #[cfg(feature = "deflate")]
            let mut engines = self
                .pmd
                .as_mut()
                .map(|(state, pool)| Deflating { state, pool });
            #[cfg(feature = "deflate")]
            let deflate = engines.as_mut().map(|d| d as &mut dyn Deflate);
            #[cfg(not(feature = "deflate"))]
            let deflate = None;
            let got = match self
                .s
                .receive(&mut self.input[at..], &mut self.scratch, deflate, now)
            {
                Ok(g) => g,
                Err(e) => {
                    self.got.push(Got::Error(e));
                    self.failed = true;
                    self.input.clear();
                    return;
                }
            };
            if got.needs_more() {
                break;
            }
            at += got.consumed;
            if let Some(ev) = got.event {
                self.got.push(match ev {
                    Incoming::Message(m) => Got::Message(m.is_text(), m.as_bytes().to_vec()),
                    Incoming::Assembled(m) => Got::Message(m.is_text(), m.into_bytes()),
                    Incoming::Chunk(c) => Got::Chunk(c.text, c.data.to_vec(), c.last),
                    Incoming::Ping(p) => Got::Ping(p.to_vec()),
                    Incoming::Pong(p) => Got::Pong(p.to_vec()),
                    Incoming::Close(c) => Got::Close(c.code.map(u16::from), c.reason.into()),
                });
            }
        }
        self.input.drain(..at);
    }

    /// The messages it got, chunks joined.
    pub(super) fn messages(&self) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut cur: Option<(bool, Vec<u8>)> = None;
        for g in &self.got {
            match g {
                Got::Message(t, b) => out.push((*t, b.clone())),
                Got::Chunk(t, b, last) => {
                    cur.get_or_insert_with(|| (*t, Vec::new()))
                        .1
                        .extend_from_slice(b);
                    if *last {
                        out.extend(cur.take());
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// The pair and its clock.
pub(super) struct Pair {
    pub(super) client: Side,
    pub(super) server: Side,
    pub(super) now: Duration,
    /// Bytes moved per step in each direction (`usize::MAX`: all), to cut frames anywhere.
    pub(super) mtu: usize,
}

impl Pair {
    pub(super) fn new(config: Config, timeouts: Timeouts) -> Pair {
        Pair {
            client: Side::new(Role::Client, config, timeouts),
            server: Side::new(Role::Server, config, timeouts),
            now: Duration::ZERO,
            mtu: usize::MAX,
        }
    }

    /// Moves bytes both ways and lets both sides receive, until nothing moves.
    pub(super) fn pump(&mut self) {
        for _ in 0..10_000 {
            self.server.receive(self.now);
            self.client.receive(self.now);
            let a = Self::carry(&mut self.client, &mut self.server, self.mtu);
            let b = Self::carry(&mut self.server, &mut self.client, self.mtu);
            if !a && !b {
                return;
            }
        }
        panic!("the pair never settled");
    }

    /// Moves the client's output to the server without letting either receive.
    fn carry_to_server(&mut self) {
        Self::carry(&mut self.client, &mut self.server, usize::MAX);
    }

    fn carry(from: &mut Side, to: &mut Side, mtu: usize) -> bool {
        if from.gone {
            return false;
        }
        let out = from.s.outgoing();
        out.seal();
        let mut moved = 0;
        for c in out.chunks() {
            let n = c.len().min(mtu - moved);
            to.input.extend_from_slice(&c[..n]);
            moved += n;
            if moved == mtu {
                break;
            }
        }
        out.advance(moved);
        moved > 0
    }

    /// Lets `d` pass on the clock, acting on every deadline on the way (as a driver's timer
    /// would), and pumps.
    pub(super) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [&self.client, &self.server]
                .iter()
                .filter(|s| !s.gone)
                .filter_map(|s| s.s.poll_timeout(self.now))
                .min();
            match next {
                Some(t) if self.now + t <= end => self.now += t,
                _ => break,
            }
            for side in [&mut self.client, &mut self.server] {
                if !side.gone && side.s.on_timeout(self.now) == Some(Due::CloseTimeout) {
                    side.gone = true;
                }
            }
            self.pump();
        }
        self.now = end;
        self.pump();
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ended(side: &Side) -> (Option<u16>, &str, Initiator, bool) {
    let e = side.s.ended().expect("ended");
    (e.code.map(u16::from), &e.reason, e.by, e.clean)
}

#[test]
fn messages_both_ways_whole_and_in_fragments_with_frames_cut_anywhere() {
    for mtu in [usize::MAX, 1, 3, 7, 64] {
        let mut p = Pair::new(Config::default(), Timeouts::default());
        p.mtu = mtu;
        p.client.send(DataKind::Text, "héllo".as_bytes()).unwrap();
        p.server.send(DataKind::Binary, &[1, 2, 3]).unwrap();
        let f = |fin| Fragment {
            kind: DataKind::Text,
            fin,
            compressed: false,
        };
        p.client.s.fragment(f(false), "ab".as_bytes()).unwrap();
        // Whole messages wait for the streamed one; control frames may go between fragments.
        assert_eq!(
            p.client.send(DataKind::Text, b"x"),
            Err(SendError::MessageInProgress)
        );
        p.client.s.ping(b"between").unwrap();
        p.client.s.fragment(f(true), "cé".as_bytes()).unwrap();
        p.client.send(DataKind::Binary, &[]).unwrap();
        p.pump();
        assert_eq!(
            p.server.messages(),
            [
                (true, "héllo".as_bytes().to_vec()),
                (true, "abcé".as_bytes().to_vec()),
                (false, vec![]),
            ],
            "mtu {mtu}"
        );
        assert!(p.server.got.contains(&Got::Ping(b"between".to_vec())));
        // The ping was answered by the server's session itself.
        assert!(p.client.got.contains(&Got::Pong(b"between".to_vec())));
        assert_eq!(p.client.messages(), [(false, vec![1, 2, 3])]);
    }
}

#[test]
fn streaming_receiver_gets_chunks() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    p.mtu = 5;
    p.server.s.receiver().set_streaming(true);
    p.client.send(DataKind::Binary, &[7; 40]).unwrap();
    p.pump();
    assert_eq!(p.server.messages(), [(false, vec![7; 40])]);
    assert!(p.server.got.len() > 1, "{:?}", p.server.got);
}

#[test]
fn client_close_reported_on_both_sides() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    assert!(
        p.client
            .s
            .close(Some(CloseCode::NORMAL), "bye", p.now)
            .unwrap()
    );
    // Nothing may follow our close frame.
    assert_eq!(
        p.client.send(DataKind::Text, b"late"),
        Err(SendError::Closed)
    );
    // Data the server sends meanwhile is dropped by the client after its close.
    p.server.send(DataKind::Text, b"crossing").unwrap();
    p.pump();
    assert_eq!(
        p.server.got,
        [Got::Close(Some(1000), "bye".into())],
        "the server's session answered"
    );
    assert_eq!(p.client.got, [Got::Close(Some(1000), String::new())]);
    assert_eq!(
        ended(&p.server),
        (Some(1000), "bye", Initiator::Remote, true)
    );
    assert_eq!(
        ended(&p.client),
        (Some(1000), "bye", Initiator::Local, true)
    );
    assert!(p.client.messages().is_empty());
}

#[test]
fn a_close_with_an_unsendable_code_is_an_error_not_a_frame() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    for code in [1005, 1006, 1015, 999, 5000] {
        assert_eq!(
            p.server.s.close(Some(CloseCode(code)), "", p.now),
            Err(SendError::Encode(crate::EncodeError::InvalidCloseCode(
                code
            )))
        );
    }
    let long = "r".repeat(124);
    assert!(
        p.server
            .s
            .close(Some(CloseCode::NORMAL), &long, p.now)
            .is_err()
    );
    assert!(p.server.s.outgoing().is_empty());
    assert!(!p.server.s.sender().close_sent());
}

#[test]
fn a_limit_closes_with_1009_and_both_sides_say_so() {
    let mut p = Pair::new(Config::new().max_message(100), Timeouts::default());
    // The client's own limit is the same; it sends more than the server takes.
    p.client.send(DataKind::Binary, &[0; 101]).unwrap();
    p.pump();
    assert_eq!(p.server.got, [Got::Error(Error::MessageTooLarge)]);
    assert_eq!(p.client.got, [Got::Close(Some(1009), String::new())]);
    assert_eq!(ended(&p.client), (Some(1009), "", Initiator::Remote, true));
    // The server failed the connection and stopped reading: its close times out.
    assert!(p.server.s.ended().is_none());
    p.advance(secs(5));
    assert!(p.server.gone);
    assert_eq!(ended(&p.server), (Some(1009), "", Initiator::Local, false));
}

#[test]
fn a_protocol_error_closes_with_its_code() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    // An unmasked frame from a client (§5.1): 1002.
    p.server.input.extend_from_slice(b"\x81\x02hi");
    p.pump();
    assert_eq!(p.server.got, [Got::Error(Error::UnmaskedFrame)]);
    assert_eq!(p.client.got, [Got::Close(Some(1002), String::new())]);
    // Invalid UTF-8 (which the sender's API cannot send: text is a `&str`): 1007.
    let mut p = Pair::new(Config::default(), Timeouts::default());
    let mut frame = [0u8; 16];
    let n = crate::encode_frame(
        &mut frame,
        crate::OpCode::Text,
        true,
        Some([1, 2, 3, 4]),
        &[0xc3, 0x28],
    )
    .unwrap();
    p.server.input.extend_from_slice(&frame[..n]);
    p.pump();
    assert_eq!(p.server.got, [Got::Error(Error::InvalidUtf8)]);
    assert_eq!(p.client.got, [Got::Close(Some(1007), String::new())]);
}

#[test]
fn keepalive_pings_and_a_silent_peer_is_closed_with_1001() {
    let t = Timeouts {
        idle: Some(secs(30)),
        close: secs(5),
    };
    let mut p = Pair::new(Config::default(), Timeouts::default());
    p.server = Side::new(Role::Server, Config::default(), t);
    // A live peer answers every ping and stays open.
    p.advance(secs(95));
    let pings = p
        .client
        .got
        .iter()
        .filter(|g| **g == Got::Ping(vec![]))
        .count();
    assert_eq!(pings, 3, "{:?}", p.client.got);
    assert!(p.server.s.ended().is_none());
    // Traffic counts as liveness: no ping while messages flow.
    let before = p.client.got.len();
    for _ in 0..10 {
        p.client.send(DataKind::Text, b"tick").unwrap();
        p.advance(secs(20));
    }
    assert_eq!(p.client.got.len(), before);
    // A silent peer: a ping at 30 s, the idle close at 60 s, the transport closed at 65 s.
    p.client.gone = true;
    p.advance(secs(59));
    assert!(!p.server.s.sender().close_sent());
    p.advance(secs(1));
    assert!(p.server.s.sender().close_sent());
    assert!(!p.server.gone);
    p.advance(secs(5));
    assert!(p.server.gone);
    assert_eq!(
        ended(&p.server),
        (Some(1001), "idle timeout", Initiator::Local, false)
    );
}

#[test]
fn close_timeout_when_the_peer_never_answers() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    p.client.gone = true; // reads nothing, answers nothing
    p.server
        .s
        .close(Some(CloseCode::GOING_AWAY), "restart", p.now)
        .unwrap();
    p.advance(Duration::from_millis(4999));
    assert!(!p.server.gone);
    p.advance(Duration::from_millis(1));
    assert!(p.server.gone);
    assert_eq!(
        ended(&p.server),
        (Some(1001), "restart", Initiator::Local, false)
    );
    assert_eq!(p.server.s.poll_timeout(p.now), None);
}

#[test]
fn both_close_at_once() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    p.client
        .s
        .close(Some(CloseCode::NORMAL), "c", p.now)
        .unwrap();
    p.server
        .s
        .close(Some(CloseCode::GOING_AWAY), "s", p.now)
        .unwrap();
    p.pump();
    // Each reports its own close as what ended it, and neither answered twice.
    assert_eq!(ended(&p.client), (Some(1000), "c", Initiator::Local, true));
    assert_eq!(ended(&p.server), (Some(1001), "s", Initiator::Local, true));
    assert_eq!(p.client.got, [Got::Close(Some(1001), "s".into())]);
    assert_eq!(p.server.got, [Got::Close(Some(1000), "c".into())]);
}

#[test]
fn the_transport_ending_first_is_1006() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    p.server.s.transport_ended();
    assert_eq!(ended(&p.server), (Some(1006), "", Initiator::Remote, false));
}

#[test]
fn the_hard_bound_refuses_data_and_a_ping_flood_never_the_close() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    p.server.s.set_send_bound(100);
    p.server.send(DataKind::Binary, &[0; 60]).unwrap();
    assert_eq!(
        p.server.send(DataKind::Binary, &[0; 60]),
        Err(SendError::Full {
            queued: 62,
            len: 60
        })
    );
    // A pong still fits behind data up to the bound.
    p.server.s.ping(b"p").unwrap();
    p.pump();
    assert_eq!(p.client.messages(), [(false, vec![0; 60])]);
    // An empty queue takes one message larger than the bound.
    p.server.send(DataKind::Binary, &[1; 500]).unwrap();
    // A client that pings and never reads: the server answers none of them past the bound.
    for _ in 0..1000 {
        p.client.s.ping(b"flood").unwrap();
    }
    p.carry_to_server();
    p.server.receive(p.now);
    let queued = p.server.s.outgoing().queued();
    assert_eq!(queued, 504, "the 500-byte message, and no pong");
    // The close still goes out.
    assert!(
        p.server
            .s
            .close(Some(CloseCode::NORMAL), "", p.now)
            .unwrap()
    );
    p.pump();
    assert_eq!(
        p.client.messages(),
        [(false, vec![0; 60]), (false, vec![1; 500])]
    );
    assert_eq!(
        p.client.got.last(),
        Some(&Got::Close(Some(1000), String::new()))
    );
}

#[test]
fn small_prepared_frames_are_gathered_and_large_ones_shared() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    let small = Prepared::text("hi");
    let large = Prepared::binary(&[7; 4096]);
    for _ in 0..3 {
        p.server.s.send_prepared(&small).unwrap();
    }
    p.server.s.send_prepared(&large).unwrap();
    let out = p.server.s.outgoing();
    out.seal();
    let chunks: Vec<&[u8]> = out.chunks().collect();
    // The three small frames share one buffer; the large one is the prepared frame itself.
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0], b"\x81\x02hi\x81\x02hi\x81\x02hi");
    assert_eq!(chunks[1].as_ptr(), large.frame().as_ptr());
    p.pump();
    let got = p.client.messages();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0], (true, b"hi".to_vec()));
    assert_eq!(got[3], (false, vec![7; 4096]));
}

#[test]
fn prepared_frames_are_shared_or_masked_and_checked() {
    let mut p = Pair::new(Config::default(), Timeouts::default());
    let msg = Prepared::binary(b"abc");
    p.server.s.send_prepared(&msg).unwrap();
    p.client.s.send_prepared(&msg).unwrap(); // re-sent masked by the client role
    let bad: [&[u8]; 6] = [
        b"\x02\x03abc",
        b"\x82\x05abc",
        b"\x89\x00",
        b"\x82",
        b"\xc2\x03abc",
        b"\x81\x01\xff",
    ];
    for bad in bad {
        assert_eq!(
            Prepared::parse(bytes::Bytes::copy_from_slice(bad)),
            Err(SendError::NotAFrame)
        );
    }
    assert_eq!(Prepared::parse(msg.frame().clone()), Ok(msg));
    p.pump();
    assert_eq!(p.client.messages(), [(false, b"abc".to_vec())]);
    assert_eq!(p.server.messages(), [(false, b"abc".to_vec())]);
}

#[test]
fn the_client_role_refuses_to_send_without_keys() {
    let mut s = Session::new(
        Role::Client,
        Config::default(),
        Timeouts::default(),
        secs(0),
    );
    assert_eq!(s.ping(b""), Err(SendError::NoMaskKeys));
    assert!(s.outgoing().is_empty());
}

#[cfg(feature = "deflate")]
mod deflate {
    use super::*;
    use crate::deflate::{DeflateConfig, PerMessageDeflate, Pool, negotiate};

    fn compressed_pair(config: DeflateConfig) -> Pair {
        let a = negotiate(["permessage-deflate; client_max_window_bits"], &config).unwrap();
        let mut p = Pair::new(
            Config::new().compression(true).max_message(1 << 20),
            Timeouts::default(),
        );
        p.client.pmd = Some((
            PerMessageDeflate::new(Role::Client, &a, &config),
            Pool::new(2),
        ));
        p.server.pmd = Some((
            PerMessageDeflate::new(Role::Server, &a, &config),
            Pool::new(2),
        ));
        p
    }

    #[test]
    fn deflate_both_ways_with_and_without_context_takeover() {
        for config in [
            DeflateConfig::new(),
            DeflateConfig::new().no_context_takeover(),
        ] {
            for mtu in [usize::MAX, 9] {
                let mut p = compressed_pair(config);
                p.mtu = mtu;
                let text = "compress me, compress me again ".repeat(50);
                for _ in 0..3 {
                    p.client.send(DataKind::Text, text.as_bytes()).unwrap();
                    p.server.send(DataKind::Binary, text.as_bytes()).unwrap();
                }
                p.client.send(DataKind::Text, b"tiny").unwrap(); // under the threshold
                let wire = p.client.s.outgoing().queued();
                assert!(
                    wire < 3 * text.len() / 4,
                    "{wire} bytes for {}",
                    3 * text.len()
                );
                p.pump();
                let mut want = vec![(true, text.as_bytes().to_vec()); 3];
                want.push((true, b"tiny".to_vec()));
                assert_eq!(p.server.messages(), want);
                assert_eq!(
                    p.client.messages(),
                    vec![(false, text.as_bytes().to_vec()); 3]
                );
            }
        }
    }

    #[test]
    fn a_deflate_bomb_is_closed_with_1009() {
        let mut p = compressed_pair(DeflateConfig::new());
        p.server
            .s
            .receiver()
            .set_config(Config::new().compression(true).max_message(4096));
        p.client.send(DataKind::Binary, &vec![0; 1 << 20]).unwrap();
        p.pump();
        assert_eq!(p.server.got, [Got::Error(Error::MessageTooLarge)]);
        assert_eq!(p.client.got, [Got::Close(Some(1009), String::new())]);
    }
}
