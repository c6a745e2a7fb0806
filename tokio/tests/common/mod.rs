//! What the interop tests share: an echo server on `sockeye_tokio::accept`, and a peer server
//! process that prints its port.

use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::Config;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// An echo server on `accept` with `config` for any number of connections, until the task
/// is aborted; its URL.
pub async fn echo_server(config: Config) -> (tokio::task::JoinHandle<()>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
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
    });
    (task, url)
}

/// Starts a peer server that prints its loopback port on its first line and serves until its
/// stdin closes; the process and its URL.
pub async fn peer_server(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .await
        .unwrap();
    assert!(!port.trim().is_empty(), "{cmd:?} printed no port");
    (child, format!("ws://127.0.0.1:{}/", port.trim()))
}
