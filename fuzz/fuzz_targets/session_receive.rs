//! The session's receiver on arbitrary bytes, both roles, whole or streamed (switched at
//! arbitrary points), with and without compression, fed in pieces.
//!
//! Input: byte 0 picks the role, compression, a small message limit, the starting mode and
//! whether large frames are read straight into the receiver's room (as the tokio stream does);
//! byte 1 gives a split step; byte 2 a mode-switch period; the rest is the wire. Oracles: no
//! panic; `consumed` within the buffer; every `&str` handed out is valid UTF-8 (checked
//! again here); an assembled text message is valid UTF-8; the assembly never holds more than
//! twice the limit (it grows with bytes received); chunks of one message never change kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_codec::deflate::{DeflateConfig, PerMessageDeflate, Pool, negotiate};
use sockeye_codec::session::{Incoming, Inflate, Deflating, Message, Receiver};
use sockeye_codec::{Config, Role};

fuzz_target!(|data: &[u8]| {
    let [flags, step, period, wire @ ..] = data else {
        return;
    };
    let role = if flags & 1 == 0 { Role::Server } else { Role::Client };
    let compressed = flags & 2 != 0;
    let limit: u64 = if flags & 4 != 0 { 300 } else { 1 << 20 };
    let mut streaming = flags & 8 != 0;
    let step = usize::from(*step).max(1);
    let period = usize::from(*period).max(1);
    let config = Config::new()
        .max_message(limit)
        .max_frame(limit)
        .compression(compressed);
    let dc = DeflateConfig::new();
    let agreement = negotiate(["permessage-deflate; client_max_window_bits"], &dc).unwrap();
    let mut pmd = PerMessageDeflate::new(role, &agreement, &dc);
    let mut pool = Pool::new(1);

    let mut rx = Receiver::new(role, config);
    rx.set_streaming(streaming);
    let (mut buf, mut scratch) = (Vec::new(), Vec::new());
    let mut chunk_kind: Option<bool> = None;
    let mut calls = 0usize;
    let mut fed = 0;
    while fed < wire.len() {
        let end = (fed + step).min(wire.len());
        while flags & 16 != 0 && buf.is_empty() && fed < end {
            let Some(room) = rx.room(None) else { break };
            let n = room.len().min(end - fed);
            for (d, s) in room.iter_mut().zip(&wire[fed..fed + n]) {
                d.write(*s);
            }
            fed += n;
            // SAFETY: the room's first `n` bytes were written just above.
            match unsafe { rx.received_in_room(n) } {
                Ok(Some(m)) => {
                    assert!(chunk_kind.is_none());
                    assert!(m.len() as u64 <= limit);
                    if m.is_text() {
                        assert!(std::str::from_utf8(m.as_bytes()).is_ok());
                    }
                }
                Ok(None) => {}
                Err(_) => return,
            }
            assert!(rx.buffered() as u64 <= 2 * limit + 64, "assembly {}", rx.buffered());
        }
        buf.extend_from_slice(&wire[fed..end]);
        fed = end;
        loop {
            calls += 1;
            if calls % period == 0 {
                streaming = !streaming;
                rx.set_streaming(streaming);
            }
            let have = buf.len();
            let mut inf = Deflating {
                state: &mut pmd,
                pool: &mut pool,
            };
            let inflate = compressed.then_some(&mut inf as &mut dyn Inflate);
            let got = match rx.receive(&mut buf, &mut scratch, inflate) {
                Ok(g) => g,
                Err(_) => return,
            };
            assert!(got.consumed <= have);
            assert!(rx.buffered() as u64 <= 2 * limit + 64, "assembly {}", rx.buffered());
            if got.needs_more() {
                break;
            }
            let used = got.consumed;
            let mut closed = false;
            match got.event {
                Some(Incoming::Message(Message::Text(t))) => {
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                    assert!(chunk_kind.is_none());
                }
                Some(Incoming::Message(Message::Binary(_))) => assert!(chunk_kind.is_none()),
                Some(Incoming::Assembled(m)) => {
                    assert!(chunk_kind.is_none());
                    assert!(m.len() as u64 <= limit);
                    if m.is_text() {
                        assert!(std::str::from_utf8(m.as_bytes()).is_ok());
                    }
                }
                Some(Incoming::Chunk(c)) => {
                    if c.first {
                        assert!(chunk_kind.is_none());
                        chunk_kind = Some(c.text);
                    }
                    assert_eq!(chunk_kind, Some(c.text));
                    if c.last {
                        chunk_kind = None;
                    }
                }
                Some(Incoming::Close(_)) => closed = true,
                Some(Incoming::Ping(p) | Incoming::Pong(p)) => assert!(p.len() <= 125),
                None => {}
            }
            buf.drain(..used);
            if closed {
                return;
            }
        }
    }
});
