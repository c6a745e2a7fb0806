//! A fixed decode workload for instruction-count profiling, which is repeatable on a noisy
//! machine where wall-clock time is not:
//!
//! ```text
//! cargo build --profile profiling -p sockeye-benches --example profile_decode
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/profiling/examples/profile_decode 16 10000 20
//! callgrind_annotate /tmp/cg.out | head -30
//! ```
//!
//! Arguments: payload size, frames per buffer, rounds. Prints the frames decoded.

use sockeye_codec::{Config, Decoder, Event, OpCode, Role, Status, encode_frame};

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let size = args.next().unwrap_or(16);
    let count = args.next().unwrap_or(10_000);
    let rounds = args.next().unwrap_or(20);
    let payload = vec![0x42u8; size];
    let mut wire = vec![0u8; count * (size + 14)];
    let mut n = 0;
    for _ in 0..count {
        n += encode_frame(
            &mut wire[n..],
            OpCode::Binary,
            true,
            Some([1, 2, 3, 4]),
            &payload,
        )
        .expect("buffer sized for every frame");
    }
    wire.truncate(n);
    let mut frames = 0usize;
    for _ in 0..rounds {
        let mut decoder = Decoder::new(Role::Server, Config::default());
        let mut at = 0;
        while let Ok(Status::Complete(frame)) = decoder.decode(&mut wire[at..]) {
            at += frame.wire_len();
            if let Event::Data(d) = frame.event {
                std::hint::black_box(d.payload);
                frames += 1;
            }
        }
    }
    println!("{frames} frames");
}
