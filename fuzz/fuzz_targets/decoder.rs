//! The frame decoder on arbitrary bytes, for both roles, fed whole and in pieces.
//!
//! Input: byte 0 picks the role, the compression flag, a small message limit and whole-frame or
//! streaming decode; byte 1 and 2 give a split step; the rest is the wire. Oracle: no panic;
//! every `wire_len` is within the buffer; the events (data merged per message) and the error
//! are the same whether the bytes arrive whole or in pieces; errors map to 1002/1007/1009.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockeye_codec::{Config, DataKind, Decoder, Error, Event, Role, Status};

#[derive(Debug, PartialEq)]
enum Ev {
    Msg(bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

fn run(
    role: Role,
    config: Config,
    stream: bool,
    wire: &[u8],
    step: usize,
) -> (Vec<Ev>, Option<Error>) {
    let mut dec = Decoder::new(role, config);
    let (mut buf, mut events, mut msg) = (Vec::new(), Vec::new(), Vec::new());
    let mut fed = 0;
    while fed < wire.len() {
        let end = (fed + step).min(wire.len());
        buf.extend_from_slice(&wire[fed..end]);
        fed = end;
        loop {
            let have = buf.len();
            let r = if stream {
                dec.decode_streaming(&mut buf)
            } else {
                dec.decode(&mut buf)
            };
            match r {
                Err(e) => {
                    let code = e.close_code().0;
                    assert!(matches!(code, 1002 | 1007 | 1009), "{e:?} -> {code}");
                    return (events, Some(e));
                }
                Ok(Status::Partial { needed }) => {
                    assert!(needed >= 1);
                    break;
                }
                Ok(Status::Complete(f)) => {
                    let used = f.wire_len();
                    assert!(used >= 1 && used <= have, "wire_len {used} of {have}");
                    match f.event {
                        Event::Data(d) => {
                            msg.extend_from_slice(d.payload);
                            if d.message_fin {
                                let m = std::mem::take(&mut msg);
                                if d.kind == DataKind::Text && !d.compressed {
                                    assert!(std::str::from_utf8(&m).is_ok(), "text validated");
                                }
                                events.push(Ev::Msg(d.kind == DataKind::Text, m));
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

fuzz_target!(|data: &[u8]| {
    let [flags, s1, s2, wire @ ..] = data else {
        return;
    };
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let mut config = Config::new().compression(flags & 2 != 0);
    if flags & 4 != 0 {
        config = config.max_message(200).max_frame(150);
    }
    let stream = flags & 8 != 0;
    let step = usize::from(u16::from_le_bytes([*s1, *s2])) % 64 + 1;
    let whole = run(role, config, stream, wire, wire.len().max(1));
    let split = run(role, config, stream, wire, step);
    assert_eq!(whole, split);
});
