//! The platform traits. The engine holds each as `Arc<dyn …>`.

pub mod analysis;
pub mod deployer;
pub mod health;
pub mod registry;
pub mod retry;
