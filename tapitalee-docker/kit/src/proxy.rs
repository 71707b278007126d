//! The weighted HTTP reverse proxy in front of an app's web process.
//!
//! Traffic (`PROXY_LISTEN`, default `0.0.0.0:80`): each request goes to a fleet chosen by the
//! exact weights (a counter walks 100 slots, so 10% is every tenth request), then to one of
//! that fleet's healthy backends in turn. A backend is healthy once its health path
//! (`PROXY_HEALTH_PATH`, default `/health`) answered 200; two failed checks in a row take it
//! out. Bodies are streamed through as they arrive, in whatever framing they come
//! (`Content-Length`, chunked, or a response ending with its connection, re-chunked for a
//! keep-alive client). A request goes to another backend only when that is safe: when the
//! backend refused the connection (nothing was sent), for any method; when it dropped the
//! request unanswered, for idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) whose
//! body the proxy held (up to 64 KiB). A response with a `Content-Length` up to 64 KiB is read
//! whole before any of it reaches the client (as nginx buffers and retries with
//! `proxy_next_upstream`), so a backend dying halfway through it counts as unanswered too.
//! So an instance dying under load costs no request, and a POST is never sent twice.
//! When the weighted fleets have no healthy backend, any healthy backend serves (fail open).
//!
//! Admin (`PROXY_ADMIN`, default `0.0.0.0:81`), plain text:
//! - `GET /state`: `weight <fleet> <percent>` and `backend <fleet> <addr> <healthy> <in-flight>`;
//! - `PUT /weights`: lines `<fleet> <percent>` (replaces every weight);
//! - `PUT /backends/<fleet>`: lines `<ip:port>` (replaces the fleet's backends);
//! - `POST /drain?timeout_ms=N`: lines `<ip:port>`: out of rotation at once, then waits for
//!   their in-flight requests (at most N ms) and forgets them; answers `drained` or `timeout`;
//! - `DELETE /fleets/<fleet>`: forgets a fleet's weight and backends.
//!
//! With `PROXY_STATE` set (a file path, on a volume), every change is saved there and loaded
//! at start, so a restarted proxy container keeps its weights and backends (each backend is
//! health-checked again before it takes traffic).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::http;

#[derive(Debug)]
struct Backend {
    addr: SocketAddr,
    fleet: String,
    healthy: AtomicBool,
    failures: AtomicU32,
    draining: AtomicBool,
    inflight: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    weights: Vec<(String, u8)>,
    backends: Vec<Arc<Backend>>,
}

#[derive(Debug, Default)]
struct Proxy {
    state: Mutex<State>,
    slot: AtomicUsize,
    rr: AtomicUsize,
    file: Option<String>,
}

fn backend(fleet: &str, addr: SocketAddr) -> Arc<Backend> {
    Arc::new(Backend {
        addr,
        fleet: fleet.to_owned(),
        healthy: AtomicBool::new(false),
        failures: AtomicU32::new(0),
        draining: AtomicBool::new(false),
        inflight: AtomicUsize::new(0),
    })
}

impl Proxy {
    /// Saves weights and backends (write then rename: a crash leaves the old file or the new).
    fn save(&self) {
        let Some(file) = &self.file else { return };
        let text = {
            let state = self.lock();
            let mut out = String::new();
            for (f, w) in &state.weights {
                out.push_str(&format!("weight {f} {w}\n"));
            }
            for b in state
                .backends
                .iter()
                .filter(|b| !b.draining.load(Ordering::SeqCst))
            {
                out.push_str(&format!("backend {} {}\n", b.fleet, b.addr));
            }
            out
        };
        let tmp = format!("{file}.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, file);
        }
    }

    /// Loads what [`save`](Self::save) wrote, if anything.
    fn load(&self) {
        let Some(text) = self
            .file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
        else {
            return;
        };
        let mut state = self.lock();
        for line in text.lines() {
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["weight", f, w] => {
                    if let Ok(w) = w.parse() {
                        state.weights.push(((*f).to_owned(), w));
                    }
                }
                ["backend", f, addr] => {
                    if let Ok(addr) = addr.parse() {
                        state.backends.push(backend(f, addr));
                    }
                }
                _ => {}
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Picks a backend, avoiding those already tried for this request.
    fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        let state = self.lock();
        let usable = |b: &&Arc<Backend>| {
            b.healthy.load(Ordering::Relaxed)
                && !b.draining.load(Ordering::Relaxed)
                && !tried.contains(&b.addr)
        };
        let in_fleet = |fleet: &str| -> Vec<Arc<Backend>> {
            state
                .backends
                .iter()
                .filter(usable)
                .filter(|b| b.fleet == fleet)
                .cloned()
                .collect()
        };
        let live: Vec<(&str, u32)> = state
            .weights
            .iter()
            .filter(|(f, w)| *w > 0 && !in_fleet(f).is_empty())
            .map(|(f, w)| (f.as_str(), u32::from(*w)))
            .collect();
        let total: u32 = live.iter().map(|(_, w)| w).sum();
        let candidates = if total > 0 {
            // Walk 0..total in an order that spreads each fleet's share evenly.
            let n = self.slot.fetch_add(1, Ordering::Relaxed);
            let total_n = total as usize;
            let stride = if gcd(37, total_n) == 1 { 37 } else { 1 };
            let spread = u32::try_from((n % total_n) * stride % total_n).unwrap_or(0);
            let mut acc = 0;
            let mut chosen = live[0].0;
            for (f, w) in &live {
                acc += w;
                if spread < acc {
                    chosen = f;
                    break;
                }
            }
            in_fleet(chosen)
        } else {
            state.backends.iter().filter(usable).cloned().collect()
        };
        if candidates.is_empty() {
            return None;
        }
        let i = self.rr.fetch_add(1, Ordering::Relaxed) % candidates.len();
        Some(candidates[i].clone())
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn run() -> ! {
    let proxy = Arc::new(Proxy {
        file: std::env::var("PROXY_STATE").ok().filter(|v| !v.is_empty()),
        ..Proxy::default()
    });
    proxy.load();
    let health = env_or("PROXY_HEALTH_PATH", "/health");
    let listen = env_or("PROXY_LISTEN", "0.0.0.0:80");
    let admin = env_or("PROXY_ADMIN", "0.0.0.0:81");
    let Ok(traffic) = TcpListener::bind(&listen) else {
        std::process::exit(4)
    };
    let Ok(admin) = TcpListener::bind(&admin) else {
        std::process::exit(4)
    };
    {
        let proxy = proxy.clone();
        std::thread::spawn(move || health_loop(&proxy, &health));
    }
    {
        let proxy = proxy.clone();
        std::thread::spawn(move || {
            for stream in admin.incoming().flatten() {
                let proxy = proxy.clone();
                std::thread::spawn(move || admin_conn(&proxy, stream));
            }
        });
    }
    serve(&proxy, &traffic);
    std::process::exit(5)
}

/// Serves the traffic listener: a thread per client connection.
fn serve(proxy: &Arc<Proxy>, traffic: &TcpListener) {
    for stream in traffic.incoming().flatten() {
        let proxy = proxy.clone();
        std::thread::spawn(move || client_conn(&proxy, stream));
    }
}

fn health_loop(proxy: &Arc<Proxy>, path: &str) {
    loop {
        let backends: Vec<Arc<Backend>> = proxy.lock().backends.clone();
        let checks: Vec<_> = backends
            .into_iter()
            .map(|b| {
                let path = path.to_owned();
                std::thread::spawn(move || {
                    let ok = http::request(b.addr, "GET", &path, &[], &[], Duration::from_secs(1))
                        .is_ok_and(|r| r.status() == 200);
                    if ok {
                        b.failures.store(0, Ordering::Relaxed);
                        b.healthy.store(true, Ordering::Relaxed);
                    } else if b.failures.fetch_add(1, Ordering::Relaxed) + 1 >= 2 {
                        b.healthy.store(false, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for c in checks {
            let _ = c.join();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Request bodies up to this size are read before forwarding, so an idempotent request can
/// be sent again to another backend; larger ones (and chunked ones) are streamed through.
const REPLAYABLE_BODY: u64 = 64 * 1024;

/// Responses up to this size (by `Content-Length`) are read whole before they are forwarded.
const HELD_RESPONSE: u64 = 64 * 1024;

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// What became of one attempt on one backend.
enum Attempt {
    /// The response is being (or was) streamed to the client; `reusable` says whether the
    /// client connection can take another request.
    Answered { reusable: bool },
    /// Nothing reached the backend (it refused the connection): any request may go elsewhere.
    NotSent,
    /// The request (or part of it) was sent, and no response head came back.
    NoAnswer,
    /// The client's request body broke off: the client connection is done.
    ClientGone,
}

/// The request's body, as the proxy holds it for the attempts.
enum ReqBody {
    /// Read whole (possibly empty): can be sent again.
    Buffered(Vec<u8>),
    /// Still on the client connection, this framing; sent once, as it arrives.
    Streamed(http::Body),
}

fn client_conn(proxy: &Proxy, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(&stream);
    let mut w = &stream;
    while let Ok(Some(head)) = http::read_head(&mut reader) {
        let keep = head.keep_alive();
        let Ok(framing) = head.request_body() else {
            let _ = http::respond(&mut w, 400, &[], b"bad request framing\n", false);
            break;
        };
        // A client waiting for leave to send its body (`Expect: 100-continue`) gets it here:
        // the proxy reads or streams the body itself, and does not forward the expectation.
        if framing != http::Body::Empty
            && head
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            && w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            break;
        }
        let mut body = match framing {
            http::Body::Empty => ReqBody::Buffered(Vec::new()),
            http::Body::Length(n) if n <= REPLAYABLE_BODY => {
                match http::read_body(&mut reader, framing) {
                    Ok(b) => ReqBody::Buffered(b),
                    Err(_) => break,
                }
            }
            other => ReqBody::Streamed(other),
        };
        let method = head.method_path().0.to_owned();
        let mut tried = Vec::new();
        let mut outcome = None;
        for _ in 0..4 {
            let Some(backend) = proxy.pick(&tried) else {
                break;
            };
            tried.push(backend.addr);
            backend.inflight.fetch_add(1, Ordering::SeqCst);
            let attempt = forward(&backend, &head, &mut body, &mut reader, &mut w, keep);
            backend.inflight.fetch_sub(1, Ordering::SeqCst);
            let retry = match attempt {
                Attempt::NotSent => true,
                Attempt::NoAnswer => idempotent(&method) && matches!(body, ReqBody::Buffered(_)),
                Attempt::Answered { .. } | Attempt::ClientGone => false,
            };
            if matches!(attempt, Attempt::NotSent | Attempt::NoAnswer) {
                // Refused or dropped: out of rotation until its health check passes again.
                backend.healthy.store(false, Ordering::Relaxed);
            }
            if !retry {
                outcome = Some(attempt);
                break;
            }
        }
        let reusable = match outcome {
            Some(Attempt::Answered { reusable }) => reusable,
            Some(Attempt::ClientGone) => false,
            // No backend, or none answered: the request body (if streamed) is in an unknown
            // state, so the connection closes after the 502.
            _ => {
                let reusable = keep && matches!(body, ReqBody::Buffered(_));
                let _ = http::respond(&mut w, 502, &[], b"no healthy backend\n", reusable);
                reusable
            }
        };
        if !reusable {
            break;
        }
    }
}

/// Sends the request to one backend and streams its response to the client.
fn forward(
    backend: &Backend,
    head: &http::Head,
    body: &mut ReqBody,
    client: &mut impl BufRead,
    w: &mut impl Write,
    keep: bool,
) -> Attempt {
    let Ok(upstream) = TcpStream::connect_timeout(&backend.addr, Duration::from_secs(2)) else {
        return Attempt::NotSent;
    };
    let _ = upstream.set_nodelay(true);
    let _ = upstream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = upstream.set_write_timeout(Some(Duration::from_secs(30)));
    let (method, _) = head.method_path();
    let mut out = format!("{}\r\n", head.first);
    for (k, v) in &head.headers {
        let skip = HOP_BY_HOP
            .iter()
            .chain(&["content-length", "transfer-encoding", "expect"])
            .any(|h| k.eq_ignore_ascii_case(h));
        if !skip {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if head.header("host").is_none() {
        out.push_str(&format!("Host: {}\r\n", backend.addr));
    }
    match body {
        ReqBody::Buffered(b) if !b.is_empty() || method_has_body(method) => {
            out.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        ReqBody::Buffered(_) => {}
        ReqBody::Streamed(http::Body::Length(n)) => {
            out.push_str(&format!("Content-Length: {n}\r\n"));
        }
        ReqBody::Streamed(_) => out.push_str("Transfer-Encoding: chunked\r\n"),
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut up = &upstream;
    if up.write_all(out.as_bytes()).is_err() {
        return Attempt::NoAnswer;
    }
    match body {
        ReqBody::Buffered(b) => {
            if up.write_all(b).is_err() {
                return Attempt::NoAnswer;
            }
        }
        ReqBody::Streamed(framing) => {
            // Streamed once: whatever happens next, it cannot be sent again.
            let framing = *framing;
            *body = ReqBody::Streamed(http::Body::Empty);
            let mut sink = FailureAware::new(&mut up);
            if let Err(e) = http::copy_body(client, &mut sink, framing) {
                return if sink.failed {
                    let _ = e;
                    Attempt::NoAnswer
                } else {
                    Attempt::ClientGone
                };
            }
        }
    }
    let mut upstream_reader = BufReader::new(&upstream);
    // Interim responses (1xx other than 101) precede the real one: skipped.
    let res = loop {
        let Ok(Some(res)) = http::read_head(&mut upstream_reader) else {
            return Attempt::NoAnswer;
        };
        if !(100..200).contains(&res.status()) || res.status() == 101 {
            break res;
        }
    };
    let Ok(framing) = res.response_body(method) else {
        return Attempt::NoAnswer;
    };
    // A small response is held whole before the client sees any of it: a backend that dies
    // halfway through (a crash, an instance stopped) leaves the request unanswered, and it
    // can go to another backend, rather than reaching the client cut short.
    let held = match framing {
        http::Body::Length(n) if n <= HELD_RESPONSE => {
            match http::read_body(&mut upstream_reader, framing) {
                Ok(b) => Some(b),
                Err(_) => return Attempt::NoAnswer,
            }
        }
        _ => None,
    };
    let mut reply = format!("{}\r\n", res.first);
    for (k, v) in &res.headers {
        if !HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            reply.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    // A body that ends with the backend's connection reaches the client chunked, so the
    // client's connection can stay open (HTTP/1.1) or closes with it (HTTP/1.0).
    let rechunk = framing == http::Body::UntilClose && head.first.ends_with("HTTP/1.1");
    let reusable = keep && (framing != http::Body::UntilClose || rechunk);
    if rechunk {
        reply.push_str("Transfer-Encoding: chunked\r\n");
    }
    reply.push_str(if reusable {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    if w.write_all(reply.as_bytes()).is_err() {
        return Attempt::ClientGone;
    }
    let copied = if let Some(b) = held {
        w.write_all(&b).and_then(|()| w.flush())
    } else if rechunk {
        http::copy_until_close_chunked(&mut upstream_reader, w)
    } else {
        http::copy_body(&mut upstream_reader, w, framing).and_then(|()| w.flush())
    };
    Attempt::Answered {
        reusable: reusable && copied.is_ok(),
    }
}

/// Methods whose empty body is still stated (`Content-Length: 0`).
fn method_has_body(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
}

/// A writer that remembers whether a write to it failed (to tell a backend that broke off
/// from a client that did, while streaming a request body).
struct FailureAware<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> FailureAware<W> {
    fn new(inner: W) -> Self {
        FailureAware {
            inner,
            failed: false,
        }
    }
}

impl<W: Write> Write for FailureAware<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

fn admin_conn(proxy: &Proxy, stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let mut w = &stream;
    let Ok(Some(req)) = http::read_message(&mut reader) else {
        return;
    };
    let (method, path) = req.method_path();
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let lines = || body.lines().map(str::trim).filter(|l| !l.is_empty());
    let (status, text) = match (method, path) {
        ("GET", "/state") => (200, state_text(proxy)),
        ("PUT", "/weights") => {
            let mut weights = Vec::new();
            for line in lines() {
                match line
                    .split_once(' ')
                    .map(|(f, w)| (f, w.trim().parse::<u8>()))
                {
                    Some((f, Ok(w))) => weights.push((f.to_owned(), w)),
                    _ => {
                        let _ = http::respond(&mut w, 400, &[], b"bad weight line\n", false);
                        return;
                    }
                }
            }
            proxy.lock().weights = weights;
            proxy.save();
            (200, "ok\n".to_owned())
        }
        ("PUT", p) if p.starts_with("/backends/") => {
            let fleet = &p["/backends/".len()..];
            let addrs: Vec<SocketAddr> = lines().filter_map(|l| l.parse().ok()).collect();
            let mut state = proxy.lock();
            state
                .backends
                .retain(|b| b.fleet != fleet || addrs.contains(&b.addr));
            for addr in addrs {
                if !state.backends.iter().any(|b| b.addr == addr) {
                    state.backends.push(backend(fleet, addr));
                }
            }
            drop(state);
            proxy.save();
            (200, "ok\n".to_owned())
        }
        ("POST", "/drain") => {
            let timeout = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("timeout_ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000);
            let addrs: Vec<SocketAddr> = lines().filter_map(|l| l.parse().ok()).collect();
            (200, drain(proxy, &addrs, Duration::from_millis(timeout)))
        }
        ("DELETE", p) if p.starts_with("/fleets/") => {
            let fleet = &p["/fleets/".len()..];
            let mut state = proxy.lock();
            state.weights.retain(|(f, _)| f != fleet);
            state.backends.retain(|b| b.fleet != fleet);
            drop(state);
            proxy.save();
            (200, "ok\n".to_owned())
        }
        _ => (404, "unknown admin path\n".to_owned()),
    };
    let _ = http::respond(&mut w, status, &[], text.as_bytes(), false);
}

fn drain(proxy: &Proxy, addrs: &[SocketAddr], timeout: Duration) -> String {
    let draining: Vec<Arc<Backend>> = proxy
        .lock()
        .backends
        .iter()
        .filter(|b| addrs.contains(&b.addr))
        .cloned()
        .collect();
    for b in &draining {
        b.draining.store(true, Ordering::SeqCst);
    }
    proxy.save();
    let deadline = Instant::now() + timeout;
    let mut outcome = "drained";
    while draining
        .iter()
        .any(|b| b.inflight.load(Ordering::SeqCst) > 0)
    {
        if Instant::now() >= deadline {
            outcome = "timeout";
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy
        .lock()
        .backends
        .retain(|b| !draining.iter().any(|d| Arc::ptr_eq(b, d)));
    format!("{outcome}\n")
}

fn state_text(proxy: &Proxy) -> String {
    let state = proxy.lock();
    let mut out = String::new();
    for (f, w) in &state.weights {
        out.push_str(&format!("weight {f} {w}\n"));
    }
    for b in &state.backends {
        out.push_str(&format!(
            "backend {} {} {} {}\n",
            b.fleet,
            b.addr,
            b.healthy.load(Ordering::Relaxed) && !b.draining.load(Ordering::Relaxed),
            b.inflight.load(Ordering::Relaxed)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::mpsc;

    /// A proxy on a loopback port, in front of these backends (all healthy, one fleet).
    fn running(backends: &[SocketAddr]) -> SocketAddr {
        let p = Arc::new(Proxy::default());
        {
            let mut state = p.lock();
            state.weights = vec![("f".to_owned(), 100)];
            for addr in backends {
                let b = backend("f", *addr);
                b.healthy.store(true, Ordering::SeqCst);
                state.backends.push(b);
            }
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(&p, &listener));
        addr
    }

    fn client(proxy: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
        let s = TcpStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        (s, r)
    }

    /// A backend that answers every request with `200 <method> <body>` (Content-Length),
    /// counting requests.
    fn echo_backend() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(&s);
                    if let Ok(Some(req)) = http::read_message(&mut r) {
                        c.fetch_add(1, Ordering::SeqCst);
                        let body = format!(
                            "{} {}",
                            req.method_path().0,
                            String::from_utf8_lossy(&req.body)
                        );
                        let _ = http::respond(&mut &s, 200, &[], body.as_bytes(), false);
                    }
                });
            }
        });
        (addr, count)
    }

    /// A backend that reads each request's head, then drops the connection unanswered.
    fn dropping_backend() -> (SocketAddr, Arc<AtomicUsize>) {
        faulty_backend(b"")
    }

    /// A backend that answers every request with a head promising 100 bytes and sends 5,
    /// then closes (as an instance that crashes mid-response); counts requests.
    fn cut_short_backend() -> (SocketAddr, Arc<AtomicUsize>) {
        faulty_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
    }

    /// A backend that reads each request, counts it, sends `reply` (maybe nothing) and closes.
    fn faulty_backend(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let mut r = BufReader::new(&s);
                if let Ok(Some(_)) = http::read_message(&mut r) {
                    c.fetch_add(1, Ordering::SeqCst);
                    if !reply.is_empty() {
                        let _ = (&s).write_all(reply);
                    }
                }
                drop(s);
            }
        });
        (addr, count)
    }

    /// A loopback port nothing listens on.
    fn refusing() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    fn send(proxy: SocketAddr, method: &str, body: &str) -> (u16, String) {
        let (mut s, mut r) = client(proxy);
        write!(
            s,
            "{method} / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let head = http::read_head(&mut r).unwrap().unwrap();
        let b = http::read_body(&mut r, head.response_body(method).unwrap()).unwrap();
        (head.status(), String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn chunked_bodies_stream_through_both_ways() {
        // The backend reads the request's first chunk before the client has sent its
        // second, and the client reads the response's first chunk before the backend sends
        // its second: neither body is held by the proxy.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_addr = listener.local_addr().unwrap();
        let (got_first, backend_saw_first) = mpsc::channel::<String>();
        let (client_got_part1, wait_client) = mpsc::channel::<()>();
        let (request_done, backend_request_done) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(&s);
            let head = http::read_head(&mut r).unwrap().unwrap();
            assert_eq!(head.request_body().unwrap(), http::Body::Chunked);
            let mut line = String::new();
            r.read_line(&mut line).unwrap(); // size of the first chunk
            let mut first = vec![0; usize::from_str_radix(line.trim(), 16).unwrap()];
            r.read_exact(&mut first).unwrap();
            got_first.send(String::from_utf8(first).unwrap()).unwrap();
            let mut rest = String::new();
            // The rest of the chunked body: CRLF, then the second chunk and the end.
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).unwrap();
            let tail = http::read_body(&mut r, http::Body::Chunked).unwrap();
            rest.push_str(&String::from_utf8(tail).unwrap());
            request_done.send(rest).unwrap();
            let mut w = &s;
            w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\npart1\r\n")
                .unwrap();
            w.flush().unwrap();
            wait_client
                .recv_timeout(Duration::from_secs(10))
                .expect("the client saw part1 before part2 was sent");
            w.write_all(b"5\r\npart2\r\n0\r\n\r\n").unwrap();
        });
        let proxy = running(&[backend_addr]);
        let (mut s, mut r) = client(proxy);
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n")
            .unwrap();
        let first = backend_saw_first
            .recv_timeout(Duration::from_secs(10))
            .expect("the backend got the first chunk while the client held the second");
        assert_eq!(first, "hello ");
        s.write_all(b"5\r\nworld\r\n0\r\n\r\n").unwrap();
        assert_eq!(
            backend_request_done
                .recv_timeout(Duration::from_secs(10))
                .unwrap(),
            "world"
        );
        let head = http::read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.response_body("POST").unwrap(), http::Body::Chunked);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let mut part1 = [0u8; 5];
        r.read_exact(&mut part1).unwrap();
        assert_eq!(&part1, b"part1");
        client_got_part1.send(()).unwrap();
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).unwrap();
        let rest = http::read_body(&mut r, http::Body::Chunked).unwrap();
        assert_eq!(rest, b"part2");
    }

    #[test]
    fn a_body_ending_with_the_connection_is_rechunked_and_the_client_connection_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let mut r = BufReader::new(&s);
                let req = http::read_message(&mut r).unwrap().unwrap();
                let mut w = &s;
                // HTTP/1.0 style: no length, the end of the connection ends the body.
                write!(
                    w,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nno length for {}",
                    req.method_path().1
                )
                .unwrap();
            }
        });
        let proxy = running(&[backend_addr]);
        let (mut s, mut r) = client(proxy);
        for path in ["/a", "/b"] {
            write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            let head = http::read_head(&mut r).unwrap().unwrap();
            assert_eq!(head.status(), 200);
            assert!(head.keep_alive(), "{head:?}");
            let body = http::read_body(&mut r, head.response_body("GET").unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(body).unwrap(),
                format!("no length for {path}")
            );
        }
    }

    #[test]
    fn a_client_expecting_100_continue_is_told_to_send_its_body() {
        let (good, served) = echo_backend();
        let proxy = running(&[good]);
        let (mut s, mut r) = client(proxy);
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        .unwrap();
        let interim = http::read_head(&mut r)
            .expect("the proxy answers before the body is sent")
            .unwrap();
        assert_eq!(interim.status(), 100);
        s.write_all(b"hello").unwrap();
        let head = http::read_head(&mut r).unwrap().unwrap();
        let body = http::read_body(&mut r, head.response_body("POST").unwrap()).unwrap();
        assert_eq!((head.status(), body.as_slice()), (200, &b"POST hello"[..]));
        assert_eq!(served.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_backends_interim_response_is_not_taken_for_the_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let mut r = BufReader::new(&s);
                let _ = http::read_message(&mut r).unwrap();
                let mut w = &s;
                w.write_all(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal",
                )
                .unwrap();
            }
        });
        let proxy = running(&[backend_addr]);
        assert_eq!(send(proxy, "GET", ""), (200, "real".to_owned()));
    }

    #[test]
    fn a_refused_connection_is_retried_for_any_method() {
        let (good, served) = echo_backend();
        let proxy = running(&[refusing(), good]);
        for i in 0..4 {
            let (status, body) = send(proxy, "POST", &format!("order {i}"));
            assert_eq!((status, body), (200, format!("POST order {i}")));
        }
        assert_eq!(served.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_request_sent_and_unanswered_is_retried_only_when_idempotent() {
        let (good, served) = echo_backend();
        let (dropping, dropped) = dropping_backend();
        // The dropping backend comes first in the rotation for the first request.
        let proxy = running(&[dropping, good]);
        let (status, _) = send(proxy, "POST", "pay 10");
        assert_eq!(
            status, 502,
            "a POST the backend may have acted on is not sent twice"
        );
        assert_eq!(
            (
                dropped.load(Ordering::SeqCst),
                served.load(Ordering::SeqCst)
            ),
            (1, 0)
        );
        // It is out of rotation now (unhealthy until a health check passes): put it back.
        let proxy = running(&[dropping, good]);
        for method in ["GET", "PUT", "DELETE"] {
            let (status, body) = send(proxy, method, "x");
            assert_eq!(
                (status, body.as_str()),
                (200, format!("{method} x").as_str())
            );
        }
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            2,
            "tried once, then retried elsewhere"
        );
        assert_eq!(served.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_response_cut_short_is_retried_only_when_idempotent() {
        let (good, served) = echo_backend();
        let (cut, cut_count) = cut_short_backend();
        let proxy = running(&[cut, good]);
        let (status, _) = send(proxy, "POST", "pay 10");
        assert_eq!(
            status, 502,
            "a POST the backend may have acted on is not sent twice"
        );
        assert_eq!(
            (
                cut_count.load(Ordering::SeqCst),
                served.load(Ordering::SeqCst)
            ),
            (1, 0)
        );
        let proxy = running(&[cut, good]);
        let (status, body) = send(proxy, "GET", "x");
        assert_eq!(
            (status, body.as_str()),
            (200, "GET x"),
            "the client never sees the cut-short answer"
        );
        assert_eq!(
            (
                cut_count.load(Ordering::SeqCst),
                served.load(Ordering::SeqCst)
            ),
            (2, 1)
        );
    }

    fn proxy(weights: &[(&str, u8)], backends: &[(&str, &str)]) -> Proxy {
        let p = Proxy::default();
        {
            let mut state = p.lock();
            state.weights = weights.iter().map(|(f, w)| ((*f).to_owned(), *w)).collect();
            for (f, addr) in backends {
                let b = backend(f, addr.parse().unwrap());
                b.healthy.store(true, Ordering::SeqCst);
                state.backends.push(b);
            }
        }
        p
    }

    fn share(p: &Proxy, fleet: &str, picks: usize) -> usize {
        (0..picks)
            .filter(|_| p.pick(&[]).is_some_and(|b| b.fleet == fleet))
            .count()
    }

    #[test]
    fn weights_are_exact_over_every_hundred_requests() {
        for w in [0u8, 1, 10, 25, 50, 99, 100] {
            let p = proxy(
                &[("new", w), ("old", 100 - w)],
                &[
                    ("new", "10.0.0.1:80"),
                    ("old", "10.0.0.2:80"),
                    ("old", "10.0.0.3:80"),
                ],
            );
            for _ in 0..3 {
                assert_eq!(share(&p, "new", 100), usize::from(w), "weight {w}");
            }
        }
    }

    #[test]
    fn a_fleet_without_healthy_backends_gets_nothing_and_others_share() {
        let p = proxy(
            &[("a", 26), ("b", 37), ("c", 37)],
            &[("b", "10.0.0.2:80"), ("c", "10.0.0.3:80")],
        );
        // a has no backend: b and c split 74 slots evenly.
        assert_eq!(share(&p, "b", 74), 37);
        let none = proxy(&[("a", 100)], &[("z", "10.0.0.9:80")]);
        assert_eq!(
            none.pick(&[]).map(|b| b.fleet.clone()).as_deref(),
            Some("z"),
            "fail open"
        );
    }

    #[test]
    fn draining_and_tried_backends_are_skipped() {
        let p = proxy(&[("a", 100)], &[("a", "10.0.0.1:80"), ("a", "10.0.0.2:80")]);
        p.lock().backends[0].draining.store(true, Ordering::SeqCst);
        for _ in 0..10 {
            assert_eq!(p.pick(&[]).unwrap().addr.to_string(), "10.0.0.2:80");
        }
        assert!(p.pick(&["10.0.0.2:80".parse().unwrap()]).is_none());
    }
}
