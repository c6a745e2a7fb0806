//! The axum extractor: upgrades through hyper to a sockeye stream, refusals with the right
//! status, and real clients (sockeye-tokio, tokio-tungstenite) on the upgraded connection.

use std::time::Duration;

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::axum::WebSocketUpgrade;
use sockeye_tokio::{CloseCode, Compression, Config, DialOptions, Error, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite;

const LIMIT: Duration = Duration::from_secs(10);

async fn echo(upgrade: WebSocketUpgrade) -> Response {
    let config = Config::new()
        .protocol("v1")
        .allow_origin("https://*.example.com")
        .compression(Compression::ContextTakeover);
    upgrade.config(config).on_upgrade(|mut ws| async move {
        while let Some(Ok(msg)) = ws.next().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    })
}

async fn app() -> String {
    let app = Router::new().route("/ws", get(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{addr}")
}

#[tokio::test]
async fn sockeye_client_echoes_with_compression_and_subprotocol() {
    let addr = app().await;
    let options = DialOptions::new()
        .protocol("v1")
        .compression(Compression::ContextTakeover);
    let mut ws = sockeye_tokio::connect(&format!("ws://{addr}/ws"), &options)
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("v1"));
    assert!(ws.compressed());
    let text = "over axum ".repeat(10_000);
    ws.send(Message::Text(text.clone())).await.unwrap();
    ws.send(Message::Binary(vec![9; 100_000])).await.unwrap();
    assert_eq!(
        timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap(),
        Message::Text(text)
    );
    assert_eq!(
        timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap(),
        Message::Binary(vec![9; 100_000])
    );
    timeout(LIMIT, ws.close(CloseCode::NORMAL, "done"))
        .await
        .unwrap()
        .unwrap();
    assert!(ws.ended().unwrap().clean);
}

#[tokio::test]
async fn tungstenite_client_echoes() {
    let addr = app().await;
    let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    c.send(tungstenite::Message::text("hi")).await.unwrap();
    let m = timeout(LIMIT, c.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, tungstenite::Message::text("hi"));
    c.close(None).await.unwrap();
}

#[tokio::test]
async fn refusals_have_the_right_status() {
    let addr = app().await;
    // Another site's page: 403.
    let e = sockeye_tokio::connect(
        &format!("ws://{addr}/ws"),
        &DialOptions::new().origin("https://evil.test"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Handshake {
                status: Some(403),
                ..
            }
        ),
        "{e}"
    );
    // Plain HTTP on the WebSocket route: 426 with `Upgrade: websocket`.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    timeout(LIMIT, tcp.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 426"), "{response}");
    assert!(response.contains("upgrade: websocket"), "{response}");
    // A bad key: 400.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = vec![0u8; 1024];
    let n = timeout(LIMIT, tcp.read(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(
        response[..n].starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&response[..n])
    );
}
