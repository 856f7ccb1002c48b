//! kube-rs-controller: a controller written with kube-rs (the Rust Kubernetes client)
//! and nothing of Corral's, run against a Corral server unchanged. See `mirror.rs`.
//!
//! ```sh
//! corral up --tls-auto &                   # writes ~/.corral/config (a kubeconfig)
//! KUBECONFIG=~/.corral/config cargo run --example kube-rs-controller [-- NAMESPACE]
//! corral apply -f examples/kube-rs-controller/source.yaml
//! corral get cm                            # greeting and greeting-mirror
//! ```
//!
//! It logs at info level (`RUST_LOG` overrides).

mod mirror;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    corral_telemetry::logging::init("info");
    let namespace = std::env::args().nth(1).unwrap_or_else(|| "default".into());
    // The kubeconfig of $KUBECONFIG (or ~/.kube/config), as any kube-rs program.
    let client = kube::Client::try_default().await?;
    tracing::info!(%namespace, label = mirror::LABEL, "mirroring config maps");
    mirror::run(client, &namespace).await;
    Ok(())
}
