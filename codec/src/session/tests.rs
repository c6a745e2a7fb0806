use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::{CloseCode, Header, OpCode, encode_frame};

/// What a driver hands out, owned, for comparing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    /// A whole message that arrived in several pieces.
    Assembled(bool, Vec<u8>),
    Chunk(bool, Vec<u8>, bool, bool),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Error(Error),
}

/// A driver in miniature: bytes arrive in `splits`, unconsumed bytes are kept in front of the
/// next ones, as the io_uring worker and the blocking client do.
fn drive(
    rx: &mut Receiver,
    wire: &[u8],
    splits: &[usize],
    inflate: Option<&mut dyn Inflate>,
) -> Vec<Got> {
    drive_with(rx, wire, splits, inflate, None)
}

/// [`drive`], but as the tokio stream reads: once every byte received was consumed, the rest
/// of a large frame goes straight into [`Receiver::room`] (when `use_room` says so for that
/// cut; otherwise through the buffer, which gives any room lent up).
fn drive_room(rx: &mut Receiver, wire: &[u8], splits: &[usize], use_room: &[bool]) -> Vec<Got> {
    drive_with(rx, wire, splits, None, Some(use_room))
}

/// [`drive`], reading into the room for the cuts `rooms` allows (all past its end), if given.
#[allow(unsafe_code)]
fn drive_with(
    rx: &mut Receiver,
    wire: &[u8],
    splits: &[usize],
    mut inflate: Option<&mut dyn Inflate>,
    rooms: Option<&[bool]>,
) -> Vec<Got> {
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut scratch = Vec::new();
    let mut cuts: Vec<usize> = splits.iter().map(|&s| s % (wire.len() + 1)).collect();
    cuts.push(wire.len());
    cuts.sort_unstable();
    let mut at = 0;
    for (i, cut) in cuts.into_iter().enumerate() {
        let use_room = rooms.is_some_and(|r| r.get(i).copied().unwrap_or(true));
        while use_room && pending.is_empty() && at < cut {
            let Some(room) = rx.room(None) else { break };
            let n = room.len().min(cut - at);
            for (d, s) in room.iter_mut().zip(&wire[at..at + n]) {
                d.write(*s);
            }
            at += n;
            // SAFETY: the room's first `n` bytes were written just above.
            match unsafe { rx.received_in_room(n) } {
                Ok(Some(m)) => out.push(Got::Assembled(m.is_text(), m.into_bytes())),
                Ok(None) => {}
                Err(e) => {
                    out.push(Got::Error(e));
                    return out;
                }
            }
        }
        pending.extend_from_slice(&wire[at..cut]);
        at = cut;
        loop {
            let got = match rx.receive(&mut pending, &mut scratch, inflate.as_deref_mut()) {
                Ok(g) => g,
                Err(e) => {
                    out.push(Got::Error(e));
                    return out;
                }
            };
            if got.needs_more() {
                break;
            }
            let used = got.consumed;
            let closed = matches!(got.event, Some(Incoming::Close(_)));
            match got.event {
                None => {}
                Some(Incoming::Message(Message::Text(t))) => out.push(Got::Text(t.into())),
                Some(Incoming::Message(Message::Binary(b))) => out.push(Got::Binary(b.to_vec())),
                Some(Incoming::Assembled(m)) => {
                    out.push(Got::Assembled(m.is_text(), m.as_bytes().to_vec()));
                }
                Some(Incoming::Chunk(c)) => {
                    out.push(Got::Chunk(c.text, c.data.to_vec(), c.first, c.last));
                }
                Some(Incoming::Ping(p)) => out.push(Got::Ping(p.to_vec())),
                Some(Incoming::Pong(p)) => out.push(Got::Pong(p.to_vec())),
                Some(Incoming::Close(c)) => {
                    out.push(Got::Close(c.code.map(u16::from), c.reason.into()))
                }
            }
            pending.drain(..used);
            if closed {
                return out;
            }
        }
    }
    out
}

/// A message as the client sends it: masked frames of the given fragment sizes.
fn client_frames(wire: &mut Vec<u8>, text: bool, payload: &[u8], frags: &[usize]) {
    let mut parts = Vec::new();
    let mut rest = payload;
    for &f in frags {
        let n = f.min(rest.len());
        parts.push(&rest[..n]);
        rest = &rest[n..];
    }
    parts.push(rest);
    for (i, p) in parts.iter().enumerate() {
        let op = match (i, text) {
            (0, true) => OpCode::Text,
            (0, false) => OpCode::Binary,
            _ => OpCode::Continuation,
        };
        let mut buf = vec![0u8; p.len() + 14];
        let key = [i as u8, 0x5a, 0xa5, 7];
        let n = encode_frame(&mut buf, op, i == parts.len() - 1, Some(key), p).unwrap();
        wire.extend_from_slice(&buf[..n]);
    }
}

fn server() -> Receiver {
    Receiver::new(Role::Server, Config::default())
}

#[test]
fn a_message_in_one_piece_is_lent_and_fragments_are_assembled() {
    let mut wire = Vec::new();
    client_frames(&mut wire, true, "héllo".as_bytes(), &[]);
    client_frames(&mut wire, false, &[1, 2, 3, 4, 5], &[2, 0, 1]);
    let got = drive(&mut server(), &wire, &[], None);
    assert_eq!(
        got,
        [
            Got::Text("héllo".into()),
            Got::Assembled(false, vec![1, 2, 3, 4, 5])
        ]
    );
}

#[test]
fn the_assembly_grows_with_bytes_received_not_with_the_declared_length() {
    // H3: one 15-byte frame declaring a 100 GiB payload, with the limit raised to allow it,
    // used to reserve the declared length (and abort the process).
    let limit = 100u64 << 30;
    let mut rx = Receiver::new(
        Role::Server,
        Config::new().max_message(limit).max_frame(limit),
    );
    let header = Header {
        mask: Some([1, 2, 3, 4]),
        ..Header::new(OpCode::Binary, limit)
    };
    let mut wire = [0u8; 14 + 1];
    let n = header.encode(&mut wire).unwrap();
    assert_eq!(n, 14);
    let got = drive(&mut rx, &wire[..15], &[], None);
    assert!(got.is_empty(), "{got:?}");
    assert!(rx.in_message());
    // At most the floor of what is reserved ahead (64 KiB) past the byte that arrived, not the
    // 100 GiB declared.
    assert!(
        rx.buffered() <= (64 << 10) + 1,
        "assembly holds {} bytes",
        rx.buffered()
    );
}

#[test]
fn reserving_ahead_is_proportional_to_what_arrived() {
    // 1 MiB declared, 100 KiB sent: reserved at most 16 times what arrived.
    let mut wire = Vec::new();
    let header = Header {
        mask: Some([0; 4]),
        ..Header::new(OpCode::Binary, 1 << 20)
    };
    let mut h = [0u8; 14];
    let n = header.encode(&mut h).unwrap();
    wire.extend_from_slice(&h[..n]);
    wire.extend_from_slice(&[1; 100 << 10]);
    let mut rx = server();
    let got = drive(&mut rx, &wire, &[n + 1000], None);
    assert!(got.is_empty());
    assert!(
        rx.buffered() <= 16 * (100 << 10) + 1000,
        "{}",
        rx.buffered()
    );
    // Declared 1 MiB is what it reserved (less than 16 × 100 KiB): no copy as it grows.
    assert!(rx.buffered() >= 1 << 20);
}

#[test]
fn streaming_is_chosen_per_message() {
    // H2: a driver that changes its mind in the middle of a message gets that message the
    // way it started, and the next one the new way.
    let mut wire = Vec::new();
    client_frames(&mut wire, true, "ab€cd".as_bytes(), &[3]);
    let mut rx = server();
    rx.set_streaming(true);
    let mut scratch = Vec::new();
    let first = rx.receive(&mut wire, &mut scratch, None).unwrap();
    let used = first.consumed;
    assert!(matches!(
        first.event,
        Some(Incoming::Chunk(Chunk { first: true, .. }))
    ));
    rx.set_streaming(false);
    let mut rest = wire[used..].to_vec();
    let got = drive(&mut rx, &rest, &[], None);
    assert_eq!(
        got,
        [Got::Chunk(
            true,
            "ab€cd".as_bytes()[3..].to_vec(),
            false,
            true
        )]
    );
    // The next message is whole.
    rest.clear();
    client_frames(&mut rest, true, "ab€cd".as_bytes(), &[3]);
    let got = drive(&mut rx, &rest, &[], None);
    assert_eq!(got, [Got::Assembled(true, "ab€cd".as_bytes().to_vec())]);
}

#[test]
fn control_frames_pass_between_fragments() {
    let mut wire = Vec::new();
    let mut buf = [0u8; 64];
    let n = encode_frame(&mut buf, OpCode::Text, false, Some([1, 1, 1, 1]), b"ab").unwrap();
    wire.extend_from_slice(&buf[..n]);
    let n = encode_frame(&mut buf, OpCode::Ping, true, Some([2, 2, 2, 2]), b"p").unwrap();
    wire.extend_from_slice(&buf[..n]);
    let n = encode_frame(
        &mut buf,
        OpCode::Continuation,
        true,
        Some([3, 3, 3, 3]),
        b"c",
    )
    .unwrap();
    wire.extend_from_slice(&buf[..n]);
    let close = [0x03, 0xe8, b'b', b'y', b'e'];
    let n = encode_frame(&mut buf, OpCode::Close, true, Some([4, 4, 4, 4]), &close).unwrap();
    wire.extend_from_slice(&buf[..n]);
    let got = drive(&mut server(), &wire, &[], None);
    assert_eq!(
        got,
        [
            Got::Ping(b"p".to_vec()),
            Got::Assembled(true, b"abc".to_vec()),
            Got::Close(Some(1000), "bye".into())
        ]
    );
}

#[test]
fn invalid_text_fails_with_1007_even_when_streamed() {
    let mut wire = Vec::new();
    client_frames(&mut wire, true, &[b'a', 0xff, b'b'], &[1]);
    for streaming in [false, true] {
        let mut rx = server();
        rx.set_streaming(streaming);
        let got = drive(&mut rx, &wire, &[], None);
        let Some(Got::Error(e)) = got.last() else {
            panic!("{got:?}")
        };
        assert_eq!(e.close_code(), CloseCode::INVALID_PAYLOAD);
    }
}

#[test]
fn over_the_limit_fails_with_1009() {
    let mut wire = Vec::new();
    client_frames(&mut wire, false, &[0; 100], &[60]);
    let mut rx = Receiver::new(Role::Server, Config::new().max_message(99).max_frame(99));
    let got = drive(&mut rx, &wire, &[], None);
    assert_eq!(got, [Got::Error(Error::MessageTooLarge)]);
}

/// Decodes the same bytes whole and in pieces.
fn whole_and_split(wire: &[u8], splits: &[usize], streaming: bool) -> (Vec<Got>, Vec<Got>) {
    let mut a = server();
    let mut b = server();
    a.set_streaming(streaming);
    b.set_streaming(streaming);
    (
        drive(&mut a, wire, &[], None),
        drive(&mut b, wire, splits, None),
    )
}

/// The messages a list of events carries, whole: chunks joined, pieces merged.
fn messages(got: &[Got]) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cur: Option<(bool, Vec<u8>)> = None;
    for g in got {
        match g {
            Got::Text(t) => out.push((true, t.as_bytes().to_vec())),
            Got::Binary(b) => out.push((false, b.clone())),
            Got::Assembled(t, b) => out.push((*t, b.clone())),
            Got::Chunk(t, b, first, last) => {
                if *first {
                    cur = Some((*t, Vec::new()));
                }
                let c = cur.as_mut().expect("a chunk inside a message");
                c.1.extend_from_slice(b);
                if *last {
                    out.push(cur.take().unwrap());
                }
            }
            _ => {}
        }
    }
    out
}

proptest! {
    #[test]
    fn any_split_gives_the_same_messages(
        msgs in proptest::collection::vec(
            (any::<bool>(), ".{0,60}", proptest::collection::vec(0usize..30, 0..4)),
            1..6,
        ),
        splits in proptest::collection::vec(any::<usize>(), 0..12),
        streaming in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        for (text, s, frags) in &msgs {
            client_frames(&mut wire, *text, s.as_bytes(), frags);
            sent.push((*text, s.as_bytes().to_vec()));
        }
        let (whole, split) = whole_and_split(&wire, &splits, streaming);
        prop_assert_eq!(messages(&whole), sent.clone());
        prop_assert_eq!(messages(&split), sent);
        // Streamed text is valid UTF-8 when joined; whole text was `&str` all along.
        for g in &split {
            if let Got::Assembled(true, b) = g {
                prop_assert!(core::str::from_utf8(b).is_ok());
            }
        }
    }
}

#[cfg(feature = "deflate")]
mod deflate {
    use super::*;
    use crate::deflate::{DeflateConfig, PerMessageDeflate, Pool, negotiate};

    fn pair() -> (PerMessageDeflate, PerMessageDeflate) {
        let c = DeflateConfig::new();
        let a = negotiate(["permessage-deflate; client_max_window_bits"], &c).unwrap();
        (
            PerMessageDeflate::new(Role::Client, &a, &c),
            PerMessageDeflate::new(Role::Server, &a, &c),
        )
    }

    /// A compressed message as the client sends it, its compressed bytes in `frags` pieces.
    fn compressed(
        client: &mut PerMessageDeflate,
        pool: &mut Pool,
        text: bool,
        payload: &[u8],
        frags: &[usize],
    ) -> Vec<u8> {
        let mut z = Vec::new();
        client.compress(payload, &mut z, pool);
        let mut wire = Vec::new();
        client_frames(&mut wire, text, &z, frags);
        wire[0] |= 0x40; // RSV1 on the first frame
        wire
    }

    #[test]
    fn compressed_messages_are_inflated_whole_assembled_and_streamed() {
        let (mut client, mut server_pmd) = pair();
        let mut pool = Pool::new(4);
        let text = "compressible text ".repeat(200);
        for (frags, streaming) in [(vec![], false), (vec![5, 7], false), (vec![5], true)] {
            let wire = compressed(&mut client, &mut pool, true, text.as_bytes(), &frags);
            let mut rx = Receiver::new(Role::Server, Config::new().compression(true));
            rx.set_streaming(streaming);
            let mut inf = Deflating {
                state: &mut server_pmd,
                pool: &mut pool,
            };
            let got = drive(&mut rx, &wire, &[3, 9, 40], Some(&mut inf));
            assert_eq!(
                messages(&got),
                [(true, text.as_bytes().to_vec())],
                "{frags:?}"
            );
            if frags.is_empty() && !streaming {
                // In one frame, but split across receive buffers: assembled.
                assert!(matches!(got[0], Got::Assembled(true, _)));
            }
        }
    }

    #[test]
    fn inflated_size_is_limited_and_inflated_text_checked() {
        let (mut client, mut server_pmd) = pair();
        let mut pool = Pool::new(4);
        let big = vec![b'a'; 10_000];
        let wire = compressed(&mut client, &mut pool, false, &big, &[]);
        assert!(wire.len() < 200);
        let mut rx = Receiver::new(
            Role::Server,
            Config::new().compression(true).max_message(5000),
        );
        let mut inf = Deflating {
            state: &mut server_pmd,
            pool: &mut pool,
        };
        let got = drive(&mut rx, &wire, &[], Some(&mut inf));
        assert_eq!(got, [Got::Error(Error::MessageTooLarge)]);

        let (mut client, mut server_pmd) = pair();
        let wire = compressed(&mut client, &mut pool, true, &[b'x', 0xc3, 0x28], &[]);
        let mut rx = Receiver::new(Role::Server, Config::new().compression(true));
        let mut inf = Deflating {
            state: &mut server_pmd,
            pool: &mut pool,
        };
        let got = drive(&mut rx, &wire, &[], Some(&mut inf));
        assert_eq!(got, [Got::Error(Error::InvalidUtf8)]);
    }
}

/// An `Inflate` that breaks its contract: it rewrites what is already in the buffer.
struct Vandal;

impl Inflate for Vandal {
    fn inflate(&mut self, input: &[u8], _: bool, out: &mut Vec<u8>, _: u64) -> Result<(), Error> {
        if let Some(first) = out.first_mut() {
            *first = 0xff; // no longer UTF-8
        }
        out.extend_from_slice(input);
        Ok(())
    }
}

#[test]
fn a_misbehaving_inflate_cannot_smuggle_invalid_text_into_a_str() {
    // Two compressed fragments: the second call corrupts the validated first byte.
    let mut wire = Vec::new();
    client_frames(&mut wire, true, b"abcdef", &[3]);
    wire[0] |= 0x40;
    let mut rx = Receiver::new(Role::Server, Config::new().compression(true));
    let got = drive(&mut rx, &wire, &[], Some(&mut Vandal));
    assert_eq!(got, [Got::Error(Error::InvalidUtf8)]);
}

/// A pool of one buffer that records what it was asked for.
struct OneBuffer {
    spare: Option<Vec<u8>>,
    asked: Vec<usize>,
    queued: usize,
}

impl Buffers for OneBuffer {
    fn take(&mut self, min: usize) -> Option<Vec<u8>> {
        self.asked.push(min);
        self.spare.take_if(|b| b.capacity() >= min)
    }

    fn queue(&mut self, payload: Vec<u8>) -> bytes::Bytes {
        self.queued += 1;
        bytes::Bytes::from(payload)
    }
}

#[test]
fn an_assembly_reuses_a_driver_buffer_and_owned_payloads_go_through_it() {
    let mut wire = Vec::new();
    client_frames(&mut wire, false, &[5u8; 3000], &[1000, 1000, 1000]);
    let mut spare = Vec::with_capacity(1 << 20);
    spare.extend_from_slice(b"old bytes");
    let spare_at = spare.as_ptr();
    let mut pool = OneBuffer {
        spare: Some(spare),
        asked: Vec::new(),
        queued: 0,
    };
    let mut rx = server();
    let (mut scratch, mut pending) = (Vec::new(), wire.clone());
    let mut assembled = None;
    while assembled.is_none() {
        let got = rx
            .receive_with(&mut pending, &mut scratch, None, Some(&mut pool))
            .unwrap();
        let used = got.consumed;
        if let Some(Incoming::Assembled(m)) = got.event {
            assembled = Some(m);
        }
        pending.drain(..used);
    }
    let m = assembled.unwrap();
    // Asked once, at the first piece (a whole frame: a header declares only its own frame).
    assert_eq!(pool.asked, [1000]);
    assert_eq!(m.as_bytes(), &[5u8; 3000][..], "the old bytes are gone");
    let data = m.into_bytes();
    assert_eq!(data.as_ptr(), spare_at, "assembled in the driver's buffer");
    // A message without a pool allocates as before.
    let (mut rx, mut pending) = (server(), wire);
    let mut got = Vec::new();
    while got.is_empty() {
        let r = rx.receive(&mut pending, &mut scratch, None).unwrap();
        let used = r.consumed;
        if let Some(Incoming::Assembled(m)) = r.event {
            got = m.into_bytes();
        }
        pending.drain(..used);
    }
    assert_eq!(got.len(), 3000);
    // The sender queues an owned payload through the pool's `queue`.
    let mut out = Outgoing::new();
    let mut tx = Sender::new(Role::Server);
    let mut link = Link::new(&mut out);
    link.buffers = Some(&mut pool);
    tx.send_owned(&mut link, OwnedMessage::binary(data))
        .unwrap();
    assert_eq!(pool.queued, 1);
    assert_eq!(out.queued(), 4 + 3000);
}

#[test]
fn a_large_frame_is_read_into_the_room_and_gives_the_same_message() {
    let text: String = "añb€c😀".repeat(20_000); // 300 KB, characters of 1 to 4 bytes
    let mut wire = Vec::new();
    client_frames(&mut wire, true, text.as_bytes(), &[70_000, 10, 100_000]);
    client_frames(&mut wire, false, &vec![7u8; 200_000], &[]);
    let want = drive(&mut server(), &wire, &[], None);
    assert_eq!(
        messages(&want),
        [(true, text.into_bytes()), (false, vec![7u8; 200_000])]
    );
    // Reads cut at odd places, some of them inside a character or a header.
    let splits = [5, 999, 1_000, 40_001, 70_013, 150_000, 300_077, 400_000];
    let mut rx = server();
    let got = drive_room(&mut rx, &wire, &splits, &[]);
    assert_eq!(messages(&got), messages(&want));
    assert!(!rx.in_message());
    // Taking some reads through the buffer instead (a lent room given up) changes nothing.
    let mixed = [true, false, true, true, false, false, true, false, true];
    let got = drive_room(&mut server(), &wire, &splits, &mixed);
    assert_eq!(messages(&got), messages(&want));
}

#[test]
fn no_room_for_small_frames_streamed_or_compressed_messages() {
    let mut wire = Vec::new();
    client_frames(&mut wire, false, &vec![1u8; ROOM_MIN + 100], &[]);
    // The header and 200 bytes: the frame's rest (ROOM_MIN - 100) is below ROOM_MIN.
    let mut rx = server();
    let mut head = wire[..8 + 300].to_vec();
    let consumed = rx
        .receive(&mut head, &mut Vec::new(), None)
        .unwrap()
        .consumed;
    assert_eq!(consumed, 8 + 300);
    assert!(rx.room(None).is_none());
    // The same frame with only its header and 50 bytes in: room for the rest, at most it.
    let mut rx = server();
    let mut head = wire[..8 + 50].to_vec();
    let _ = rx.receive(&mut head, &mut Vec::new(), None).unwrap();
    assert_eq!(rx.room(None).map(|r| r.len()), Some(ROOM_MIN + 50));
    // Streamed messages are lent in pieces from the caller's buffer instead.
    let mut rx = server();
    rx.set_streaming(true);
    let _ = rx.receive(&mut head, &mut Vec::new(), None).unwrap();
    assert!(rx.room(None).is_none());
    // A compressed message must be inflated from the caller's buffer.
    let mut rx = Receiver::new(Role::Server, Config::new().compression(true));
    let mut buf = vec![0u8; 14 + 50];
    let header = Header {
        rsv1: true,
        mask: Some([1, 2, 3, 4]),
        ..Header::new(OpCode::Binary, 1 << 20)
    };
    let n = header.encode(&mut buf).unwrap();
    buf.truncate(n + 50);
    let _ = rx.receive(&mut buf, &mut Vec::new(), Some(&mut Refuse));
    assert!(rx.room(None).is_none());
}

/// An inflater that is never asked to inflate anything here (the partial frame's bytes wait).
struct Refuse;

impl Inflate for Refuse {
    fn inflate(&mut self, _: &[u8], _: bool, _: &mut Vec<u8>, _: u64) -> Result<(), Error> {
        Err(Error::InvalidCompressedData)
    }
}

#[test]
#[allow(unsafe_code)]
fn the_room_follows_bytes_received_not_a_declared_length() {
    // A header declaring 100 GiB and 1 KiB of payload: room for at most 64 KiB, and after
    // filling it, at most 16 times what arrived.
    let limit = 100u64 << 30;
    let mut rx = Receiver::new(
        Role::Server,
        Config::new().max_message(limit).max_frame(limit),
    );
    let header = Header {
        mask: Some([0; 4]),
        ..Header::new(OpCode::Binary, limit)
    };
    let mut wire = vec![0u8; 14 + 1024];
    let n = header.encode(&mut wire).unwrap();
    wire.truncate(n + 1024);
    let consumed = rx
        .receive(&mut wire, &mut Vec::new(), None)
        .unwrap()
        .consumed;
    assert_eq!(consumed, n + 1024);
    let room = rx.room(None).expect("room");
    room.fill(core::mem::MaybeUninit::new(0));
    let room = room.len();
    assert!(room <= 64 << 10, "{room}");
    // SAFETY: the whole room was written just above.
    assert!(unsafe { rx.received_in_room(room) }.unwrap().is_none());
    let arrived = 1024 + room;
    let room = rx.room(None).expect("room").len();
    assert!(room <= 16 * arrived, "{room} after {arrived}");
    assert!(rx.buffered() <= 17 * arrived, "{}", rx.buffered());
}

#[test]
fn invalid_text_read_into_the_room_fails_with_1007() {
    let mut payload = vec![b'a'; 100_000];
    payload[60_000] = 0xff;
    let mut wire = Vec::new();
    client_frames(&mut wire, true, &payload, &[]);
    let got = drive_room(&mut server(), &wire, &[100], &[]);
    assert_eq!(got, [Got::Error(Error::InvalidUtf8)]);
    assert_eq!(Error::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
}

proptest! {
    #[test]
    fn reading_into_the_room_gives_the_messages_the_buffer_gives(
        msgs in proptest::collection::vec(
            (any::<bool>(), 0usize..120_000, proptest::collection::vec(0usize..50_000, 0..3)),
            1..4,
        ),
        splits in proptest::collection::vec(any::<usize>(), 0..10),
        use_room in proptest::collection::vec(any::<bool>(), 0..11),
    ) {
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        for (i, (text, len, frags)) in msgs.iter().enumerate() {
            let payload: Vec<u8> = if *text {
                "é€x".repeat(len / 6 + 1).into_bytes()
            } else {
                (0..*len).map(|j| (i + j) as u8).collect()
            };
            client_frames(&mut wire, *text, &payload, frags);
            sent.push((*text, payload));
        }
        let got = drive_room(&mut server(), &wire, &splits, &use_room);
        prop_assert_eq!(messages(&got), sent);
    }
}
