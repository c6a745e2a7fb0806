//! `sockeye serve --engine auto` where io_uring is refused, as Docker's default seccomp profile
//! refuses it: the three io_uring syscalls fail with `EPERM` under a seccomp filter installed
//! in the child before it runs. The server must say so once, run on the portable engine, and
//! serve WebSocket connections, `/healthz` and `/metrics` all the same; `--engine uring` under
//! the same filter must fail to start with the remedy in its message.

// The filter is installed with two raw syscalls in the child between fork and exec.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// io_uring_setup, io_uring_enter, io_uring_register: the same numbers on every Linux
/// architecture (they came after the syscall tables were unified).
const IO_URING_SYSCALLS: [u32; 3] = [425, 426, 427];

/// A classic BPF program: load the syscall number; `EPERM` for the three, allow the rest.
fn filter() -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf: 0,
        k,
    };
    // seccomp_data.nr is at offset 0.
    let mut prog = vec![stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0)];
    let n = IO_URING_SYSCALLS.len() as u8;
    for (i, nr) in IO_URING_SYSCALLS.iter().enumerate() {
        // Jump to the EPERM return, which follows the ALLOW below.
        prog.push(jeq(*nr, n - i as u8));
    }
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
    ));
    prog
}

fn spawn_refusing_io_uring(args: &[&str]) -> Child {
    let prog = filter();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockeye"));
    // `auto` must decide by itself here: CI runs this suite with SOCKEYE_ENGINE=poll too.
    cmd.args(args)
        .env_remove("SOCKEYE_ENGINE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and makes only two syscalls
    // (no allocation, no lock): `prog` was built before the fork and outlives the call.
    unsafe {
        cmd.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn sockeye under the seccomp filter")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return s;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("server did not start: {e}"),
        }
    }
}

fn get(port: u16, path: &str) -> String {
    let mut s = connect(port);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn auto_runs_on_the_portable_engine_where_io_uring_is_refused() {
    let port = free_port();
    let mut child = spawn_refusing_io_uring(&[
        "serve",
        "--port",
        &port.to_string(),
        "--workers",
        "2",
        "--engine",
        "auto",
    ]);
    // A real client: echo of text and of a 1 MiB binary message, then a clean close.
    let url = format!("ws://127.0.0.1:{port}/");
    let _ = connect(port);
    let mut ws = sockeye_server::client::dial(&url, &Default::default()).expect("dial");
    ws.write_text("through the portable engine").unwrap();
    let mut buf = Vec::new();
    let kind = ws.read_into(&mut buf).unwrap();
    assert_eq!(kind, sockeye_server::client::DataKind::Text);
    assert_eq!(buf, b"through the portable engine");
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    ws.write_binary(&big).unwrap();
    buf.clear();
    ws.read_into(&mut buf).unwrap();
    assert!(buf == big, "the 1 MiB echo differs");
    ws.close(sockeye_server::CloseCode::NORMAL, "bye").unwrap();

    assert!(get(port, "/healthz").starts_with("HTTP/1.1 200 "));
    let metrics = get(port, "/metrics");
    assert!(
        metrics.contains("sockeye_engine{engine=\"poll\"} 1"),
        "{metrics}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let said = log.matches("io_uring is not available here").count();
    assert_eq!(said, 1, "the fallback is said exactly once:\n{log}");
    assert!(
        log.contains("running on the portable engine (poll)"),
        "{log}"
    );
}

#[test]
fn uring_alone_refuses_to_start_with_the_remedy() {
    let port = free_port();
    let mut child =
        spawn_refusing_io_uring(&["serve", "--port", &port.to_string(), "--engine", "uring"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "--engine uring started anyway");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!exit.success());
    let mut log = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    assert!(log.contains("io_uring is not available"), "{log}");
    assert!(log.contains("--engine poll"), "{log}");
}
