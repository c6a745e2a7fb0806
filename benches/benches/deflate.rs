//! Criterion benchmarks of permessage-deflate: sockeye's compression (flate2 on zlib-rs) against
//! miniz_oxide, the other pure-Rust deflate, doing the same per-message work in the same run.
//!
//! ```text
//! taskset -c 1 cargo bench -p sockeye-benches --bench deflate
//! ```
//!
//! - `deflate-compress/*` and `deflate-inflate/*`: a stream of 1 KiB JSON-like messages (64
//!   different ones in turn) and of 64 KiB text messages, each compressed (or inflated) as one
//!   permessage-deflate message: raw deflate, a sync flush, the `00 00 ff ff` tail removed (or
//!   appended), with context takeover (the engine carries on) and without (reset per message).
//!   Throughput is in uncompressed bytes. The compressed sizes are printed once per input.
//! - `deflate-park/*`: what idle release costs: inflating a 1 KiB message on an inflater that
//!   was given back to the pool and is rebuilt from the 32 KiB history.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, compress as miniz_compress, create_comp_flags_from_zip_params,
};
use miniz_oxide::inflate::stream::{InflateState, inflate as miniz_inflate};
use miniz_oxide::{DataFormat, MZFlush};
use sockeye_codec::Role;
use sockeye_codec::deflate::{DeflateConfig, PerMessageDeflate, Pool, negotiate};

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// 64 JSON-like messages of about 1 KiB: the same keys, different values.
fn json_messages() -> Vec<Vec<u8>> {
    (0..64u32)
        .map(|i| {
            let mut s = String::from("{\"type\":\"orderbook\",\"venue\":\"sockeye\",\"levels\":[");
            let mut x = i.wrapping_mul(2_654_435_761);
            while s.len() < 1000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                s.push_str(&format!(
                    "{{\"price\":{}.{:02},\"size\":{},\"orders\":{}}},",
                    100 + x % 50,
                    x % 100,
                    x % 10_000,
                    x % 7
                ));
            }
            s.push_str(&format!("{{}}],\"seq\":{i}}}"));
            s.into_bytes()
        })
        .collect()
}

/// 4 messages of 64 KiB of English-like text.
fn text_messages() -> Vec<Vec<u8>> {
    const WORDS: [&str; 24] = [
        "the", "socket", "frame", "message", "server", "client", "compress", "window", "of", "and",
        "to", "stream", "a", "deflate", "history", "every", "byte", "sent", "once", "on", "salmon",
        "river", "upstream", "quickly",
    ];
    (0..4u32)
        .map(|i| {
            let mut x = 0x9e37_79b9u32 ^ i;
            let mut s = String::new();
            while s.len() < 64 << 10 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                s.push_str(WORDS[x as usize % WORDS.len()]);
                s.push(if x.is_multiple_of(11) { '.' } else { ' ' });
            }
            s.truncate(64 << 10);
            s.into_bytes()
        })
        .collect()
}

fn sockeye_pair(takeover: bool, level: u8) -> (PerMessageDeflate, PerMessageDeflate) {
    let mut c = DeflateConfig::new().level(level);
    if !takeover {
        c = c.no_context_takeover();
    }
    let a = negotiate(["permessage-deflate"], &c).expect("accepted");
    (
        PerMessageDeflate::new(Role::Server, &a, &c),
        PerMessageDeflate::new(Role::Client, &a, &c),
    )
}

/// One permessage-deflate message with miniz_oxide: a sync flush, the tail removed.
fn miniz_message(c: &mut CompressorOxide, msg: &[u8], out: &mut Vec<u8>, takeover: bool) {
    if !takeover {
        c.reset();
    }
    out.clear();
    out.resize(msg.len() + msg.len() / 8 + 64, 0);
    let (_, _, written) = miniz_compress(c, msg, out, TDEFLFlush::Sync);
    out.truncate(written.saturating_sub(TAIL.len()));
}

fn miniz_compressor(level: u8) -> CompressorOxide {
    CompressorOxide::new(create_comp_flags_from_zip_params(i32::from(level), -15, 0))
}

fn compress(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate-compress");
    for (input, msgs) in [
        ("json-1KiB", json_messages()),
        ("text-64KiB", text_messages()),
    ] {
        let bytes: usize = msgs.iter().map(Vec::len).sum::<usize>() / msgs.len();
        g.throughput(Throughput::Bytes(bytes as u64));
        for level in [1u8, 6] {
            for takeover in [true, false] {
                let mode = if takeover { "takeover" } else { "no-takeover" };
                let mut pool = Pool::default();
                let (mut server, _) = sockeye_pair(takeover, level);
                let mut out = Vec::with_capacity(128 << 10);
                let mut sizes = [0usize; 2];
                for m in &msgs {
                    out.clear();
                    server.compress(m, &mut out, &mut pool);
                    sizes[0] += out.len();
                }
                let mut i = 0;
                g.bench_function(
                    BenchmarkId::new(format!("zlib-rs-L{level}-{mode}"), input),
                    |b| {
                        b.iter(|| {
                            out.clear();
                            server.compress(black_box(&msgs[i % msgs.len()]), &mut out, &mut pool);
                            i += 1;
                            out.len()
                        })
                    },
                );
                let mut mz = miniz_compressor(level);
                for m in &msgs {
                    miniz_message(&mut mz, m, &mut out, takeover);
                    sizes[1] += out.len();
                }
                let mut i = 0;
                g.bench_function(
                    BenchmarkId::new(format!("miniz-L{level}-{mode}"), input),
                    |b| {
                        b.iter(|| {
                            miniz_message(
                                &mut mz,
                                black_box(&msgs[i % msgs.len()]),
                                &mut out,
                                takeover,
                            );
                            i += 1;
                            out.len()
                        })
                    },
                );
                let total: usize = msgs.iter().map(Vec::len).sum();
                eprintln!(
                    "deflate-size {input} L{level} {mode}: zlib-rs {:.3}, miniz {:.3} of the input",
                    sizes[0] as f64 / total as f64,
                    sizes[1] as f64 / total as f64
                );
            }
        }
    }
    g.finish();
}

fn inflate(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate-inflate");
    for (input, msgs) in [
        ("json-1KiB", json_messages()),
        ("text-64KiB", text_messages()),
    ] {
        let bytes: usize = msgs.iter().map(Vec::len).sum::<usize>() / msgs.len();
        g.throughput(Throughput::Bytes(bytes as u64));
        for takeover in [true, false] {
            let mode = if takeover { "takeover" } else { "no-takeover" };
            let mut pool = Pool::default();
            // One full pass of compressed messages; the inflaters replay it in a loop, each pass
            // on a fresh inflater so that takeover references stay valid.
            let (mut server, _) = sockeye_pair(takeover, 1);
            let wire: Vec<Vec<u8>> = msgs
                .iter()
                .map(|m| {
                    let mut w = Vec::new();
                    server.compress(m, &mut w, &mut pool);
                    w
                })
                .collect();
            let mut out = Vec::with_capacity(128 << 10);
            let (mut client, mut i) = (sockeye_pair(takeover, 1).1, 0);
            g.bench_function(BenchmarkId::new(format!("zlib-rs-{mode}"), input), |b| {
                b.iter(|| {
                    if i % wire.len() == 0 {
                        client = sockeye_pair(takeover, 1).1;
                    }
                    out.clear();
                    client
                        .decompress(
                            black_box(&wire[i % wire.len()]),
                            true,
                            &mut out,
                            1 << 20,
                            &mut pool,
                        )
                        .expect("valid");
                    i += 1;
                    out.len()
                })
            });
            let mut st = InflateState::new_boxed(DataFormat::Raw);
            let mut framed = Vec::new();
            let mut i = 0;
            g.bench_function(BenchmarkId::new(format!("miniz-{mode}"), input), |b| {
                b.iter(|| {
                    if i % wire.len() == 0 || !takeover {
                        st.reset(DataFormat::Raw);
                    }
                    framed.clear();
                    framed.extend_from_slice(&wire[i % wire.len()]);
                    framed.extend_from_slice(&TAIL);
                    out.clear();
                    out.resize(128 << 10, 0);
                    let r = miniz_inflate(&mut st, black_box(&framed), &mut out, MZFlush::Sync);
                    assert!(r.status.is_ok());
                    i += 1;
                    r.bytes_written
                })
            });
        }
    }
    g.finish();
}

fn park(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate-park");
    let msgs = json_messages();
    g.throughput(Throughput::Bytes(msgs[0].len() as u64));
    let c_ = DeflateConfig::new();
    let a = negotiate(["permessage-deflate"], &c_).expect("accepted");
    let mut pool = Pool::default();
    let mut sender = PerMessageDeflate::new(Role::Client, &a, &c_);
    let mut receiver = PerMessageDeflate::new(Role::Server, &a, &c_).with_idle_release();
    let mut out = Vec::with_capacity(4096);
    // Fill the history (32 KiB) first.
    let mut i = 0;
    let mut next = |sender: &mut PerMessageDeflate, pool: &mut Pool| {
        let mut w = Vec::new();
        sender.compress(&msgs[i % msgs.len()], &mut w, pool);
        i += 1;
        w
    };
    for _ in 0..64 {
        let w = next(&mut sender, &mut pool);
        out.clear();
        receiver
            .decompress(&w, true, &mut out, 1 << 20, &mut pool)
            .expect("valid");
    }
    for parked in [false, true] {
        let name = if parked {
            "parked-each-message"
        } else {
            "attached"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let w = next(&mut sender, &mut pool);
                if parked {
                    receiver.park(&mut pool);
                }
                out.clear();
                receiver
                    .decompress(black_box(&w), true, &mut out, 1 << 20, &mut pool)
                    .expect("valid");
                out.len()
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = compress, inflate, park
}
criterion_main!(benches);
