//! The handshake timeout, alone in its test binary: it counts the process's open descriptors,
//! which tests running in parallel would disturb.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sockeye_server::{Config, Echo, Server};

fn config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap()).workers(2)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn handshake_timeout_really_closes_the_socket() {
    let config = config().handshake_timeout(Duration::from_millis(300));
    let server = Server::start(config, |_| Echo).unwrap();
    let addr = server.local_addr();
    let baseline = open_fds();
    let mut dribblers = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap(); // never finishes
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        dribblers.push(s);
    }
    let started = Instant::now();
    for s in &mut dribblers {
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), 0, "closed without a response");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(dribblers);
    // The server's side of every socket is closed too: back to the baseline.
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds() > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        open_fds() <= baseline,
        "{} open, baseline {baseline}",
        open_fds()
    );
    server.shutdown();
    server.join().unwrap();
}
