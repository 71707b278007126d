//! `ecs-model`: runs the ECS model on 127.0.0.1 in front of a moto server, for trying `tapit`
//! (or anything using the AWS SDK) against a stateful ECS.
//!
//! Usage: `ecs-model MOTO_ENDPOINT [TIME_SCALE]`, e.g.
//! `ecs-model http://127.0.0.1:5000 60`; then point the SDK at the printed endpoint
//! (`AWS_ENDPOINT_URL=…`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use tapitalee_ecs_model::{EcsModel, ModelConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(upstream) = args.next() else {
        eprintln!(
            "usage: ecs-model MOTO_ENDPOINT [TIME_SCALE] (e.g. ecs-model http://127.0.0.1:5000 60)"
        );
        std::process::exit(2);
    };
    let mut config = ModelConfig::new(upstream);
    if let Some(scale) = args.next() {
        match scale.parse::<f64>() {
            Ok(s) => config.time_scale = s,
            Err(_) => {
                eprintln!(
                    "time scale {scale:?} is not a number; give model seconds per real second, e.g. 60"
                );
                std::process::exit(2);
            }
        }
    }
    let model = match EcsModel::start(config).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ecs-model: {e}");
            std::process::exit(2);
        }
    };
    println!("{}", model.endpoint());
    let _ = tokio::signal::ctrl_c().await;
}
