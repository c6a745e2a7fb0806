//! A client session and a server session wired through byte buffers, driven by arbitrary
//! interleavings of commands (sends whole, owned, prepared and in fragments, pings, closes
//! with any code), clock steps, partial deliveries, receive-mode switches and hostile bytes
//! injected into either side, with and without compression.
//!
//! Input: byte 0 picks compression (and context takeover), small limits and the keepalive;
//! byte 1 the most bytes moved per delivery; then each command is one byte (its low 4 bits
//! the command, the rest an argument) and what it takes after it. Oracles: no panic; every
//! `&str` handed out is valid UTF-8; the assembly buffer within twice the message limit plus
//! 64 KiB, the output queue within its bound plus a constant (or one oversized message); a
//! message sent whole arrives whole and in order, in a direction nothing hostile was injected
//! into, until either side closes or fails.
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sockeye_codec::deflate::{DeflateConfig, PerMessageDeflate, Pool, negotiate};
use sockeye_codec::session::{
    Deflate, Deflating, Due, Fragment, Incoming, MaskKeys, Message, OwnedMessage, Prepared, Session,
    Timeouts,
};
use sockeye_codec::{CloseCode, Config, DataKind, Role};

struct Keys(u32);

impl MaskKeys for Keys {
    fn next_key(&mut self) -> [u8; 4] {
        self.0 = self.0.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        self.0.to_le_bytes()
    }
}

/// The output queue's bound in this target.
const BOUND: usize = 4096;

struct Side {
    s: Session,
    pmd: Option<(PerMessageDeflate, Pool)>,
    input: Vec<u8>,
    scratch: Vec<u8>,
    /// Messages sent whole (or finished in fragments) that the peer must get, in order.
    expect: VecDeque<(bool, Vec<u8>)>,
    /// The fragmented message being sent.
    sending: Option<(bool, Vec<u8>)>,
    /// The streamed message being received.
    receiving: Option<(bool, Vec<u8>)>,
    /// The order oracle holds for what this side receives.
    checked: bool,
    failed: bool,
    gone: bool,
    limit: u64,
    /// The largest message this side queued (the one the bound lets past when empty).
    largest: usize,
}

impl Side {
    fn new(role: Role, config: Config, timeouts: Timeouts, pmd: Option<(PerMessageDeflate, Pool)>) -> Side {
        let mut s = Session::new(role, config, timeouts, Duration::ZERO);
        if role == Role::Client {
            s.set_keys(Box::new(Keys(7)));
        }
        s.set_send_bound(BOUND);
        Side {
            s,
            pmd,
            input: Vec::new(),
            scratch: Vec::new(),
            expect: VecDeque::new(),
            sending: None,
            receiving: None,
            checked: true,
            failed: false,
            gone: false,
            limit: config.max_message_size(),
            largest: 0,
        }
    }

    fn check_queue(&mut self) {
        let queued = self.s.outgoing().queued();
        // Data up to the bound (or one larger message into an empty queue; compressed output
        // may be a little larger than its input); a ping or pong is admitted only while the
        // queue is within the bound, so at most one lands past it, and the close frame once
        // (each ≤ 131 bytes); the rest is slack.
        let data = BOUND.max(self.largest + self.largest / 64 + 64);
        assert!(queued <= data + 4 * 140, "queue {queued} past its bound");
    }
}

/// Delivers what `from` got to the oracle of `to` (the sender's expectations).
fn got_message(peer: &mut Side, text: bool, data: &[u8]) {
    if text {
        assert!(std::str::from_utf8(data).is_ok(), "text that is not UTF-8");
    }
    if !peer.checked_by_receiver() {
        return;
    }
    let want = peer.expect.pop_front().expect("a message nobody sent");
    assert_eq!((text, data), (want.0, &want.1[..]), "out of order or changed");
}

impl Side {
    /// Whether the messages this side sent are still checked at the receiver (set by the
    /// receiver through `checked` on the sender: see `receive`).
    fn checked_by_receiver(&self) -> bool {
        self.checked
    }
}

fn receive(me: &mut Side, peer: &mut Side, now: Duration) {
    if me.gone || me.failed {
        me.input.clear();
        return;
    }
    let mut at = 0;
    loop {
        let mut engines = me.pmd.as_mut().map(|(state, pool)| Deflating { state, pool });
        let deflate = engines.as_mut().map(|d| d as &mut dyn Deflate);
        let got = match me.s.receive(&mut me.input[at..], &mut me.scratch, deflate, now) {
            Ok(g) => g,
            Err(_) => {
                me.failed = true;
                peer.checked = false;
                me.input.clear();
                return;
            }
        };
        if got.needs_more() {
            break;
        }
        at += got.consumed;
        match got.event {
            None => {}
            Some(Incoming::Message(Message::Text(t))) => got_message(peer, true, t.as_bytes()),
            Some(Incoming::Message(Message::Binary(b))) => got_message(peer, false, b),
            Some(Incoming::Assembled(m)) => {
                let (text, data) = (m.is_text(), m.as_bytes().to_vec());
                if let Message::Text(t) = m.as_message() {
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                }
                got_message(peer, text, &data);
            }
            Some(Incoming::Chunk(c)) => {
                let cur = me.receiving.get_or_insert_with(|| (c.text, Vec::new()));
                assert_eq!(cur.0, c.text, "a message's chunks changed kind");
                cur.1.extend_from_slice(c.data);
                if c.last {
                    let (text, data) = me.receiving.take().expect("just set");
                    got_message(peer, text, &data);
                }
            }
            Some(Incoming::Ping(p) | Incoming::Pong(p)) => assert!(p.len() <= 125),
            Some(Incoming::Close(_)) => {
                // Whatever the peer sent after its close is not delivered, nor what we send.
                peer.checked = false;
                me.checked = false;
            }
        }
        let held = me.s.receiver().buffered() as u64;
        assert!(held <= 2 * me.limit + (64 << 10) + 64, "assembly {held} for limit {}", me.limit);
    }
    me.input.drain(..at);
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
        if !to.gone {
            to.input.extend_from_slice(&c[..n]);
        }
        moved += n;
        if moved == mtu {
            break;
        }
    }
    out.advance(moved);
    moved > 0
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(rest.len());
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    head
}

fn payload(rest: &mut &[u8], text: bool, arg: u8) -> Vec<u8> {
    let n = usize::from(take(rest, 1).first().copied().unwrap_or(0)) * (usize::from(arg & 3) * 8 + 1);
    let raw = take(rest, n);
    let mut v = if text {
        String::from_utf8_lossy(raw).into_owned().into_bytes()
    } else {
        raw.to_vec()
    };
    // Long messages without long inputs: repeat.
    if arg & 4 != 0 && !v.is_empty() {
        v = v.repeat(64);
        if text {
            v = String::from_utf8_lossy(&v).into_owned().into_bytes();
        }
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let [flags, mtu, tail @ ..] = data else {
        return;
    };
    let mut rest: &[u8] = tail;
    let compressed = flags & 1 != 0;
    let dc = if flags & 2 != 0 {
        DeflateConfig::new().no_context_takeover()
    } else {
        DeflateConfig::new()
    };
    let limit: u64 = if flags & 4 != 0 { 700 } else { 1 << 20 };
    let timeouts = Timeouts {
        idle: (flags & 8 != 0).then(|| Duration::from_secs(2)),
        close: Duration::from_secs(1),
    };
    let mtu = usize::from(*mtu).max(1) * if flags & 16 != 0 { 1 } else { 97 };
    let config = Config::new().max_message(limit).max_frame(limit).compression(compressed);
    let engines = |role| {
        compressed.then(|| {
            let a = negotiate(["permessage-deflate; client_max_window_bits"], &dc).unwrap();
            (PerMessageDeflate::new(role, &a, &dc), Pool::new(1))
        })
    };
    let mut c = Side::new(Role::Client, config, timeouts, engines(Role::Client));
    let mut s = Side::new(Role::Server, config, timeouts, engines(Role::Server));
    let mut now = Duration::ZERO;
    let mut steps = 0;

    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        steps += 1;
        if steps > 2000 {
            break;
        }
        let arg = op >> 4;
        let (me, peer) = if arg & 8 == 0 { (&mut c, &mut s) } else { (&mut s, &mut c) };
        match op & 15 {
            // A whole message, copied or owned.
            0 | 1 => {
                let text = arg & 1 != 0;
                let p = payload(&mut rest, text, arg >> 1);
                let mut engines = me.pmd.as_mut().map(|(state, pool)| Deflating { state, pool });
                let comp = engines.as_mut().map(|d| d as &mut dyn sockeye_codec::session::Compress);
                let sent = match (op & 15 == 0, text) {
                    (true, true) => me.s.send(Message::Text(std::str::from_utf8(&p).expect("made valid")), comp),
                    (true, false) => me.s.send(Message::Binary(&p), comp),
                    (false, true) => me.s.send_owned(
                        OwnedMessage::text(String::from_utf8(p.clone()).expect("made valid")),
                        comp,
                    ),
                    (false, false) => me.s.send_owned(OwnedMessage::binary(p.clone()), comp),
                };
                if sent.is_ok() {
                    me.largest = me.largest.max(p.len());
                    me.expect.push_back((text, p));
                }
            }
            // A prepared message.
            2 => {
                let text = arg & 1 != 0;
                let p = payload(&mut rest, text, arg >> 1);
                let msg = if text {
                    Prepared::text(std::str::from_utf8(&p).expect("made valid"))
                } else {
                    Prepared::binary(&p)
                };
                if me.s.send_prepared(&msg).is_ok() {
                    me.largest = me.largest.max(p.len());
                    me.expect.push_back((text, p));
                }
            }
            // A fragment (text fragments are whole strings, so the message stays UTF-8).
            3 => {
                let text = arg & 1 != 0;
                let fin = arg & 2 != 0;
                let p = payload(&mut rest, text, arg & 4);
                let kind = if text { DataKind::Text } else { DataKind::Binary };
                let f = Fragment { kind, fin, compressed: false };
                if me.s.fragment(f, &p).is_ok() {
                    me.largest = me.largest.max(p.len());
                    let cur = me.sending.get_or_insert_with(|| (text, Vec::new()));
                    cur.1.extend_from_slice(&p);
                    if fin {
                        let done = me.sending.take().expect("just set");
                        me.expect.push_back(done);
                    }
                }
            }
            4 => {
                let p = take(&mut rest, usize::from(arg) * 9).to_vec();
                let _ = me.s.ping(&p);
            }
            // A close with any code: an unsendable one is an error, never a panic.
            5 => {
                let code = take(&mut rest, 2);
                let code = match code {
                    [a, b] => Some(CloseCode(u16::from_be_bytes([*a, *b]))),
                    _ => None,
                };
                let reason = "r".repeat(usize::from(arg) * 9);
                if let Ok(true) = me.s.close(code, &reason, now) {
                    peer.checked = false; // the peer drops what we send after our close
                    me.checked = false;
                }
            }
            // Time passes; deadlines act.
            6 => {
                now += Duration::from_millis(u64::from(arg) * 150);
                let mut closed = false;
                for side in [&mut c, &mut s] {
                    if side.gone {
                        continue;
                    }
                    match side.s.on_timeout(now) {
                        Some(Due::CloseTimeout) => {
                            side.gone = true;
                            closed = true;
                        }
                        // The session closed with 1001 itself.
                        Some(Due::IdleClose) => closed = true,
                        _ => {}
                    }
                }
                if closed {
                    c.checked = false;
                    s.checked = false;
                }
            }
            // Hostile bytes into `me`'s input: what it gets is no longer checked.
            7 => {
                let junk = take(&mut rest, usize::from(arg & 7) * 5 + 1);
                me.input.extend_from_slice(junk);
                peer.checked = false;
            }
            8 => {
                let streaming = arg & 1 != 0;
                me.s.receiver().set_streaming(streaming);
            }
            // Deliver one step each way (at most `mtu` bytes) and receive.
            _ => {
                carry(&mut c, &mut s, mtu);
                carry(&mut s, &mut c, mtu);
                receive(&mut s, &mut c, now);
                receive(&mut c, &mut s, now);
            }
        }
        c.check_queue();
        s.check_queue();
    }
    // Settle: everything still checked must arrive.
    for _ in 0..100_000 {
        let a = carry(&mut c, &mut s, usize::MAX);
        let b = carry(&mut s, &mut c, usize::MAX);
        receive(&mut s, &mut c, now);
        receive(&mut c, &mut s, now);
        if !a && !b {
            break;
        }
    }
    for side in [&c, &s] {
        if side.checked && !side.gone {
            assert!(side.expect.is_empty(), "{} messages never arrived", side.expect.len());
        }
    }
});
