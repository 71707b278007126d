//! The weighted HTTP reverse proxy in front of an app's web process.
//!
//! Traffic (`PROXY_LISTEN`, default `0.0.0.0:80`): each request goes to a fleet chosen by the
//! exact weights (a counter walks 100 slots, so 10% is every tenth request), then to one of
//! that fleet's healthy backends in turn. A backend is healthy once its health path
//! (`PROXY_HEALTH_PATH`, default `/health`) answered 200; two failed checks in a row take it
//! out. A request whose backend refuses or drops the connection before answering is sent to
//! another backend (GET-like requests only), so an instance dying under load costs no request.
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

use std::io::BufReader;
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
    for stream in traffic.incoming().flatten() {
        let proxy = proxy.clone();
        std::thread::spawn(move || client_conn(&proxy, stream));
    }
    std::process::exit(5)
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

fn client_conn(proxy: &Proxy, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(&stream);
    let mut w = &stream;
    while let Ok(Some(req)) = http::read_message(&mut reader) {
        let keep = req.keep_alive();
        let (method, path) = req.method_path();
        let retry_safe = matches!(method, "GET" | "HEAD" | "OPTIONS");
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .filter(|(k, _)| {
                !["connection", "content-length", "host", "keep-alive"]
                    .iter()
                    .any(|h| k.eq_ignore_ascii_case(h))
            })
            .cloned()
            .collect();
        let mut tried = Vec::new();
        let mut answer = None;
        for _ in 0..4 {
            let Some(backend) = proxy.pick(&tried) else {
                break;
            };
            tried.push(backend.addr);
            backend.inflight.fetch_add(1, Ordering::SeqCst);
            let res = http::request(
                backend.addr,
                method,
                path,
                &headers,
                &req.body,
                Duration::from_secs(30),
            );
            backend.inflight.fetch_sub(1, Ordering::SeqCst);
            match res {
                Ok(r) => {
                    answer = Some(r);
                    break;
                }
                Err(_) if retry_safe => {
                    backend.healthy.store(false, Ordering::Relaxed);
                }
                Err(_) => break,
            }
        }
        let ok = match answer {
            Some(r) => {
                let status = r.status();
                let headers: Vec<(String, String)> = r
                    .headers
                    .into_iter()
                    .filter(|(k, _)| {
                        !["connection", "content-length", "keep-alive"]
                            .iter()
                            .any(|h| k.eq_ignore_ascii_case(h))
                    })
                    .collect();
                http::respond(&mut w, status, &headers, &r.body, keep)
            }
            None => http::respond(&mut w, 502, &[], b"no healthy backend\n", keep),
        };
        if ok.is_err() || !keep {
            break;
        }
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
