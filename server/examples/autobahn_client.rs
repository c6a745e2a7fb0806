//! The Autobahn|Testsuite client driver: runs every case of a `wstest -m fuzzingserver` with the
//! blocking client, echoing what each case sends, then asks the suite to write its reports.
//!
//! ```text
//! cargo run --release -p sockeye-server --example autobahn_client -- ws://127.0.0.1:9001
//! ```
//!
//! `scripts/autobahn-ci.sh` runs it and compares the reports with
//! `autobahn/sockeye-client.expected.json`.

use std::process::ExitCode;
use std::time::Duration;

use sockeye_server::Compression;
use sockeye_server::client::{self, DialOptions, Error, Message};

const AGENT: &str = "sockeye-client";

fn main() -> ExitCode {
    let base = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("AUTOBAHN_URL").ok())
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let base = base.trim_end_matches('/');
    // Section 9 sends messages up to 16 MiB; room to spare, but still a limit. Compression is
    // offered, so sections 12 and 13 (permessage-deflate) run too.
    let options = DialOptions::new()
        .read_limit(Some(64 << 20))
        .compression(Compression::ContextTakeover)
        .handshake_timeout(Duration::from_secs(30));

    let count = match case_count(base, &options) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("autobahn_client: cannot get the case count from {base}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("autobahn_client: {count} cases at {base}");
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={AGENT}");
        match client::dial(&url, &options) {
            Ok(conn) => echo(conn),
            Err(e) => eprintln!("autobahn_client: case {case}: dial: {e}"),
        }
    }
    let url = format!("{base}/updateReports?agent={AGENT}");
    match client::dial(&url, &options) {
        Ok(mut conn) => {
            // The suite closes once the reports are written.
            while conn.read().is_ok() {}
            eprintln!("autobahn_client: reports updated");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("autobahn_client: updateReports: {e}");
            ExitCode::FAILURE
        }
    }
}

fn case_count(base: &str, options: &DialOptions) -> Result<u32, Error> {
    let mut conn = client::dial(&format!("{base}/getCaseCount"), options)?;
    let count = match conn.read()? {
        Message::Text(t) => t.trim().parse().map_err(|_| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("case count {t:?}"),
            ))
        })?,
        Message::Binary(_) => {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "binary case count",
            )));
        }
    };
    // Drain to the suite's close.
    while conn.read().is_ok() {}
    Ok(count)
}

/// Echoes every message until the connection ends (the suite's close, or our close after a
/// protocol error, which the client sends by itself).
fn echo(mut conn: client::Conn) {
    while let Ok(msg) = conn.read() {
        if conn.write(&msg).is_err() {
            break;
        }
    }
}
