//! The HTTP front: routes ECS JSON calls and ELBv2 `DescribeTargetHealth` to the model, and
//! forwards everything else to moto unchanged (observing listener and rule changes on the
//! way).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use crate::Shared;

pub(crate) const ECS_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// A client for the moto server.
#[derive(Debug)]
pub(crate) struct Upstream {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A whole HTTP answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json(status: StatusCode, v: &Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/x-amz-json-1.1".into())],
            body: Bytes::from(v.to_string()),
        }
    }

    pub(crate) fn xml(status: StatusCode, body: String) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "text/xml".into())],
            body: Bytes::from(body),
        }
    }
}

impl Upstream {
    pub(crate) fn new(base: &str) -> Self {
        Upstream {
            base: base.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request to moto and reads the whole answer.
    pub(crate) async fn send(
        &self,
        method: &hyper::Method,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path_and_query));
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case("content-length") {
                continue;
            }
            req = req.header(k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let headers = resp
            .headers()
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "content-length" | "transfer-encoding" | "connection" | "keep-alive"
                )
            })
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// A JSON 1.1 call (`X-Amz-Target: target`) to moto made by the model itself, signed
    /// for `service` with the fake credentials (moto checks no signature).
    async fn json_call(
        &self,
        service: &str,
        target: String,
        input: &Value,
        region: &str,
    ) -> Result<Answer, String> {
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            ("x-amz-target".to_owned(), target),
            (
                "authorization".to_owned(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/{service}/aws4_request, \
                     SignedHeaders=host, Signature=0"
                ),
            ),
        ];
        self.send(
            &hyper::Method::POST,
            "/",
            &headers,
            Bytes::from(input.to_string()),
        )
        .await
    }

    /// A CloudWatch Logs call to moto made by the model itself (a container's last lines).
    pub(crate) async fn logs(&self, op: &str, input: &Value, region: &str) -> Result<(), String> {
        let a = self
            .json_call("logs", format!("Logs_20140328.{op}"), input, region)
            .await?;
        if a.status.is_success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&a.body).into_owned())
        }
    }

    /// An ECS call to moto made by the model itself (to read task definitions).
    pub(crate) async fn ecs(&self, op: &str, input: &Value, region: &str) -> Result<Value, String> {
        let a = self
            .json_call("ecs", format!("{ECS_PREFIX}{op}"), input, region)
            .await?;
        let v: Value = serde_json::from_slice(&a.body).map_err(|e| e.to_string())?;
        if a.status.is_success() {
            Ok(v)
        } else {
            Err(format!(
                "{}: {}",
                v["__type"].as_str().unwrap_or("error"),
                v["message"]
                    .as_str()
                    .or(v["Message"].as_str())
                    .unwrap_or("")
            ))
        }
    }
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(plain(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let target = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
        .map(|(_, v)| v.clone());
    let answer = if let Some(op) = target.as_deref().and_then(|t| t.strip_prefix(ECS_PREFIX)) {
        crate::ecs::call(shared, op, &method, &path, &headers, body).await
    } else if let Some(form) = crate::elb::form(&headers, &body) {
        crate::elb::call(shared, form, &method, &path, &headers, body).await
    } else {
        forward(shared, &method, &path, &headers, body).await
    };
    reply(answer)
}

/// Ships the lines containers wrote before they exited to moto's CloudWatch Logs, off the
/// request path: every 20 ms, one call at a time (a stream created once, then one
/// `PutLogEvents` per stream with its pending lines). Answers never wait for it: under load a
/// crash loop's lines, shipped in line by the request that happened to take them, held
/// answers for seconds and slowed every deployment polling the model into a stall.
pub(crate) async fn ship_logs_forever(shared: Arc<Shared>) {
    let mut created: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        ship_logs(&shared, &mut created).await;
    }
}

/// Sends the pending lines, stamped with the real time (what a log reader compares with its
/// own clock).
async fn ship_logs(shared: &Shared, created: &mut std::collections::HashSet<(String, String)>) {
    let events = std::mem::take(
        &mut shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .logs,
    );
    let mut by_stream: Vec<((String, String), Vec<String>)> = Vec::new();
    for e in events {
        let key = (e.group, e.stream);
        match by_stream.iter_mut().find(|(k, _)| *k == key) {
            Some((_, lines)) => lines.push(e.message),
            None => by_stream.push((key, vec![e.message])),
        }
    }
    let region = &shared.config.region;
    for ((group, stream), lines) in by_stream {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if created.insert((group.clone(), stream.clone())) {
            // Its creation failing (it exists) says nothing.
            let s = serde_json::json!({ "logGroupName": group, "logStreamName": stream });
            let _ = shared.upstream.logs("CreateLogStream", &s, region).await;
        }
        let events: Vec<Value> = lines
            .iter()
            .map(|m| serde_json::json!({ "timestamp": at, "message": m }))
            .collect();
        let put = serde_json::json!({
            "logGroupName": group,
            "logStreamName": stream,
            "logEvents": events,
        });
        if let Err(why) = shared.upstream.logs("PutLogEvents", &put, region).await {
            tracing::warn!(%group, %stream, %why, "could not ship log lines to moto");
        }
    }
}

pub(crate) async fn forward(
    shared: &Shared,
    method: &hyper::Method,
    path: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Answer {
    match shared.upstream.send(method, path, headers, body).await {
        Ok(a) => a,
        Err(e) => plain(
            StatusCode::BAD_GATEWAY,
            &format!("the ECS model could not reach moto: {e}"),
        ),
    }
}

fn plain(status: StatusCode, msg: &str) -> Answer {
    Answer {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: Bytes::from(msg.to_owned()),
    }
}

fn reply(a: Answer) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(a.status);
    for (k, v) in &a.headers {
        r = r.header(k, v);
    }
    r.header("x-amzn-requestid", "00000000-0000-4000-8000-000000000000")
        .body(Full::new(a.body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"bad header"))))
}
