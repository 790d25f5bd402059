//! The server's accept loop: how many connections it keeps open and for how long a client may
//! take to send a request's headers. One unauthenticated client must not be able to hold
//! every file descriptor: beyond `max_connections` a connection gets a JSON 503 at once and is
//! closed; a connection that does not finish its headers within `header_timeout` (also when
//! idle between requests) is closed. The body-read timeout is the gate's (see `mod.rs`).
//! Runs in the server process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How long a refused connection is given to take its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the loop waits after running out of file descriptors before accepting again.
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_millis(50);
/// How long a graceful shutdown waits for open connections to finish their answers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The connection limits, validated at the edge.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// The 503 a connection beyond the cap gets (a complete HTTP/1.1 response, then close).
fn refusal(max_connections: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error": format!(
            "too many open connections (the server keeps at most {max_connections}); retry later"
        )
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// (bounded) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusal: Arc<[u8]> = refusal(limits.max_connections).into();
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer): (TcpStream, SocketAddr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors (or another transient failure): the connection
                // waits in the backlog; timeouts and the cap free descriptors soon.
                Err(_) => {
                    tokio::time::sleep(FD_EXHAUSTED_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            let refusal = Arc::clone(&refusal);
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
                    stream.write_all(&refusal).await?;
                    stream.shutdown().await
                })
                .await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_is_a_complete_json_response() {
        let text = String::from_utf8(super::refusal(7)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(value["error"].as_str().unwrap().contains("at most 7"));
    }
}
