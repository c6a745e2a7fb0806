//! Benchmarks for sockeye. The criterion benches live in `benches/`; run them with
//! `cargo bench -p sockeye-benches`.
