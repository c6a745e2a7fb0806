use super::*;
use crate::close::CloseCode;
use crate::encoder::encode_frame;
use std::string::String;
use std::vec::Vec;

/// An owned, normalized event: data chunks merged into whole messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

/// Feeds `wire` to a decoder in pieces cut at `cuts`, like a socket would, and collects events.
/// Returns the events seen before an error, and the error.
fn run(
    role: Role,
    config: Config,
    wire: &[u8],
    cuts: &[usize],
    stream: bool,
) -> (Vec<Ev>, Option<Error>) {
    let mut dec = Decoder::new(role, config);
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut message: Vec<u8> = Vec::new();
    let mut points: Vec<usize> = cuts.to_vec();
    points.push(wire.len());
    let mut start = 0;
    for end in points {
        buf.extend_from_slice(&wire[start..end]);
        start = end;
        loop {
            let have = buf.len();
            let r = if stream {
                dec.decode_streaming(&mut buf)
            } else {
                dec.decode(&mut buf)
            };
            match r {
                Err(e) => return (events, Some(e)),
                Ok(Status::Partial { needed }) => {
                    assert!(needed >= 1);
                    break;
                }
                Ok(Status::Complete(frame)) => {
                    let used = frame.wire_len();
                    assert!(used > 0 && used <= have);
                    match frame.event {
                        Event::Data(d) => {
                            assert_eq!(d.message_start, message.is_empty() && d.message_start);
                            message.extend_from_slice(d.payload);
                            if d.message_fin {
                                let m = core::mem::take(&mut message);
                                events.push(match d.kind {
                                    DataKind::Text => Ev::Text(m),
                                    DataKind::Binary => Ev::Binary(m),
                                });
                            }
                        }
                        Event::Ping(p) => events.push(Ev::Ping(p.to_vec())),
                        Event::Pong(p) => events.push(Ev::Pong(p.to_vec())),
                        Event::Close(c) => {
                            events.push(Ev::Close(c.code.map(|c| c.0), c.reason.into()))
                        }
                    }
                    buf.drain(..used);
                }
            }
        }
    }
    (events, None)
}

fn frame(op: OpCode, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut buf = std::vec![0u8; payload.len() + 14];
    let n = encode_frame(&mut buf, op, fin, mask, payload).unwrap();
    buf.truncate(n);
    buf
}

fn raw(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = frame(OpCode::Binary, true, mask, payload);
    f[0] = b0;
    f
}

const K: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

fn server(wire: &[u8]) -> (Vec<Ev>, Option<Error>) {
    run(Role::Server, Config::default(), wire, &[], false)
}

#[test]
fn rfc_5_7_examples() {
    // Client role receives unmasked frames.
    let single = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (ev, err) = run(Role::Client, Config::default(), &single, &[], false);
    assert_eq!((ev, err), (std::vec![Ev::Text(b"Hello".to_vec())], None));

    let masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        server(&masked),
        (std::vec![Ev::Text(b"Hello".to_vec())], None)
    );

    let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    let (ev, err) = run(Role::Client, Config::default(), &fragmented, &[], false);
    assert_eq!((ev, err), (std::vec![Ev::Text(b"Hello".to_vec())], None));

    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (ev, _) = run(Role::Client, Config::default(), &ping, &[], false);
    assert_eq!(ev, std::vec![Ev::Ping(b"Hello".to_vec())]);

    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(server(&pong).0, std::vec![Ev::Pong(b"Hello".to_vec())]);

    let mut bin256 = std::vec![0x82, 0x7e, 0x01, 0x00];
    bin256.extend((0..256).map(|i| i as u8));
    let (ev, _) = run(Role::Client, Config::default(), &bin256, &[], false);
    assert_eq!(
        ev,
        std::vec![Ev::Binary((0..256).map(|i| i as u8).collect())]
    );

    let mut bin64k = std::vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
    bin64k.extend(std::iter::repeat_n(0xab, 65536));
    let (ev, _) = run(Role::Client, Config::default(), &bin64k, &[], false);
    assert_eq!(ev, std::vec![Ev::Binary(std::vec![0xab; 65536])]);
}

/// A conversation that touches every event type, fragmentation and interleaved control frames.
fn conversation() -> Vec<u8> {
    conversation_with(70000)
}

/// The conversation with a last binary message of `big` bytes (70000 needs the 64-bit length).
fn conversation_with(big: usize) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend(frame(OpCode::Text, true, K, "Hello, κόσμε".as_bytes()));
    w.extend(frame(OpCode::Binary, false, Some([1, 2, 3, 4]), &[1, 2, 3]));
    w.extend(frame(
        OpCode::Ping,
        true,
        Some([9, 9, 9, 9]),
        b"are you there",
    ));
    w.extend(frame(
        OpCode::Continuation,
        false,
        Some([5, 6, 7, 8]),
        &[4; 300],
    ));
    w.extend(frame(OpCode::Continuation, true, Some([0, 0, 0, 1]), &[]));
    let text = "𝄞 split across fragments 世界".as_bytes();
    w.extend(frame(OpCode::Text, false, K, &text[..1]));
    w.extend(frame(OpCode::Continuation, false, K, &text[1..22]));
    w.extend(frame(OpCode::Pong, true, K, b""));
    w.extend(frame(OpCode::Continuation, true, K, &text[22..]));
    w.extend(frame(OpCode::Binary, true, K, &std::vec![0x5a; big]));
    w.extend(frame(OpCode::Close, true, K, b"\x03\xe8done"));
    w
}

fn expected_conversation() -> Vec<Ev> {
    expected_conversation_with(70000)
}

fn expected_conversation_with(big: usize) -> Vec<Ev> {
    let mut bin = std::vec![1, 2, 3];
    bin.extend([4; 300]);
    std::vec![
        Ev::Text("Hello, κόσμε".into()),
        Ev::Ping(b"are you there".to_vec()),
        Ev::Binary(bin),
        Ev::Pong(std::vec![]),
        Ev::Text("𝄞 split across fragments 世界".into()),
        Ev::Binary(std::vec![0x5a; big]),
        Ev::Close(Some(1000), "done".into()),
    ]
}

#[test]
fn whole_stream_decodes() {
    let wire = conversation();
    for stream in [false, true] {
        let (ev, err) = run(Role::Server, Config::default(), &wire, &[], stream);
        assert_eq!(err, None);
        assert_eq!(ev, expected_conversation());
    }
}

#[test]
fn every_split_point_yields_the_same_events() {
    // Every cut of a conversation with a 2-byte-length final frame, plus cuts all around the
    // headers and through the payload of the 64-bit-length one.
    let wire = conversation_with(1000);
    let expect = expected_conversation_with(1000);
    for cut in 0..=wire.len() {
        for stream in [false, true] {
            let (ev, err) = run(Role::Server, Config::default(), &wire, &[cut], stream);
            assert_eq!((&ev, err), (&expect, None), "cut {cut} stream {stream}");
        }
    }
    let wire = conversation();
    let expect = expected_conversation();
    // The big frame's 14-byte header, then its payload, then the 12-byte close frame.
    let tail = wire.len() - 12 - 70000 - 14;
    for cut in (tail - 20..tail + 40).chain((tail..wire.len()).step_by(997)) {
        for stream in [false, true] {
            let (ev, err) = run(Role::Server, Config::default(), &wire, &[cut], stream);
            assert_eq!((&ev, err), (&expect, None), "cut {cut} stream {stream}");
        }
    }
}

#[test]
fn byte_at_a_time_yields_the_same_events() {
    let wire = conversation();
    let cuts: Vec<usize> = (1..wire.len()).collect();
    for stream in [false, true] {
        let (ev, err) = run(Role::Server, Config::default(), &wire, &cuts, stream);
        assert_eq!(
            (ev, err),
            (expected_conversation(), None),
            "stream {stream}"
        );
    }
}

#[test]
fn every_prefix_of_a_frame_is_partial() {
    let f = frame(OpCode::Binary, true, K, &[7; 200]);
    for len in 0..f.len() {
        let mut dec = Decoder::new(Role::Server, Config::default());
        let mut buf = f[..len].to_vec();
        assert!(dec.decode(&mut buf).unwrap().is_partial(), "prefix {len}");
    }
}

#[test]
fn streaming_a_large_message_through_a_small_buffer() {
    // A 1 MiB message through a 4 KiB window: the caller never holds more than 4 KiB.
    let payload: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i * 7) as u8).collect();
    let wire = frame(OpCode::Binary, true, K, &payload);
    let mut dec = Decoder::new(Role::Server, Config::default());
    let mut window: Vec<u8> = Vec::new();
    let mut got = Vec::new();
    let mut fed = 0;
    let mut done = false;
    while !done {
        let take = (4096 - window.len()).min(wire.len() - fed);
        window.extend_from_slice(&wire[fed..fed + take]);
        fed += take;
        while let Status::Complete(f) = dec.decode_streaming(&mut window).unwrap() {
            let used = f.wire_len();
            let Event::Data(d) = f.event else { panic!() };
            got.extend_from_slice(d.payload);
            done = d.message_fin;
            window.drain(..used);
        }
        assert!(window.len() < 4096);
    }
    assert_eq!(got, payload);
}

#[test]
fn protocol_violations_map_to_their_close_codes() {
    use Error::*;
    let cases: Vec<(&str, Vec<u8>, Error)> = std::vec![
        ("rsv1", raw(0xc2, b"x", K), ReservedBits),
        ("rsv2", raw(0xa2, b"x", K), ReservedBits),
        ("rsv3", raw(0x92, b"x", K), ReservedBits),
        ("opcode 3", raw(0x83, b"", K), ReservedOpcode(3)),
        ("opcode 0xb", raw(0x8b, b"", K), ReservedOpcode(0xb)),
        (
            "unmasked",
            frame(OpCode::Text, true, None, b"x"),
            UnmaskedFrame
        ),
        ("ping 126", raw(0x89, &[0; 126], K), ControlFrameTooLong),
        ("fragmented ping", raw(0x09, b"", K), FragmentedControlFrame),
        (
            "continuation first",
            frame(OpCode::Continuation, true, K, b"x"),
            UnexpectedContinuation
        ),
        ("close 1 byte", raw(0x88, b"\x03", K), InvalidClosePayload),
        (
            "close 1005",
            raw(0x88, b"\x03\xed", K),
            InvalidCloseCode(1005)
        ),
        (
            "close 999",
            raw(0x88, b"\x03\xe7", K),
            InvalidCloseCode(999)
        ),
        (
            "close 1016",
            raw(0x88, b"\x03\xf8", K),
            InvalidCloseCode(1016)
        ),
        (
            "close 5000",
            raw(0x88, b"\x13\x88", K),
            InvalidCloseCode(5000)
        ),
        (
            "close reason utf8",
            raw(0x88, b"\x03\xe8\xff", K),
            InvalidUtf8
        ),
        (
            "text utf8",
            frame(OpCode::Text, true, K, b"\xce\xba\xff"),
            InvalidUtf8
        ),
        (
            "text ends mid char",
            frame(OpCode::Text, true, K, b"\xe2\x82"),
            InvalidUtf8
        ),
        (
            "length top bit",
            std::vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            InvalidLength
        ),
    ];
    for (name, wire, expect) in cases {
        let (_, err) = server(&wire);
        assert_eq!(err, Some(expect), "{name}");
        let code = expect.close_code();
        let want = match expect {
            InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        };
        assert_eq!(code, want, "{name}");
    }
}

#[test]
fn fragmentation_rules() {
    let mut w = frame(OpCode::Text, false, K, b"a");
    w.extend(frame(OpCode::Binary, true, K, b"b"));
    assert_eq!(server(&w).1, Some(Error::ExpectedContinuation));

    let mut w = frame(OpCode::Text, true, K, b"a");
    w.extend(frame(OpCode::Continuation, true, K, b"b"));
    let (ev, err) = server(&w);
    assert_eq!((ev.len(), err), (1, Some(Error::UnexpectedContinuation)));
}

#[test]
fn client_role_rejects_masked_frames() {
    let w = frame(OpCode::Text, true, K, b"x");
    let (_, err) = run(Role::Client, Config::default(), &w, &[], false);
    assert_eq!(err, Some(Error::MaskedFrame));
}

#[test]
fn rsv1_only_with_compression_and_only_on_first_data_frame() {
    let config = Config::new().compression(true);
    let (ev, err) = run(Role::Server, config, &raw(0xc2, b"zz", K), &[], false);
    assert_eq!((ev, err), (std::vec![Ev::Binary(b"zz".to_vec())], None));
    // Compressed text is not UTF-8-checked by the decoder (the inflated text is).
    let mut w = raw(0xc1, b"\xff", K);
    w[0] = 0xc1;
    assert_eq!(run(Role::Server, config, &w, &[], false).1, None);
    // RSV1 on a control frame or a continuation stays illegal.
    assert_eq!(
        run(Role::Server, config, &raw(0xc9, b"", K), &[], false).1,
        Some(Error::ReservedBits)
    );
    let mut w = raw(0x42, b"a", K); // rsv1, no fin, binary
    w.extend(raw(0xc0, b"b", K)); // rsv1 on continuation
    assert_eq!(
        run(Role::Server, config, &w, &[], false).1,
        Some(Error::ReservedBits)
    );
}

#[test]
fn limits_are_checked_on_the_header_before_payload() {
    let config = Config::new().max_frame(1000).max_message(1500);
    // Only the header of an over-long frame has arrived: the error comes at once.
    let w = frame(OpCode::Binary, true, K, &[0; 1001]);
    let mut dec = Decoder::new(Role::Server, config);
    let mut header = w[..8].to_vec();
    assert_eq!(dec.decode(&mut header), Err(Error::FrameTooLarge));
    assert_eq!(
        Error::FrameTooLarge.close_code(),
        CloseCode::MESSAGE_TOO_BIG
    );

    let mut w = frame(OpCode::Binary, false, K, &[0; 1000]);
    let second = frame(OpCode::Continuation, true, K, &[0; 501]);
    w.extend_from_slice(&second[..8]);
    let (ev, err) = run(Role::Server, config, &w, &[], false);
    assert_eq!((ev.len(), err), (0, Some(Error::MessageTooLarge)));

    // Exactly at the limit is fine; control frames do not count towards it.
    let mut w = frame(OpCode::Binary, false, K, &[0; 1000]);
    w.extend(frame(OpCode::Ping, true, K, &[0; 125]));
    w.extend(frame(OpCode::Continuation, true, K, &[0; 500]));
    let (ev, err) = run(Role::Server, config, &w, &[], false);
    assert_eq!((ev.len(), err), (2, None));
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    // Autobahn 6.4.3: one text frame whose payload arrives in chops; the invalid byte is in the
    // second chop and the rest never needs to arrive.
    let text =
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64";
    let w = frame(OpCode::Text, true, K, text);
    for stream in [false, true] {
        let mut dec = Decoder::new(Role::Server, Config::default());
        let header = 6;
        let mut buf = w[..header + 12].to_vec(); // up to and including 0xf4
        loop {
            let r = if stream {
                dec.decode_streaming(&mut buf)
            } else {
                dec.decode(&mut buf)
            };
            match r.unwrap() {
                Status::Partial { .. } => break,
                Status::Complete(f) => {
                    let n = f.wire_len();
                    buf.drain(..n);
                }
            }
        }
        buf.extend_from_slice(&w[header + 12..header + 13]); // 0x90: can never be valid after 0xf4
        let r = if stream {
            dec.decode_streaming(&mut buf)
        } else {
            dec.decode(&mut buf)
        };
        assert_eq!(r, Err(Error::InvalidUtf8), "stream {stream}");
    }
}

#[test]
fn nothing_may_follow_close_and_errors_stick() {
    let mut w = frame(OpCode::Close, true, K, b"");
    w.extend(frame(OpCode::Ping, true, K, b""));
    let (ev, err) = server(&w);
    assert_eq!(ev, std::vec![Ev::Close(None, String::new())]);
    assert_eq!(err, Some(Error::FrameAfterClose));

    let mut dec = Decoder::new(Role::Server, Config::default());
    let mut bad = raw(0x83, b"", K);
    assert_eq!(dec.decode(&mut bad), Err(Error::ReservedOpcode(3)));
    let mut good = frame(OpCode::Text, true, K, b"ok");
    assert_eq!(dec.decode(&mut good), Err(Error::ReservedOpcode(3)));
}

#[test]
fn partial_control_frame_waits_whole() {
    let w = frame(OpCode::Ping, true, K, &[1; 100]);
    let mut dec = Decoder::new(Role::Server, Config::default());
    let mut buf = w[..50].to_vec();
    assert_eq!(
        dec.decode_streaming(&mut buf),
        Ok(Status::Partial {
            needed: w.len() - 50
        })
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Msg {
        Text(String, Vec<usize>),
        Binary(Vec<u8>, Vec<usize>),
        Ping(Vec<u8>),
    }

    fn msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            (".{0,40}", proptest::collection::vec(0usize..50, 0..4))
                .prop_map(|(s, c)| Msg::Text(s, c)),
            (
                proptest::collection::vec(any::<u8>(), 0..400),
                proptest::collection::vec(0usize..400, 0..4)
            )
                .prop_map(|(b, c)| Msg::Binary(b, c)),
            proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Msg::Ping),
        ]
    }

    /// Encodes the messages, fragmenting at the given cut points, masked with `key`.
    fn encode(msgs: &[Msg], key: Option<[u8; 4]>) -> (Vec<u8>, Vec<Ev>) {
        let mut wire = Vec::new();
        let mut expect = Vec::new();
        for m in msgs {
            let (op, bytes, cuts, ev) = match m {
                Msg::Text(s, c) => (
                    OpCode::Text,
                    s.as_bytes().to_vec(),
                    c,
                    Ev::Text(s.as_bytes().to_vec()),
                ),
                Msg::Binary(b, c) => (OpCode::Binary, b.clone(), c, Ev::Binary(b.clone())),
                Msg::Ping(p) => {
                    wire.extend(frame(OpCode::Ping, true, key, p));
                    expect.push(Ev::Ping(p.clone()));
                    continue;
                }
            };
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(bytes.len());
            let mut start = 0;
            for (i, &end) in cuts.iter().enumerate() {
                let op = if i == 0 { op } else { OpCode::Continuation };
                wire.extend(frame(op, i + 1 == cuts.len(), key, &bytes[start..end]));
                start = end;
            }
            expect.push(ev);
        }
        (wire, expect)
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            msgs in proptest::collection::vec(msg(), 0..8),
            key in any::<[u8; 4]>(),
            cuts in proptest::collection::vec(0usize..4000, 0..6),
            stream in any::<bool>(),
        ) {
            for (role, key) in [(Role::Server, Some(key)), (Role::Client, None)] {
                let (wire, expect) = encode(&msgs, key);
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
                cuts.sort_unstable();
                let (ev, err) = run(role, Config::default(), &wire, &cuts, stream);
                prop_assert_eq!(err, None);
                prop_assert_eq!(ev, expect.clone());
            }
        }

        #[test]
        fn fast_and_general_paths_agree_on_small_frames(
            frames in proptest::collection::vec(
                (
                    prop_oneof![Just(0x81u8), Just(0x82), Just(0x01), Just(0x80), Just(0x89), Just(0xc1), any::<u8>()],
                    prop_oneof![Just(true), Just(true), Just(false)],
                    prop_oneof![
                        ".{0,30}".prop_map(String::into_bytes),
                        proptest::collection::vec(any::<u8>(), 0..=125),
                    ],
                ),
                1..12,
            ),
            key in any::<[u8; 4]>(),
        ) {
            // Decoding the whole buffer takes the single-frame fast path where it can; byte by
            // byte it never can. Events and errors must be the same.
            let mut wire = Vec::new();
            for (b0, masked, payload) in &frames {
                let mut f = frame(OpCode::Binary, true, masked.then_some(key), payload);
                f[0] = *b0;
                wire.extend(f);
            }
            let cuts: Vec<usize> = (1..wire.len()).collect();
            for role in [Role::Server, Role::Client] {
                let whole = run(role, Config::default(), &wire, &[], false);
                let split = run(role, Config::default(), &wire, &cuts, false);
                prop_assert_eq!(&whole, &split);
                let limited = Config::new().max_message(20);
                prop_assert_eq!(run(role, limited, &wire, &[], true), run(role, limited, &wire, &cuts, true));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_splits_agree(
            wire in proptest::collection::vec(any::<u8>(), 0..300),
            cut in 0usize..300,
        ) {
            let cut = cut % (wire.len() + 1);
            let whole = run(Role::Server, Config::default(), &wire, &[], false);
            let split = run(Role::Server, Config::default(), &wire, &[cut], false);
            prop_assert_eq!(whole, split);
        }
    }
}
