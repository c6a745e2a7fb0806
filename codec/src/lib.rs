//! # sockeye-codec
//!
//! A sans-IO WebSocket codec (RFC 6455): it never reads a socket, never allocates and never copies
//! a payload on the decode path. Bring bytes from any transport (a blocking socket, tokio, an
//! io_uring ring, a UART on a board with no allocator); get events that borrow your buffer, with
//! payloads unmasked in place.
//!
//! - [`Decoder`]: incremental frame decoding for either [`Role`], enforcing every receive rule of
//!   RFC 6455 (reserved bits and opcodes, masking, control frames, fragmentation, close codes,
//!   UTF-8 that fails fast across fragments) and size limits checked on the header.
//! - [`Header`], [`encode_frame`], [`encode_close`]: encoding into caller memory.
//! - [`apply_mask`]: in-place masking with AVX2/SSE2/NEON kernels chosen at run time.
//! - [`Utf8Validator`]: incremental UTF-8 validation with a ≤3-byte carry.
//! - [`handshake`]: the HTTP upgrade for servers and clients, with origin and subprotocol policy.
//! - `deflate` (feature): permessage-deflate negotiation and compression.
//!
//! ## The drive loop
//!
//! ```
//! use sockeye_codec::{Config, Decoder, Event, Role, Status, encode_frame, OpCode};
//!
//! // Bytes as a client would send them: a masked text frame, then a masked close (1000).
//! let mut wire = [0u8; 64];
//! let mut n = encode_frame(&mut wire, OpCode::Text, true, Some([1, 2, 3, 4]), b"hi").unwrap();
//! n += encode_frame(&mut wire[n..], OpCode::Close, true, Some([5, 6, 7, 8]), &[0x03, 0xe8])
//!     .unwrap();
//!
//! let mut decoder = Decoder::new(Role::Server, Config::default());
//! let mut buf = &mut wire[..n]; // in a real loop: the bytes received and not yet consumed
//! loop {
//!     match decoder.decode(buf) {
//!         Ok(Status::Complete(frame)) => {
//!             let used = frame.wire_len();
//!             match frame.event {
//!                 Event::Data(data) => assert_eq!(data.payload, b"hi"),
//!                 Event::Close(close) => {
//!                     assert_eq!(close.code.unwrap().0, 1000);
//!                     break; // answer with a close frame, then close the socket
//!                 }
//!                 Event::Ping(_) | Event::Pong(_) => {}
//!             }
//!             buf = &mut buf[used..]; // the caller MUST discard exactly `wire_len` bytes
//!         }
//!         Ok(Status::Partial { .. }) => break, // read more bytes, then call again
//!         Err(e) => {
//!             let _code = e.close_code(); // send a close frame with this code, then close
//!             break;
//!         }
//!     }
//! }
//! ```
//!
//! ## Features
//!
//! - `std` (default): run-time CPU detection for the masking kernels. Implies `alloc`.
//! - `alloc`: the connection [`session`] (message assembly, streaming, inflated text) and owned
//!   helpers.
//! - `deflate`: permessage-deflate (RFC 7692) in the `deflate` module: negotiation for both
//!   roles and pooled compression state, on `flate2` with the pure-Rust `zlib-rs` backend.
//!   Implies `alloc`; flate2 needs a target with `std`.
//!
//! Without default features the crate is `#![no_std]` and picks masking kernels from the
//! compile-time target features. `--cfg sockeye_disable_simd` forces the scalar kernel.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "std", test))]
extern crate std;

#[cfg(feature = "alloc")]
extern crate alloc;

mod close;
mod decoder;
#[cfg(feature = "deflate")]
pub mod deflate;
mod encoder;
mod error;
mod frame;
pub mod handshake;
mod mask;
#[cfg(feature = "alloc")]
pub mod session;
mod utf8;

pub use close::{Close, CloseCode, MAX_REASON_LEN};
pub use decoder::{Config, DEFAULT_MAX_MESSAGE, Data, DataKind, Decoder, Event, Frame, Role};
pub use encoder::{encode_close, encode_frame};
pub use error::{EncodeError, Error};
pub use frame::{Header, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, Status};
pub use handshake::HandshakeError;
pub use mask::{apply_mask, kernel_name};
pub use utf8::{Utf8Error, Utf8Validator};

/// Entry points for fuzz targets and benchmarks (`fuzz/`, `benches/`); not a stable API.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::mask::{kernels, mask_naive, rotate_key};
}
