//! A bounded load generator: a few keep-alive clients on 127.0.0.1 sending `GET /` through the
//! app's proxy, recording every answer's version, every failure (connection error or 5xx).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One answer: when (since the load started), and the version served (`None`: a failure).
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    pub version: Option<String>,
    pub error: Option<String>,
}

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Report {
    pub samples: Vec<Sample>,
}

impl Report {
    pub fn requests(&self) -> usize {
        self.samples.len()
    }

    pub fn failures(&self) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.version.is_none())
            .collect()
    }

    /// Versions served in a time window.
    pub fn versions_between(&self, from: Duration, to: Duration) -> Vec<&str> {
        self.samples
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
            .filter_map(|s| s.version.as_deref())
            .collect()
    }

    pub fn count(&self, version: &str) -> usize {
        self.samples
            .iter()
            .filter(|s| s.version.as_deref() == Some(version))
            .count()
    }
}

/// Running load; [`stop`](Load::stop) returns the report.
pub struct Load {
    stop: Arc<AtomicBool>,
    started: Instant,
    clients: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

/// `clients` keep-alive clients, each pausing `pause` between requests, stopping after
/// `max_time` or `max_requests` each, whichever comes first.
pub fn start(
    addr: SocketAddr,
    clients: usize,
    pause: Duration,
    max_time: Duration,
    max_requests: usize,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients = (0..clients)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut conn: Option<BufReader<TcpStream>> = None;
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < max_time
                    && samples.len() < max_requests
                {
                    let result = one(&mut conn, addr).await;
                    let at = started.elapsed();
                    match result {
                        Ok(version) => samples.push(Sample {
                            at,
                            version: Some(version),
                            error: None,
                        }),
                        Err(e) => {
                            conn = None;
                            samples.push(Sample {
                                at,
                                version: None,
                                error: Some(e),
                            });
                        }
                    }
                    tokio::time::sleep(pause).await;
                }
                samples
            })
        })
        .collect();
    Load {
        stop,
        started,
        clients,
    }
}

impl Load {
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for the clients to reach their bounds, then reports.
    pub async fn stop_after_all(self) -> Report {
        let mut samples = Vec::new();
        for c in self.clients {
            samples.extend(c.await.expect("load client"));
        }
        samples.sort_by_key(|s| s.at);
        Report { samples }
    }

    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for c in self.clients {
            samples.extend(c.await.expect("load client"));
        }
        samples.sort_by_key(|s| s.at);
        Report { samples }
    }
}

async fn one(conn: &mut Option<BufReader<TcpStream>>, addr: SocketAddr) -> Result<String, String> {
    if conn.is_none() {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        *conn = Some(BufReader::new(stream));
    }
    let c = conn.as_mut().expect("connection");
    let exchange = async {
        c.get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut status = String::new();
        if c.read_line(&mut status)
            .await
            .map_err(|e| format!("read: {e}"))?
            == 0
        {
            return Err("connection closed".to_owned());
        }
        let code: u16 = status
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        let mut close = false;
        loop {
            let mut line = String::new();
            c.read_line(&mut line)
                .await
                .map_err(|e| format!("read: {e}"))?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut body = vec![0; len];
        c.read_exact(&mut body)
            .await
            .map_err(|e| format!("read body: {e}"))?;
        let body = String::from_utf8_lossy(&body).trim().to_owned();
        if code >= 500 || code == 0 {
            return Err(format!("status {code}: {body}"));
        }
        Ok((body, close))
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok((body, close))) => {
            if close {
                *conn = None;
            }
            Ok(body)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out".to_owned()),
    }
}
