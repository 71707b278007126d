//! Just enough HTTP/1.1 for the proxy and the demo: message heads, and bodies framed by
//! `Content-Length`, by chunked transfer encoding, or (responses) by the end of the
//! connection. The proxy streams bodies through ([`copy_body`]) without holding them; the
//! demo and the health checks read whole messages ([`read_message`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A message's first line and headers.
#[derive(Debug, Default, Clone)]
pub struct Head {
    pub first: String,
    pub headers: Vec<(String, String)>,
}

/// A parsed message: its head (the methods of [`Head`] apply) and its whole (decoded) body.
#[derive(Debug, Default)]
pub struct Message {
    pub head: Head,
    pub body: Vec<u8>,
}

impl std::ops::Deref for Message {
    type Target = Head;

    fn deref(&self) -> &Head {
        &self.head
    }
}

/// How a message's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer encoding.
    Chunked,
    /// Everything until the sender closes the connection (responses only).
    UntilClose,
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// Method and path of a request.
    pub fn method_path(&self) -> (&str, &str) {
        let mut parts = self.first.split(' ');
        (parts.next().unwrap_or(""), parts.next().unwrap_or("/"))
    }

    /// Status code of a response.
    pub fn status(&self) -> u16 {
        self.first
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Whether the peer wants the connection kept open after this message.
    pub fn keep_alive(&self) -> bool {
        match self.header("connection") {
            Some(v) => !v.eq_ignore_ascii_case("close"),
            None => self.first.ends_with("HTTP/1.1"),
        }
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    }

    fn length(&self) -> io::Result<Option<u64>> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length")),
        }
    }

    /// A request's body framing.
    pub fn request_body(&self) -> io::Result<Body> {
        if self.chunked() {
            return Ok(Body::Chunked);
        }
        Ok(match self.length()? {
            Some(0) | None => Body::Empty,
            Some(n) => Body::Length(n),
        })
    }

    /// A response's body framing, for a request of `method`.
    pub fn response_body(&self, method: &str) -> io::Result<Body> {
        let status = self.status();
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Ok(Body::Empty);
        }
        if self.chunked() {
            return Ok(Body::Chunked);
        }
        Ok(match self.length()? {
            Some(0) => Body::Empty,
            Some(n) => Body::Length(n),
            None => Body::UntilClose,
        })
    }
}

/// Reads a message head; `Ok(None)` on a clean end of stream before any byte.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let first = first.trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated head",
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Ok(Some(Head { first, headers }))
}

/// One line (up to its LF), as read.
fn read_line_raw(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated chunk",
        ));
    }
    Ok(line)
}

fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = String::from_utf8_lossy(line);
    let hex = text.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(hex, 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))
}

fn copy_exact(reader: &mut impl BufRead, w: &mut impl Write, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated body",
            ));
        }
        let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
        w.write_all(&buf[..take])?;
        reader.consume(take);
        n -= take as u64;
    }
    Ok(())
}

/// Copies a body from `reader` to `w` as it arrives, its framing unchanged (a chunked body
/// stays chunked, trailers included), flushing after each piece so nothing waits in a buffer.
pub fn copy_body(reader: &mut impl BufRead, w: &mut impl Write, body: Body) -> io::Result<()> {
    match body {
        Body::Empty => Ok(()),
        Body::Length(n) => {
            copy_exact(reader, w, n)?;
            w.flush()
        }
        Body::Chunked => loop {
            let line = read_line_raw(reader)?;
            let size = chunk_size(&line)?;
            w.write_all(&line)?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let t = read_line_raw(reader)?;
                    w.write_all(&t)?;
                    if t == b"\r\n" || t == b"\n" {
                        return w.flush();
                    }
                }
            }
            copy_exact(reader, w, size)?;
            let end = read_line_raw(reader)?;
            w.write_all(&end)?;
            w.flush()?;
        },
        Body::UntilClose => {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return w.flush();
                }
                w.write_all(&buf[..n])?;
                w.flush()?;
            }
        }
    }
}

/// Copies a body that ends with the connection to `w` as chunks (so the receiving
/// connection can stay open), as it arrives.
pub fn copy_until_close_chunked(reader: &mut impl Read, w: &mut impl Write) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            w.write_all(b"0\r\n\r\n")?;
            return w.flush();
        }
        w.write_all(format!("{n:x}\r\n").as_bytes())?;
        w.write_all(&buf[..n])?;
        w.write_all(b"\r\n")?;
        w.flush()?;
    }
}

/// Reads a whole body, decoded (chunk framing and trailers removed).
pub fn read_body(reader: &mut impl BufRead, body: Body) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match body {
        Body::Empty => {}
        Body::Length(n) => copy_exact(reader, &mut out, n)?,
        Body::UntilClose => {
            reader.read_to_end(&mut out)?;
        }
        Body::Chunked => loop {
            let size = chunk_size(&read_line_raw(reader)?)?;
            if size == 0 {
                loop {
                    let t = read_line_raw(reader)?;
                    if t == b"\r\n" || t == b"\n" {
                        return Ok(out);
                    }
                }
            }
            copy_exact(reader, &mut out, size)?;
            read_line_raw(reader)?;
        },
    }
    Ok(out)
}

/// Reads one whole request; `Ok(None)` on a clean end of stream before any byte.
pub fn read_message(reader: &mut impl BufRead) -> io::Result<Option<Message>> {
    let Some(head) = read_head(reader)? else {
        return Ok(None);
    };
    let body = read_body(reader, head.request_body()?)?;
    Ok(Some(Message { head, body }))
}

/// Writes a response.
pub fn respond(
    w: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    ));
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// One request on a fresh connection (`Connection: close`), with timeouts; the whole
/// response, its body decoded.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Message> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let _ = stream.set_nodelay(true);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut w = &stream;
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    let mut reader = BufReader::new(&stream);
    let head = read_head(&mut reader)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
    let body = read_body(&mut reader, head.response_body(method)?)?;
    Ok(Message { head, body })
}
