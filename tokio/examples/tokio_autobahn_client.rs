//! The Autobahn|Testsuite client driver on the tokio stream: runs every case of a
//! `wstest -m fuzzingserver`, echoing what each case sends, then asks the suite to write its
//! reports.
//!
//! ```text
//! cargo run --release -p sockeye-tokio --example tokio_autobahn_client -- ws://127.0.0.1:9001
//! ```
//!
//! `scripts/autobahn-ci.sh` runs it and compares the reports with
//! `autobahn/sockeye-tokio-client.expected.json`.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::{Compression, DialOptions, Message};

const AGENT: &str = "sockeye-tokio-client";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let base = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("AUTOBAHN_URL").ok())
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let base = base.trim_end_matches('/');
    // Section 9 sends messages up to 16 MiB; compression is offered, so sections 12 and 13
    // (permessage-deflate) run too.
    let options = DialOptions::new()
        .read_limit(Some(64 << 20))
        .compression(Compression::ContextTakeover)
        .handshake_timeout(Duration::from_secs(30));

    let count = match sockeye_tokio::connect(&format!("{base}/getCaseCount"), &options).await {
        Ok(mut ws) => match ws.next().await {
            Some(Ok(Message::Text(n))) => n.trim().parse::<u32>().unwrap_or(0),
            other => {
                eprintln!("autobahn_client: no case count: {other:?}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("autobahn_client: cannot get the case count from {base}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("autobahn_client: {count} cases at {base}");
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={AGENT}");
        match sockeye_tokio::connect(&url, &options).await {
            Ok(mut ws) => {
                while let Some(Ok(msg)) = ws.next().await {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => eprintln!("autobahn_client: case {case}: connect: {e}"),
        }
    }
    let url = format!("{base}/updateReports?agent={AGENT}");
    match sockeye_tokio::connect(&url, &options).await {
        Ok(mut ws) => {
            // The suite closes once the reports are written.
            while let Some(Ok(_)) = ws.next().await {}
            eprintln!("autobahn_client: reports updated");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("autobahn_client: updateReports: {e}");
            ExitCode::FAILURE
        }
    }
}
