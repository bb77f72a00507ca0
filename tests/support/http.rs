//! A minimal HTTP/1.1 client for tests: one request per connection, the whole answer read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An answer: status code, headers (lower-case names) and body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// `GET path` from `address` (host:port).
pub fn get(address: &str, path: &str) -> Answer {
    request(address, "GET", path, None)
}

/// `POST path` with a JSON body.
pub fn post(address: &str, path: &str, body: &str) -> Answer {
    request(address, "POST", path, Some(body))
}

/// Any request, with extra headers (`name: value` lines).
pub fn request_with(
    address: &str,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&str>,
) -> Answer {
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|error| panic!("cannot connect to {address}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let extra: String = headers.iter().map(|line| format!("{line}\r\n")).collect();
    let content = match body {
        Some(body) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => "Content-Length: 0\r\n\r\n".to_string(),
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{extra}{content}"
    )
    .unwrap();
    read_answer(stream).unwrap_or_else(|error| panic!("{method} {path} at {address}: {error}"))
}

/// The events of a server-sent event stream, read until the server ends it: (event, data).
/// Panics if it has not ended within `limit`.
pub fn events(address: &str, path: &str, limit: Duration) -> Vec<(String, String)> {
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|error| panic!("cannot connect to {address}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => raw.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => panic!("reading {path}: {error}"),
        }
        assert!(
            started.elapsed() < limit,
            "{path} did not end within {limit:?}: {}",
            String::from_utf8_lossy(&raw)
        );
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
    let mut events = Vec::new();
    let mut name = String::new();
    // The body is chunked; an event's lines are within one chunk, so chunk-size lines are
    // simply skipped.
    for line in text.lines() {
        if let Some(event) = line.strip_prefix("event: ") {
            name = event.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((std::mem::take(&mut name), data.to_string()));
        }
    }
    events
}

fn request(address: &str, method: &str, path: &str, body: Option<&str>) -> Answer {
    try_request(address, method, path, body)
        .unwrap_or_else(|error| panic!("{method} {path} at {address}: {error}"))
}

/// `GET path`, or the error when the server refused or dropped the connection (a stopping
/// node).
pub fn try_get(address: &str, path: &str) -> std::io::Result<Answer> {
    try_request(address, "GET", path, None)
}

fn try_request(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let content = match body {
        Some(body) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => "\r\n".to_string(),
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{content}"
    )?;
    read_answer(stream)
}

/// Reads an answer: up to its `Content-Length` when it has one (some servers keep the
/// connection open despite `Connection: close`), else until the server closes.
fn read_answer(mut stream: TcpStream) -> std::io::Result<Answer> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16384];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        raw.extend_from_slice(&buffer[..read]);
        if let Some(end) = raw.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok());
            if length.is_some_and(|length| raw.len() >= end + 4 + length) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("no status line in {text:?}"),
            )
        })?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}
