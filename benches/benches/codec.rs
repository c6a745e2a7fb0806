//! Criterion benchmarks of the codec, with the peers doing the same work in the same run.
//!
//! ```text
//! taskset -c 1 cargo bench -p sockeye-benches --bench codec
//! python3 scripts/codec-bench-report.py   # BENCHMARKS.md table from target/criterion
//! ```
//!
//! - `mask/*`: in-place masking at 1 KiB, 64 KiB, 1 MiB: sockeye (dispatched, and each kernel),
//!   fastwebsockets' `unmask`, a naive byte loop, and `copy_from_slice` of the same size as the
//!   memory-bandwidth yardstick. (tungstenite's masking is private, so it appears only inside its
//!   decoder below.)
//! - `utf8/*`: validation of 64 KiB ASCII and of mixed CJK text: `simdutf8::basic` one-shot,
//!   `core::str::from_utf8`, sockeye's validator one-shot and fed in 1 KiB and 16 KiB chunks,
//!   and simdutf8 called per 1 KiB piece cut at character boundaries (the floor for 1 KiB).
//! - `decode/*`: a buffer of masked binary frames decoded by a server endpoint (unmasked,
//!   validated), in sockeye, fastwebsockets (`WebSocket::read_frame`) and tungstenite
//!   (`WebSocket::read`), each reading from an in-memory stream.

use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sockeye_codec::{Config, Decoder, Event, OpCode, Role, Status, Utf8Validator, encode_frame};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in [1 << 10, 64 << 10, 1 << 20] {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0x5au8; size];
        let src = vec![0xa5u8; size];
        g.bench_function(BenchmarkId::new("sockeye", size), |b| {
            b.iter(|| sockeye_codec::apply_mask(black_box(&mut buf), KEY, 0))
        });
        for (name, kernel) in sockeye_codec::__fuzz::kernels() {
            g.bench_function(BenchmarkId::new(format!("sockeye-{name}"), size), |b| {
                b.iter(|| kernel(black_box(&mut buf), KEY))
            });
        }
        g.bench_function(BenchmarkId::new("fastwebsockets", size), |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), KEY))
        });
        g.bench_function(BenchmarkId::new("naive-loop", size), |b| {
            b.iter(|| sockeye_codec::__fuzz::mask_naive(black_box(&mut buf), KEY, 0))
        });
        g.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| black_box(&mut buf).copy_from_slice(black_box(&src)))
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    let ascii: String = "The quick brown fox jumps over the lazy dog. ".repeat(1500);
    let cjk: String = "WebSocket 协议 は双方向通信を提供します; κόσμε 😀 — ".repeat(800);
    for (name, text) in [
        ("ascii", &ascii[..64 << 10]),
        ("cjk", truncate(&cjk, 64 << 10)),
    ] {
        let bytes = text.as_bytes();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(BenchmarkId::new("simdutf8-basic", name), |b| {
            b.iter(|| simdutf8::basic::from_utf8(black_box(bytes)).is_ok())
        });
        g.bench_function(BenchmarkId::new("core-from-utf8", name), |b| {
            b.iter(|| core::str::from_utf8(black_box(bytes)).is_ok())
        });
        g.bench_function(BenchmarkId::new("sockeye-one-shot", name), |b| {
            b.iter(|| Utf8Validator::new().feed(black_box(bytes), true).is_ok())
        });
        for chunk in [1024, 16 << 10] {
            let label = format!("sockeye-incremental-{}k", chunk >> 10);
            g.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    for piece in black_box(bytes).chunks(chunk) {
                        v.feed(piece, false).unwrap();
                    }
                    v.feed(&[], true).is_ok()
                })
            });
        }
        // The floor for 1 KiB pieces: simdutf8 called once per piece, with pieces cut at
        // character boundaries so that no carry is needed.
        let pieces = char_aligned_pieces(text, 1024);
        g.bench_function(BenchmarkId::new("simdutf8-basic-per-1k-piece", name), |b| {
            b.iter(|| {
                black_box(&pieces)
                    .iter()
                    .all(|p| simdutf8::basic::from_utf8(p).is_ok())
            })
        });
    }
    g.finish();
}

/// `text` cut into pieces of about `size` bytes, each ending on a character boundary.
fn char_aligned_pieces(text: &str, size: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let piece = truncate(rest, size);
        let piece = if piece.is_empty() { rest } else { piece };
        pieces.push(piece.as_bytes());
        rest = &rest[piece.len()..];
    }
    pieces
}

/// The longest prefix of `s` of at most `n` bytes that ends on a character boundary.
fn truncate(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `count` masked binary frames of `size` bytes each, as a client sends them.
fn frames(count: usize, size: usize) -> Vec<u8> {
    let payload = vec![0x42u8; size];
    let mut out = vec![0u8; count * (size + 14)];
    let mut n = 0;
    for _ in 0..count {
        n += encode_frame(&mut out[n..], OpCode::Binary, true, Some(KEY), &payload).unwrap();
    }
    out.truncate(n);
    out
}

fn sockeye_decode(buf: &mut [u8]) -> usize {
    let mut decoder = Decoder::new(Role::Server, Config::default());
    let (mut at, mut bytes) = (0, 0);
    while let Ok(Status::Complete(frame)) = decoder.decode(&mut buf[at..]) {
        at += frame.wire_len();
        if let Event::Data(d) = frame.event {
            bytes += black_box(d.payload).len();
        }
    }
    bytes
}

/// A stream that reads from a byte slice and discards writes, for both std and tokio peers.
struct SliceStream<'a>(&'a [u8]);

impl io::Read for SliceStream<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut self.0, out)
    }
}

impl io::Write for SliceStream<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for SliceStream<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = out.remaining().min(self.0.len());
        out.put_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for SliceStream<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn tungstenite_decode(buf: &[u8]) -> usize {
    use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
    let config = WebSocketConfig::default().max_message_size(Some(16 << 20));
    let mut ws = WebSocket::from_raw_socket(SliceStream(buf), Role::Server, Some(config));
    let mut bytes = 0;
    while let Ok(msg) = ws.read() {
        bytes += black_box(msg).len();
    }
    bytes
}

fn fastwebsockets_decode(rt: &tokio::runtime::Runtime, buf: &[u8]) -> usize {
    use fastwebsockets::{Role, WebSocket};
    rt.block_on(async {
        let mut ws = WebSocket::after_handshake(SliceStream(buf), Role::Server);
        ws.set_auto_close(false);
        ws.set_auto_pong(false);
        ws.set_max_message_size(16 << 20);
        let mut bytes = 0;
        while let Ok(frame) = ws.read_frame().await {
            bytes += black_box(frame.payload).len();
        }
        bytes
    })
}

fn decode(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("decode");
    for (name, count, size) in [("16B-frames", 10_000, 16), ("64KiB-frames", 64, 64 << 10)] {
        let wire = frames(count, size);
        let mut work = wire.clone();
        // Every decoder must see every payload byte.
        assert_eq!(sockeye_decode(&mut work.clone()), count * size);
        assert_eq!(tungstenite_decode(&wire), count * size);
        assert_eq!(fastwebsockets_decode(&rt, &wire), count * size);
        if size == 16 {
            g.throughput(Throughput::Elements(count as u64));
        } else {
            g.throughput(Throughput::Bytes((count * size) as u64));
        }
        g.bench_function(BenchmarkId::new("sockeye", name), |b| {
            b.iter(|| sockeye_decode(black_box(&mut work)))
        });
        g.bench_function(BenchmarkId::new("fastwebsockets", name), |b| {
            b.iter(|| fastwebsockets_decode(&rt, black_box(&wire)))
        });
        g.bench_function(BenchmarkId::new("tungstenite", name), |b| {
            b.iter(|| tungstenite_decode(black_box(&wire)))
        });
    }
    g.finish();
}

criterion_group!(benches, mask, utf8, decode);
criterion_main!(benches);
