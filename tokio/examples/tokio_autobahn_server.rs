//! An Autobahn|Testsuite echo server on the tokio stream (a current-thread runtime): every
//! message echoed, permessage-deflate with context takeover, messages up to 64 MiB.
//!
//! ```text
//! cargo run --release -p sockeye-tokio --example tokio_autobahn_server -- 127.0.0.1:9001
//! ```
//!
//! `scripts/autobahn-ci.sh` runs it under `wstest -m fuzzingclient` and compares the reports
//! with `autobahn/sockeye-tokio.expected.json`.

use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::{Compression, Config};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let config = Config::new()
        .max_message(Some(64 << 20))
        .compression(Compression::ContextTakeover)
        .insecure_skip_origin_check();
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let config = config.clone();
        tokio::spawn(async move {
            let Ok(mut ws) = sockeye_tokio::accept(tcp, &config).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}
