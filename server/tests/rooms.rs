//! Rooms: in broadcast mode the URL path names the room; messages reach their room's members
//! on every worker, each publisher's in order, and nobody else; limits refuse clearly; rooms
//! disappear with their members.

use std::time::{Duration, Instant};

use sockeye_server::client::{self, Conn, DialOptions, Error, Message};
use sockeye_server::{Broadcast, CloseCode, Config, Server};

fn config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap()).workers(2)
}

fn dial(server: &Server, path: &str) -> Conn {
    let mut c = client::dial(
        &format!("ws://{}{path}", server.local_addr()),
        &DialOptions::new(),
    )
    .unwrap();
    c.set_read_deadline(Some(Instant::now() + Duration::from_secs(20)));
    c
}

fn text(c: &mut Conn) -> String {
    match c.read().unwrap() {
        Message::Text(t) => t,
        m => panic!("expected text, got {m:?}"),
    }
}

/// Waits (bounded) until the room gauge of the server's metrics reads `n`.
fn rooms_become(server: &Server, n: u64) {
    let want = format!("sockeye_rooms {n}\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.metrics().contains(&want) {
        assert!(Instant::now() < deadline, "{}", server.metrics());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens `n` members of `path`, and waits until every one of them is in its room (a message
/// published in the room reaches them all), so that no later message can overtake a join.
fn members(server: &Server, path: &str, n: usize) -> Vec<Conn> {
    let mut v: Vec<Conn> = (0..n).map(|_| dial(server, path)).collect();
    let probe = format!("probe {path}");
    v[0].write_text(&probe).unwrap();
    for c in &mut v {
        while text(c) != probe {}
    }
    v
}

#[test]
fn each_path_is_a_room_and_messages_stay_in_it() {
    let server = Server::start(config(), |_| Broadcast).unwrap();
    // Members on both workers (the kernel spreads the accepts).
    let mut lobby = members(&server, "/chat/lobby", 6);
    let mut dev = members(&server, "/chat/dev?user=ana", 4);
    rooms_become(&server, 2);
    // Two publishers in the lobby, one in dev, interleaved.
    for i in 0..50 {
        lobby[0].write_text(&format!("lobby a {i}")).unwrap();
        lobby[1].write_text(&format!("lobby b {i}")).unwrap();
        dev[0].write_text(&format!("dev {i}")).unwrap();
    }
    lobby[0].write_text("lobby a end").unwrap();
    lobby[1].write_text("lobby b end").unwrap();
    dev[0].write_text("dev end").unwrap();
    for (room, conns, publishers) in [
        ("lobby", &mut lobby, &["lobby a", "lobby b"][..]),
        ("dev", &mut dev, &["dev"][..]),
    ] {
        for (m, c) in conns.iter_mut().enumerate() {
            let mut next = vec![0usize; publishers.len()];
            let mut ended = 0;
            while ended < publishers.len() {
                let t = text(c);
                assert!(t.starts_with(room), "member {m} of {room} got {t:?}");
                let (p, n) = t.rsplit_once(' ').unwrap();
                let who = publishers.iter().position(|x| *x == p).unwrap();
                if n == "end" {
                    assert_eq!(
                        next[who], 50,
                        "{room} member {m}: all of {p} before its end"
                    );
                    ended += 1;
                } else {
                    assert_eq!(n.parse::<usize>().unwrap(), next[who], "{room} {m}: order");
                    next[who] += 1;
                }
            }
        }
    }
    // The rooms go away with their members.
    for c in lobby.iter_mut().chain(dev.iter_mut()) {
        c.close(CloseCode::NORMAL, "").unwrap();
    }
    rooms_become(&server, 0);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn room_limits_refuse_with_clear_close_codes() {
    let config = config().max_rooms(2).max_room_name(16);
    let server = Server::start(config, |_| Broadcast).unwrap();
    let expect_close = |path: &str, code: u16, reason: &str| {
        let mut c = dial(&server, path);
        match c.read() {
            Err(e @ Error::Closed { .. }) => {
                assert_eq!(e.close_code(), Some(CloseCode(code)), "{path}: {e}");
                assert!(e.to_string().contains(reason), "{path}: {e}");
            }
            other => panic!("{path}: expected a close, got {other:?}"),
        }
    };
    expect_close("/a-name-longer-than-16", 1008, "room name over 16 bytes");
    let mut one = members(&server, "/one", 2);
    let mut two = members(&server, "/two", 1);
    expect_close("/three", 1013, "room limit (2) reached");
    // Joining an existing room is not limited.
    let more = members(&server, "/one", 1);
    for c in &mut one {
        assert_eq!(
            text(c),
            "probe /one",
            "the newcomer's probe reaches the room"
        );
    }
    more[0].write_text("still fine").unwrap();
    assert_eq!(text(&mut one[0]), "still fine");
    assert_eq!(text(&mut one[1]), "still fine");
    // Once a room empties, its place is free for another.
    two[0].close(CloseCode::NORMAL, "").unwrap();
    rooms_become(&server, 1);
    let mut three = members(&server, "/three", 1);
    three[0].write_text("hello three").unwrap();
    assert_eq!(text(&mut three[0]), "hello three");
    // ... and nothing published in /three reached /one.
    one[1].write_text("one again").unwrap();
    assert_eq!(text(&mut one[1]), "one again");
    drop((one, more, three));
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn rooms_do_not_leak_after_churn() {
    let server = Server::start(config(), |_| Broadcast).unwrap();
    let mut keep = members(&server, "/steady", 2);
    for round in 0..10 {
        let mut conns: Vec<Conn> = (0..40)
            .map(|i| dial(&server, &format!("/churn/{}", (i * 7 + round) % 13)))
            .collect();
        // Half close cleanly, half just drop their sockets.
        for (i, c) in conns.iter_mut().enumerate() {
            if i % 2 == 0 {
                c.close(CloseCode::NORMAL, "").unwrap();
            }
        }
        drop(conns);
    }
    rooms_become(&server, 1);
    // The steady room still works, and a reused room slot carries no old members.
    keep[0].write_text("after churn").unwrap();
    assert_eq!(text(&mut keep[1]), "after churn");
    let mut fresh = members(&server, "/churn/3", 1);
    fresh[0].write_text("alone").unwrap();
    assert_eq!(text(&mut fresh[0]), "alone");
    drop((keep, fresh));
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn other_threads_publish_to_a_room_by_name() {
    let server = Server::start(config(), |_| Broadcast).unwrap();
    let mut news = members(&server, "/news", 3);
    let mut other = members(&server, "/other", 1);
    let poster = server.poster();
    let from_thread = std::thread::spawn(move || {
        let msg = sockeye_server::PreparedMessage::text("extra! extra!");
        (
            poster.publish("/news", &msg),
            poster.publish("/nobody-here", &msg),
        )
    });
    assert_eq!(from_thread.join().unwrap(), (true, false));
    for c in &mut news {
        assert_eq!(text(c), "extra! extra!");
    }
    // Not in /other: its next message is its own.
    other[0].write_text("mine").unwrap();
    assert_eq!(text(&mut other[0]), "mine");
    drop((news, other));
    server.shutdown();
    server.join().unwrap();
}
