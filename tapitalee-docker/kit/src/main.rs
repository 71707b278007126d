//! `tapit-kit`: the programs the Docker backend runs in containers, one statically linked
//! binary for `FROM scratch` images: `proxy` (the weighted reverse proxy in front of an app's
//! web process), `demo` (the demo app) and `check` (the demo image's Docker health check).

mod demo;
mod http;
mod proxy;

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("proxy") => proxy::run(),
        Some("demo") | None => demo::run(),
        Some("check") => demo::check(),
        Some(_) => std::process::exit(64),
    }
}
