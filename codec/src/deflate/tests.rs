use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use flate2::{Decompress, FlushDecompress};
use proptest::prelude::*;

use super::*;
use crate::error::Error;

fn offer(s: &str) -> Option<Agreement> {
    negotiate([s], &DeflateConfig::new())
}

#[test]
fn params_reject_malformed_and_repeated() {
    for bad in [
        "permessage-deflate; foo",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; server_max_window_bits=a",
        "permessage-deflate; server_max_window_bits=\"1\\5\"",
        "permessage-deflate; server_max_window_bits=\"\"",
        "permessage-deflate; client_max_window_bits=100",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
        "permessage-deflate; a; b; c; d; e; f; g; h; i",
    ] {
        assert_eq!(offer(bad), None, "{bad}");
    }
}

#[test]
fn offers_accepted_with_their_parameters() {
    let cases = [
        ("permessage-deflate", "permessage-deflate"),
        ("PerMessage-Deflate", "permessage-deflate"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
        ),
        (
            "permessage-deflate; server_max_window_bits=\"10\"",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            "permessage-deflate ; server_no_context_takeover ; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            "permessage-deflate; client_max_window_bits=9",
            "permessage-deflate; client_max_window_bits=9",
        ),
        // The first acceptable offer wins; an unknown extension and a malformed offer are skipped.
        (
            "x-webkit-deflate-frame, permessage-deflate; bogus, permessage-deflate; server_max_window_bits=12",
            "permessage-deflate; server_max_window_bits=12",
        ),
        // An 8-bit server window is agreed to (our messages then go out uncompressed).
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate",
            "permessage-deflate; server_max_window_bits=8",
        ),
    ];
    for (offered, response) in cases {
        let a = offer(offered).unwrap_or_else(|| panic!("{offered} declined"));
        assert_eq!(a.to_string(), response, "{offered}");
    }
    assert_eq!(offer("x-webkit-deflate-frame"), None);
    // Several header lines are one list.
    let a = negotiate(
        ["foo", "permessage-deflate; client_no_context_takeover"],
        &DeflateConfig::new(),
    );
    assert!(a.unwrap().client_no_context_takeover);
    // A comma inside a quoted string does not split the list.
    assert_eq!(
        negotiate(
            ["foo; x=\"a,b\", permessage-deflate"],
            &DeflateConfig::new()
        )
        .map(|a| a.to_string()),
        Some("permessage-deflate".into())
    );
}

#[test]
fn server_policy_shapes_the_response() {
    let c = DeflateConfig::new()
        .no_context_takeover()
        .max_window_bits(11)
        .peer_max_window_bits(10);
    let a = negotiate(["permessage-deflate; client_max_window_bits"], &c).unwrap();
    assert_eq!(
        a.to_string(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=11; client_max_window_bits=10"
    );
    assert_eq!(
        a.outgoing(Role::Server),
        Direction {
            window_bits: 11,
            context_takeover: false
        }
    );
    assert_eq!(a.incoming(Role::Server).window_bits, 10);
    // Without client_max_window_bits in the offer the server cannot restrict the client.
    let a = negotiate(["permessage-deflate"], &c).unwrap();
    assert_eq!(a.client_max_window_bits, 15);
    assert!(!a.to_string().contains("client_max_window_bits"));
    // The client's smaller server window wins over the policy's.
    let a = negotiate(["permessage-deflate; server_max_window_bits=9"], &c).unwrap();
    assert_eq!(a.server_max_window_bits, 9);
}

#[test]
fn client_checks_the_response() {
    let c = DeflateConfig::new();
    let ok = |s: &str| accept_response([s], &c);
    let a = ok("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
        .unwrap()
        .unwrap();
    assert_eq!(
        a.incoming(Role::Client),
        Direction {
            window_bits: 10,
            context_takeover: false
        }
    );
    assert_eq!(
        a.outgoing(Role::Client),
        Direction {
            window_bits: 15,
            context_takeover: true
        }
    );
    for bad in [
        "x-webkit-deflate-frame",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; unknown",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    ] {
        assert!(ok(bad).is_err(), "{bad}");
    }
    // A server window above what we asked for is refused.
    let small = DeflateConfig::new().peer_max_window_bits(10);
    assert!(accept_response(["permessage-deflate; server_max_window_bits=11"], &small).is_err());
    assert!(accept_response(["permessage-deflate; server_max_window_bits=10"], &small).is_ok());
    // Our compressor window below what we offered is fine, above it is not.
    let c12 = DeflateConfig::new().max_window_bits(12);
    assert!(accept_response(["permessage-deflate; client_max_window_bits=13"], &c12).is_err());
    let a = accept_response(["permessage-deflate"], &c12)
        .unwrap()
        .unwrap();
    assert_eq!(a.outgoing(Role::Client).window_bits, 12);
    // Our own no-takeover policy holds even if the server does not echo it.
    let nct = DeflateConfig::new().no_context_takeover();
    let a = accept_response(["permessage-deflate"], &nct)
        .unwrap()
        .unwrap();
    assert!(!a.outgoing(Role::Client).context_takeover);
}

#[test]
fn the_server_accepts_what_the_client_offers() {
    for c in [
        DeflateConfig::new(),
        DeflateConfig::new().no_context_takeover(),
        DeflateConfig::new()
            .max_window_bits(9)
            .peer_max_window_bits(9),
        DeflateConfig::new().peer_max_window_bits(12),
    ] {
        let offer = client_offer(&c);
        let agreed = negotiate([offer.as_str()], &DeflateConfig::new()).unwrap();
        let response = agreed.to_string();
        let back = accept_response([response.as_str()], &c).unwrap().unwrap();
        assert_eq!(
            back.outgoing(Role::Client),
            agreed.outgoing(Role::Client),
            "{offer}"
        );
        assert_eq!(
            back.incoming(Role::Client),
            agreed.incoming(Role::Client),
            "{offer}"
        );
    }
    // A server of ours asked for an 8-bit window agrees, and then sends uncompressed.
    let eight = client_offer(&DeflateConfig::new().peer_max_window_bits(8));
    let a = negotiate([eight.as_str()], &DeflateConfig::new()).unwrap();
    assert_eq!(a.outgoing(Role::Server).window_bits, 8);
    let server = PerMessageDeflate::new(Role::Server, &a, &DeflateConfig::new());
    assert!(!server.should_compress(1 << 20));
}

fn pair(
    takeover: bool,
    server_bits: u8,
    client_bits: u8,
) -> (PerMessageDeflate, PerMessageDeflate) {
    let mut c = DeflateConfig::new()
        .max_window_bits(server_bits)
        .peer_max_window_bits(client_bits);
    if !takeover {
        c = c.no_context_takeover();
    }
    let a = negotiate(["permessage-deflate; client_max_window_bits"], &c).unwrap();
    (
        PerMessageDeflate::new(Role::Server, &a, &c),
        PerMessageDeflate::new(Role::Client, &a, &c),
    )
}

fn inflate_all(d: &mut PerMessageDeflate, wire: &[u8], pool: &mut Pool) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    d.decompress(wire, true, &mut out, 1 << 30, pool)?;
    Ok(out)
}

/// "Hello" compressed as one message (RFC 7692 §7.2.3.1).
const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

#[test]
fn rfc7692_examples_inflate() {
    let mut pool = Pool::default();
    let (_, mut client) = pair(true, 15, 15);
    // §7.2.3.1 "Hello" compressed, then §7.2.3.2 the same again referring back to the first.
    assert_eq!(
        inflate_all(&mut client, &HELLO, &mut pool).unwrap(),
        b"Hello"
    );
    assert_eq!(
        inflate_all(&mut client, &[0xf2, 0x00, 0x11, 0x00, 0x00], &mut pool).unwrap(),
        b"Hello"
    );
    // §7.2.3.3 an uncompressed (stored) block.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    let (_, mut client) = pair(true, 15, 15);
    assert_eq!(
        inflate_all(&mut client, &stored, &mut pool).unwrap(),
        b"Hello"
    );
    // §7.2.3.4 a final block (BFINAL) ends the message; the next message still inflates.
    let (_, mut client) = pair(true, 15, 15);
    let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(
        inflate_all(&mut client, &bfinal, &mut pool).unwrap(),
        b"Hello"
    );
    assert_eq!(
        inflate_all(&mut client, &HELLO, &mut pool).unwrap(),
        b"Hello"
    );
    // What our compressor writes inflates with an independent inflater.
    let (mut server, _) = pair(true, 15, 15);
    let mut wire = Vec::new();
    server.compress(b"Hello", &mut wire, &mut pool);
    let mut check = Decompress::new(false);
    let mut plain = Vec::with_capacity(64);
    wire.extend_from_slice(&TAIL_BYTES);
    check
        .decompress_vec(&wire, &mut plain, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(plain, b"Hello");
}

const TAIL_BYTES: [u8; 4] = [0, 0, 0xff, 0xff];

#[test]
fn garbage_is_invalid_compressed_data() {
    let mut pool = Pool::default();
    let (_, mut client) = pair(true, 15, 15);
    // BTYPE 11 is reserved.
    assert_eq!(
        inflate_all(&mut client, &[0xff, 0xff, 0xff], &mut pool),
        Err(Error::InvalidCompressedData)
    );
    assert_eq!(Error::InvalidCompressedData.close_code().0, 1007);
    // Bytes after a final block are ignored (§7.2.3.4 itself has one).
    let (_, mut client) = pair(true, 15, 15);
    let r = inflate_all(
        &mut client,
        &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x41, 0x42],
        &mut pool,
    );
    assert_eq!(r.unwrap(), b"Hello");
}

#[test]
fn a_zip_bomb_stops_at_the_limit() {
    let mut pool = Pool::default();
    let (mut server, mut client) = pair(true, 15, 15);
    let bomb = vec![0u8; 64 << 20];
    let mut wire = Vec::new();
    server.compress(&bomb, &mut wire, &mut pool);
    assert!(
        wire.len() < 1 << 20,
        "64 MiB of zeros compress to {}",
        wire.len()
    );
    let limit = 1u64 << 20;
    let mut out = Vec::new();
    let r = client.decompress(&wire, true, &mut out, limit, &mut pool);
    assert_eq!(r, Err(Error::MessageTooLarge));
    assert!(
        out.capacity() as u64 <= limit + 1,
        "grew to {}",
        out.capacity()
    );
    // Exactly at the limit is fine.
    let (mut server, mut client) = pair(true, 15, 15);
    let mut wire = Vec::new();
    server.compress(&bomb[..1 << 20], &mut wire, &mut pool);
    let mut out = Vec::new();
    client
        .decompress(&wire, true, &mut out, limit, &mut pool)
        .unwrap();
    assert_eq!(out.len(), 1 << 20);
}

/// Text-like data with repeats, so compression and back-references happen.
fn corpus(seed: u64, len: usize) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"sockeye ",
        b"frame ",
        b"{\"id\":",
        b"12345,",
        b"\"ok\":true} ",
        b"salmon ",
        b"\xe2\x82\xac",
        b"deflate ",
    ];
    let mut s = seed | 1;
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        if s.is_multiple_of(7) {
            v.push((s >> 24) as u8);
        } else {
            v.extend_from_slice(words[(s >> 32) as usize % words.len()]);
        }
    }
    v.truncate(len);
    v
}

#[test]
fn every_window_and_takeover_combination_round_trips() {
    let mut pool = Pool::new(4);
    for takeover in [true, false] {
        for server_bits in 9..=15u8 {
            for client_bits in 9..=15u8 {
                let (mut server, mut client) = pair(takeover, server_bits, client_bits);
                // An independent inflater with exactly the agreed window: any reference farther
                // back than the window would fail it.
                let mut strict = Decompress::new_with_window_bits(false, server_bits);
                for i in 0..6u64 {
                    let msg = corpus(
                        i * 31 + u64::from(server_bits),
                        [0, 1, 200, 5000, 70_000, 3000][i as usize],
                    );
                    let mut wire = Vec::new();
                    server.compress(&msg, &mut wire, &mut pool);
                    assert_eq!(inflate_all(&mut client, &wire, &mut pool).unwrap(), msg);
                    if !takeover {
                        strict = Decompress::new_with_window_bits(false, server_bits);
                    }
                    wire.extend_from_slice(&TAIL_BYTES);
                    let mut plain = Vec::with_capacity(msg.len() + 64);
                    strict
                        .decompress_vec(&wire, &mut plain, FlushDecompress::Sync)
                        .unwrap();
                    assert_eq!(plain, msg, "bits {server_bits} takeover {takeover}");
                    // And the other way.
                    let mut wire = Vec::new();
                    client.compress(&msg, &mut wire, &mut pool);
                    assert_eq!(inflate_all(&mut server, &wire, &mut pool).unwrap(), msg);
                }
            }
        }
    }
}

#[test]
fn takeover_compresses_repeats_and_no_takeover_stands_alone() {
    let mut pool = Pool::default();
    let msg = corpus(7, 2000);
    let (mut server, _) = pair(true, 15, 15);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    server.compress(&msg, &mut first, &mut pool);
    server.compress(&msg, &mut second, &mut pool);
    assert!(
        second.len() * 4 < first.len(),
        "{} then {}",
        first.len(),
        second.len()
    );
    // Without takeover each message inflates on its own, in any order.
    let (mut server, _) = pair(false, 15, 15);
    let mut wires = Vec::new();
    for i in 0..3 {
        let mut w = Vec::new();
        server.compress(&corpus(i, 1000), &mut w, &mut pool);
        wires.push(w);
    }
    for i in [2usize, 0, 1] {
        let (_, mut fresh) = pair(false, 15, 15);
        assert_eq!(
            inflate_all(&mut fresh, &wires[i], &mut pool).unwrap(),
            corpus(i as u64, 1000)
        );
    }
    assert!(
        !server.is_active(),
        "no engine is held between messages without takeover"
    );
}

#[test]
fn parked_connections_keep_only_history_and_resume() {
    let mut pool = Pool::default();
    let c = DeflateConfig::new();
    let a = negotiate(["permessage-deflate"], &c).unwrap();
    let mut server = PerMessageDeflate::new(Role::Server, &a, &c).with_idle_release();
    let mut client = PerMessageDeflate::new(Role::Client, &a, &c).with_idle_release();
    for i in 0..40u64 {
        let msg = corpus(i % 3, 1500 + i as usize * 997);
        let mut wire = Vec::new();
        server.compress(&msg, &mut wire, &mut pool);
        assert_eq!(
            inflate_all(&mut client, &wire, &mut pool).unwrap(),
            msg,
            "message {i}"
        );
        // And back, so the server's inflater needs the client's history across parking.
        let mut wire = Vec::new();
        client.compress(&msg, &mut wire, &mut pool);
        assert_eq!(
            inflate_all(&mut server, &wire, &mut pool).unwrap(),
            msg,
            "reply {i}"
        );
        if i % 2 == 0 {
            assert!(server.park(&mut pool));
            assert!(client.park(&mut pool));
            assert!(!server.is_active() && !client.is_active());
        }
    }
    assert_eq!(server.history_bytes(), 32 << 10);
    assert_eq!(client.history_bytes(), 32 << 10);
    // Without idle release a takeover inflater is never given back.
    let mut kept = PerMessageDeflate::new(Role::Client, &a, &c);
    server.park(&mut pool); // its next message refers to nothing earlier
    let mut wire = Vec::new();
    server.compress(&corpus(1, 500), &mut wire, &mut pool);
    inflate_all(&mut kept, &wire, &mut pool).unwrap();
    kept.park(&mut pool);
    assert!(kept.is_active());
}

proptest! {
    #[test]
    fn inflating_in_pieces_matches_whole(seed in any::<u64>(), len in 0usize..20_000, cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let mut pool = Pool::default();
        let (mut server, mut whole) = pair(true, 15, 15);
        let (_, mut pieces) = pair(true, 15, 15);
        for round in 0..2u64 {
            let msg = corpus(seed ^ round, len);
            let mut wire = Vec::new();
            server.compress(&msg, &mut wire, &mut pool);
            prop_assert_eq!(inflate_all(&mut whole, &wire, &mut pool).unwrap(), msg.clone());
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            at.sort_unstable();
            let mut out = Vec::new();
            let mut prev = 0;
            for &c in &at {
                pieces.decompress(&wire[prev..c], false, &mut out, 1 << 30, &mut pool).unwrap();
                prev = c;
            }
            pieces.decompress(&wire[prev..], true, &mut out, 1 << 30, &mut pool).unwrap();
            prop_assert_eq!(out, msg);
        }
    }
}

/// zlib writes nothing for a second sync flush without new input, so an empty message right
/// after another (or after a message in parts ended by `flush_part`) once went out as an empty
/// payload, which the peer's appended tail turns into garbage (`00 ff ff`).
#[test]
fn empty_messages_one_after_another_round_trip_with_context_takeover() {
    let mut pool = Pool::default();
    for takeover in [true, false] {
        let (mut server, mut client) = pair(takeover, 15, 15);
        for msg in [&b""[..], b"", b"", b"Hello", b"", b"Hello", b""] {
            let mut wire = Vec::new();
            server.compress(msg, &mut wire, &mut pool);
            assert!(
                !wire.is_empty(),
                "a compressed message has at least one byte"
            );
            assert_eq!(inflate_all(&mut client, &wire, &mut pool).unwrap(), msg);
        }
        // An empty last part after a flush: the message so far ended on a sync flush.
        let mut wire = Vec::new();
        server.compress_part(b"Hello", false, &mut wire, &mut pool);
        server.flush_part(&mut wire);
        server.compress_part(b"", true, &mut wire, &mut pool);
        assert_eq!(
            inflate_all(&mut client, &wire, &mut pool).unwrap(),
            b"Hello"
        );
        let mut wire = Vec::new();
        server.compress(b"Hello", &mut wire, &mut pool);
        assert_eq!(
            inflate_all(&mut client, &wire, &mut pool).unwrap(),
            b"Hello"
        );
    }
}

#[test]
fn a_message_compressed_in_parts_inflates_whole() {
    let mut pool = Pool::default();
    for takeover in [true, false] {
        let (mut server, mut client) = pair(takeover, 15, 15);
        for round in 0..3u64 {
            let msg = corpus(round, 60_000);
            let mut wire = Vec::new();
            for (i, part) in msg.chunks(1024).enumerate() {
                let last = (i + 1) * 1024 >= msg.len();
                server.compress_part(part, last, &mut wire, &mut pool);
                if i % 7 == 3 && !last {
                    // Everything written so far is in `wire` after a flush.
                    server.flush_part(&mut wire);
                    let (_, mut probe) = pair(takeover, 15, 15);
                    if round == 0 {
                        let mut seen = Vec::new();
                        probe
                            .decompress(&wire, false, &mut seen, 1 << 30, &mut pool)
                            .unwrap();
                        assert_eq!(seen, msg[..(i + 1) * 1024]);
                    }
                }
            }
            assert_eq!(
                inflate_all(&mut client, &wire, &mut pool).unwrap(),
                msg,
                "round {round}"
            );
        }
    }
}

#[test]
fn an_eight_bit_window_is_stored_not_compressed() {
    // Our client limited to 8 bits by a server: whole messages are not compressed, and a
    // message written in parts is stored, which an inflater with a 256-byte window (here: a
    // 9-bit one, flate2's smallest, checked for references) reads back.
    let c = DeflateConfig::new();
    let a = accept_response(["permessage-deflate; client_max_window_bits=8"], &c)
        .unwrap()
        .unwrap();
    let mut pool = Pool::default();
    let mut client = PerMessageDeflate::new(Role::Client, &a, &c);
    assert!(!client.should_compress(4096));
    let msg = corpus(3, 5000);
    let mut wire = Vec::new();
    client.compress_part(&msg[..2000], false, &mut wire, &mut pool);
    client.compress_part(&msg[2000..], true, &mut wire, &mut pool);
    assert!(
        wire.len() >= msg.len(),
        "stored, not compressed: {}",
        wire.len()
    );
    wire.extend_from_slice(&TAIL_BYTES);
    let mut strict = Decompress::new_with_window_bits(false, 9);
    let mut plain = Vec::with_capacity(msg.len() + 64);
    strict
        .decompress_vec(&wire, &mut plain, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(plain, msg);
}
