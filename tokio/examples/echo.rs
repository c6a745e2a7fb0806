//! The README's async quick start: an echo server on 127.0.0.1:9002 and a client that sends one
//! message to it, reads the echo and closes.

use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::{CloseCode, Config, DialOptions, Message};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), sockeye_tokio::Error> {
    // The server: accept any stream, echo every message.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9002").await?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = sockeye_tokio::accept(tcp, &Config::new()).await?;
                while let Some(msg) = ws.next().await {
                    ws.send(msg?).await?;
                }
                Ok::<_, sockeye_tokio::Error>(())
            });
        }
    });

    // The client.
    let mut ws = sockeye_tokio::connect("ws://127.0.0.1:9002/", &DialOptions::new()).await?;
    ws.send(Message::Text("hello".into())).await?;
    println!("{:?}", ws.next().await);
    ws.close(CloseCode::NORMAL, "done").await?;
    Ok(())
}
