use super::*;
use std::string::{String, ToString};
use std::vec::Vec;

const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

fn parse(raw: &str) -> Result<usize, HandshakeError> {
    let mut headers = [EMPTY_HEADER; 16];
    match Request::parse(raw.as_bytes(), &mut headers)? {
        Status::Complete((_, len)) => Ok(len),
        Status::Partial { .. } => panic!("partial: {raw:?}"),
    }
}

/// The RFC request with one header line replaced (or removed when `new` is empty).
fn with(line: &str, new: &str) -> String {
    let mut s = RFC_REQUEST.replace(
        &[line, "\r\n"].concat(),
        &[new, if new.is_empty() { "" } else { "\r\n" }].concat(),
    );
    if !new.is_empty() && !RFC_REQUEST.contains(line) {
        s = s.replacen("\r\n", &["\r\n", new, "\r\n"].concat(), 1);
    }
    s
}

#[test]
fn rfc_request_parses_and_is_accepted() {
    let mut headers = [EMPTY_HEADER; 16];
    let Status::Complete((req, len)) =
        Request::parse(RFC_REQUEST.as_bytes(), &mut headers).unwrap()
    else {
        panic!()
    };
    assert_eq!(len, RFC_REQUEST.len());
    assert_eq!(
        (req.path, req.host, req.key),
        ("/chat", "server.example.com", "dGhlIHNhbXBsZSBub25jZQ==")
    );
    assert_eq!(req.origin, Some("http://example.com"));
    assert_eq!(&req.protocols[..], ["chat", "superchat"]);
    assert_eq!(req.header("ORIGIN"), Some(&b"http://example.com"[..]));
    let mut out = [0u8; 256];
    let n = req
        .accept(&mut out, Some("chat"), Some("permessage-deflate"))
        .unwrap();
    let text = core::str::from_utf8(&out[..n]).unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    );
}

#[test]
fn every_prefix_is_partial() {
    for i in 0..RFC_REQUEST.len() {
        let mut headers = [EMPTY_HEADER; 16];
        let r = Request::parse(&RFC_REQUEST.as_bytes()[..i], &mut headers).unwrap();
        assert!(r.is_partial(), "prefix {i}");
    }
}

#[test]
fn header_tokens_are_case_insensitive_lists() {
    let r = with("Connection: Upgrade", "connection: keep-alive, UPGRADE");
    assert!(parse(&r.replace("Upgrade: websocket", "upgrade: WebSocket")).is_ok());
    assert!(parse(&with("Connection: Upgrade", "Connection: keep-alive")).is_err());
    // The Connection header may be repeated.
    let r = with(
        "Connection: Upgrade",
        "Connection: keep-alive\r\nConnection: upgrade",
    );
    assert!(parse(&r).is_ok());
}

#[test]
fn each_violation_gets_its_status() {
    use HandshakeError::*;
    let cases: Vec<(String, HandshakeError, u16)> = std::vec![
        (RFC_REQUEST.replace("GET", "POST"), MethodNotGet, 405),
        (
            RFC_REQUEST.replace("HTTP/1.1", "HTTP/1.0"),
            HttpVersion,
            400
        ),
        (with("Host: server.example.com", ""), MissingHost, 400),
        (with("Upgrade: websocket", ""), NotUpgrade, 426),
        (with("Connection: Upgrade", ""), NotUpgrade, 426),
        (
            with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            UnsupportedVersion,
            426
        ),
        (
            with("Sec-WebSocket-Version: 13", ""),
            UnsupportedVersion,
            426
        ),
        (
            with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", ""),
            InvalidKey,
            400
        ),
        (
            with(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZQ=="
            ),
            InvalidKey,
            400
        ),
        (
            with(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="
            ),
            InvalidKey,
            400
        ),
        (
            with(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
            ),
            InvalidKey,
            400,
        ),
        (
            with(
                "Sec-WebSocket-Protocol: chat, superchat",
                "Sec-WebSocket-Protocol: chat, a b"
            ),
            InvalidList,
            400
        ),
        ("GARBAGE\r\n\r\n".to_string(), Malformed, 400),
    ];
    for (raw, err, status) in cases {
        assert_eq!(parse(&raw), Err(err), "{raw:?}");
        assert_eq!(err.status(), status);
    }
    let many: String = (0..20).map(|i| std::format!("X-{i}: y\r\n")).collect();
    let raw = RFC_REQUEST.replacen("\r\n", &["\r\n", &many].concat(), 1);
    assert_eq!(parse(&raw), Err(TooManyHeaders));
    assert_eq!(TooManyHeaders.status(), 431);
    let protos: String = (0..=MAX_PROTOCOLS).map(|i| std::format!("p{i},")).collect();
    let raw = with(
        "Sec-WebSocket-Protocol: chat, superchat",
        &["Sec-WebSocket-Protocol: ", &protos].concat(),
    );
    assert_eq!(parse(&raw), Err(InvalidList));
}

#[test]
fn error_responses_are_complete_http() {
    for (status, first) in [
        (400, "HTTP/1.1 400 Bad Request"),
        (403, "HTTP/1.1 403 Forbidden"),
        (431, "HTTP/1.1 431 Request Header Fields Too Large"),
    ] {
        let mut buf = [0u8; 300];
        let n = write_error_response(&mut buf, status, "nope").unwrap();
        let text = core::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with(first), "{text}");
        assert!(text.contains("\r\nContent-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nnope\n"));
        let mut small = [0u8; 20];
        assert_eq!(
            write_error_response(&mut small, status, "nope"),
            Err(EncodeError::InsufficientSize { required: n })
        );
        assert_eq!(small, [0; 20]);
    }
    let mut buf = [0u8; 300];
    let n = write_error_response(&mut buf, 405, "GET only").unwrap();
    assert!(
        core::str::from_utf8(&buf[..n])
            .unwrap()
            .contains("\r\nAllow: GET\r\n")
    );
}

#[test]
fn response_values_cannot_inject_headers() {
    let mut buf = [0u8; 300];
    let key = b"dGhlIHNhbXBsZSBub25jZQ==";
    assert_eq!(
        write_accept_response(&mut buf, key, Some("chat\r\nX: y"), None),
        Err(EncodeError::InvalidHeaderValue)
    );
    assert_eq!(
        write_accept_response(&mut buf, key, None, Some("a\nb")),
        Err(EncodeError::InvalidHeaderValue)
    );
    let k = client_key([1; 16]);
    let bad = ClientRequest {
        headers: &[("X-A", "v\r\nEvil: 1")],
        ..ClientRequest::new("h", "/", &k)
    };
    assert_eq!(bad.encode(&mut buf), Err(EncodeError::InvalidHeaderValue));
    let bad = ClientRequest::new("h", "/a b", &k);
    assert_eq!(bad.encode(&mut buf), Err(EncodeError::InvalidHeaderValue));
}

#[test]
fn origin_policy() {
    let host = "example.com";
    let allowed = |origin: &str, patterns: &[&str]| origin_allowed(Some(origin), host, patterns);
    assert!(allowed("http://example.com", &[]));
    assert!(allowed("https://EXAMPLE.COM", &[]));
    assert!(allowed("http://example.com/path?q", &[]));
    assert!(
        !allowed("http://example.com:8080", &[]),
        "a different port is a different origin"
    );
    assert!(!allowed("http://example.com.evil.net", &[]));
    assert!(!allowed("null", &["*"]));
    assert!(!allowed("", &["*"]));
    assert!(!allowed("http://", &["*"]));
    assert!(allowed("https://a.example.com", &["*.example.com"]));
    assert!(allowed("https://A.Example.COM", &["*.EXAMPLE.com"]));
    assert!(!allowed(
        "https://a.example.com.evil.net",
        &["*.example.com"]
    ));
    assert!(!allowed("https://evilexample.com", &["*.example.com"]));
    assert!(allowed("http://localhost:3000", &["localhost:*"]));
    assert!(allowed("http://127.0.0.1:3000", &["127.0.0.1:300?"]));
    assert!(!allowed("http://127.0.0.1:30000", &["127.0.0.1:300?"]));
    assert!(allowed("https://b.example.com", &["[a-c].example.com"]));
    assert!(!allowed("https://d.example.com", &["[a-c].example.com"]));
    assert!(allowed("https://d.example.com", &["[^a-c].example.com"]));
    assert!(
        !allowed("https://d.example.com", &["[a-c.example.com"]),
        "malformed class"
    );
    assert!(allowed(
        "https://app.example.com",
        &["https://*.example.com"]
    ));
    assert!(!allowed(
        "http://app.example.com",
        &["https://*.example.com"]
    ));
    assert!(allowed("http://anything.at.all:1", &["*"]));
    assert!(allowed("http://x", &["nomatch", "x"]));
    assert!(allowed("http://a*b", &["a\\*b"]));
    assert!(!allowed("http://axb", &["a\\*b"]));
}

#[test]
fn glob_star_does_not_blow_up() {
    let text = "a".repeat(2000);
    let pattern = "*a*a*a*a*a*a*a*a*b";
    assert!(!glob_match(pattern.as_bytes(), text.as_bytes()));
}

#[test]
fn client_request_round_trips_through_the_server_parser() {
    let key = client_key(*b"0123456789abcdef");
    let req = ClientRequest {
        protocols: &["v2.chat", "v1.chat"],
        origin: Some("http://127.0.0.1"),
        headers: &[("Authorization", "Bearer t")],
        ..ClientRequest::new("127.0.0.1:9001", "/room/1?x=y", &key)
    };
    let mut buf = [0u8; 512];
    let n = req.encode(&mut buf).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(
        req.encode(&mut small),
        Err(EncodeError::InsufficientSize { required: n })
    );

    let mut headers = [EMPTY_HEADER; 16];
    let (server_req, len) = Request::parse(&buf[..n], &mut headers)
        .unwrap()
        .complete()
        .unwrap();
    assert_eq!(len, n);
    assert_eq!(server_req.path, "/room/1?x=y");
    assert_eq!(&server_req.protocols[..], ["v2.chat", "v1.chat"]);
    assert_eq!(server_req.header("authorization"), Some(&b"Bearer t"[..]));
    let chosen = select_protocol(&server_req.protocols, &["v1.chat"]);

    let mut resp = [0u8; 512];
    let m = server_req.accept(&mut resp, chosen, None).unwrap();
    let mut rh = [EMPTY_HEADER; 16];
    let (res, rlen) = Response::parse(&resp[..m], &mut rh)
        .unwrap()
        .complete()
        .unwrap();
    assert_eq!((res.status, rlen), (101, m));
    assert_eq!(
        res.validate(&key, req.protocols, false),
        Ok(Some("v1.chat"))
    );

    // Against another key, the accept value is wrong.
    let other = client_key(*b"fedcba9876543210");
    assert_eq!(
        res.validate(&other, req.protocols, false),
        Err(HandshakeError::InvalidAccept)
    );
    // A protocol we did not offer.
    assert_eq!(
        res.validate(&key, &["v2.chat"], false),
        Err(HandshakeError::UnexpectedProtocol)
    );
}

#[test]
fn client_rejects_bad_responses() {
    let key = client_key([3; 16]);
    let accept = accept_key(&key);
    let accept = core::str::from_utf8(&accept).unwrap();
    let ok = std::format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    let check = |raw: &str, ext: bool| {
        let mut h = [EMPTY_HEADER; 16];
        let (res, _) = Response::parse(raw.as_bytes(), &mut h)
            .unwrap()
            .complete()
            .unwrap();
        res.validate(&key, &[], ext).map(|p| p.map(String::from))
    };
    assert_eq!(check(&ok, false), Ok(None));
    let forbidden = "HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope";
    assert_eq!(
        check(forbidden, false),
        Err(HandshakeError::UnexpectedStatus(403))
    );
    let with_ext = ok.replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    );
    assert_eq!(
        check(&with_ext, false),
        Err(HandshakeError::UnexpectedExtension)
    );
    assert_eq!(check(&with_ext, true), Ok(None));
    let no_upgrade = ok.replace("Upgrade: websocket\r\n", "");
    assert_eq!(check(&no_upgrade, false), Err(HandshakeError::NotUpgrade));
    let proto = ok.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat\r\n\r\n");
    assert_eq!(
        check(&proto, false),
        Err(HandshakeError::UnexpectedProtocol)
    );
    let twice = ok.replace(
        "\r\n\r\n",
        &std::format!("\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"),
    );
    assert_eq!(check(&twice, false), Err(HandshakeError::InvalidAccept));
}

#[cfg(feature = "deflate")]
#[test]
fn policy_decides_origin_protocol_and_deflate() {
    let raw = with(
        "Origin: http://example.com",
        "Origin: http://example.com\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    );
    let mut headers = [EMPTY_HEADER; 16];
    let Status::Complete((req, _)) = Request::parse(raw.as_bytes(), &mut headers).unwrap() else {
        panic!("partial");
    };
    // The origin is another host: refused unless a pattern allows it or the check is off.
    let refused = Policy::new().decide(&req).unwrap_err();
    assert_eq!(refused, Refusal::Origin("http://example.com"));
    assert_eq!(refused.status(), 403);
    assert!(Policy::new().insecure_any_origin().decide(&req).is_ok());
    let origins = ["example.com"];
    let protocols = ["superchat", "chat"];
    let deflate = crate::deflate::DeflateConfig::new();
    let policy = Policy::new().origins(&origins).protocols(&protocols);
    let plain = policy.decide(&req).unwrap();
    assert_eq!((plain.protocol, plain.deflate), (Some(0), None));
    let policy = policy.deflate(Some(&deflate));
    let upgrade = policy.decide(&req).unwrap();
    assert_eq!(upgrade.protocol_name(&policy), Some("superchat"));
    assert!(upgrade.deflate.is_some());
    let mut out = [0u8; 512];
    let n = upgrade.write_response(&req, &policy, &mut out).unwrap();
    let response = core::str::from_utf8(&out[..n]).unwrap();
    assert!(
        response.contains("Sec-WebSocket-Protocol: superchat\r\n"),
        "{response}"
    );
    assert!(response.contains("permessage-deflate"), "{response}");
    // Too small a buffer is an error, not a panic.
    assert!(
        upgrade
            .write_response(&req, &policy, &mut out[..20])
            .is_err()
    );
}

#[test]
fn origin_patterns_called_hopeless_match_nothing_and_the_rest_can() {
    // What each bad pattern was meant to match, and what the matcher says of it.
    for (pattern, meant) in [
        ("https://example.com/", "https://example.com"),
        ("example.com/app", "https://example.com"),
        ("", "https://example.com"),
        ("https://", "https://example.com"),
        ("://example.com", "https://example.com"),
        ("*.example .com", "https://a.example.com"),
        ("[a-z.example.com", "https://a.example.com"),
    ] {
        assert!(origin_pattern_problem(pattern).is_some(), "{pattern:?}");
        assert!(
            !origin_allowed(Some(meant), "elsewhere", &[pattern]),
            "{pattern:?}"
        );
    }
    for (pattern, origin) in [
        ("*.example.com", "https://a.example.com"),
        ("https://*.example.com", "https://a.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("[a-c].example.com", "https://b.example.com"),
        ("[]].example.com", "https://].example.com"),
        ("\\[x.example.com", "https://[x.example.com"),
    ] {
        assert_eq!(origin_pattern_problem(pattern), None, "{pattern:?}");
        assert!(
            origin_allowed(Some(origin), "elsewhere", &[pattern]),
            "{pattern:?}"
        );
    }
}
