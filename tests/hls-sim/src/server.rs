//! Listeners and HTTP/1.1 connections (hyper), with the region listener that closes and
//! re-opens for a region-wide `refuse`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::SimBody;
use crate::state::Shared;

/// Binds a listener with SO_REUSEADDR, so a region can re-listen on its port at once after a
/// `refuse` is healed even while old connections are in TIME_WAIT.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

/// A TCP stream for hyper that, when the handler asked for it, closes with RST (SO_LINGER 0)
/// instead of FIN: the narrow-scope `refuse` fault.
struct AbortIo {
    io: TokioIo<TcpStream>,
    abort: Arc<AtomicBool>,
}

impl hyper::rt::Read for AbortIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for AbortIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.abort.load(Ordering::Relaxed) {
            // No FIN: the drop below resets the connection.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl Drop for AbortIo {
    fn drop(&mut self) {
        if self.abort.load(Ordering::Relaxed) {
            let _ = self.io.inner().set_zero_linger();
        }
    }
}

/// Serves one connection until it closes, or until shutdown (then gracefully, bounded).
fn spawn_connection<H, F, E>(
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    stream: TcpStream,
    handler: H,
) where
    H: Fn(Request<Incoming>, Arc<AtomicBool>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<SimBody>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    tracker.spawn(async move {
        let _ = stream.set_nodelay(true);
        let abort = Arc::new(AtomicBool::new(false));
        let io = AbortIo {
            io: TokioIo::new(stream),
            abort: abort.clone(),
        };
        let svc = service_fn(move |req| handler(req, abort.clone()));
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
            }
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
            }
        }
    });
}

/// Accepts on `listener` until `stop` resolves or shutdown is requested.
async fn accept_until<H, F, E, S>(
    listener: &TcpListener,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    handler: &H,
    stop: S,
) where
    H: Fn(Request<Incoming>, Arc<AtomicBool>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<SimBody>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    S: Future<Output = ()>,
{
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    spawn_connection(tracker, shutdown.clone(), stream, handler.clone());
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Runs the control API listener.
pub(crate) async fn run_control(shared: Arc<Shared>, listener: TcpListener, tracker: TaskTracker) {
    let shutdown = shared.shutdown.clone();
    let handler = move |req: Request<Incoming>, _abort: Arc<AtomicBool>| {
        let shared = shared.clone();
        async move { crate::control::handle(shared, req).await }
    };
    accept_until(
        &listener,
        &tracker,
        &shutdown,
        &handler,
        std::future::pending(),
    )
    .await;
}

/// Runs one region's listener: closed while a region-wide `refuse` is active, re-opened on the
/// same address when it is healed.
pub(crate) async fn run_region(
    shared: Arc<Shared>,
    region: usize,
    listener: TcpListener,
    tracker: TaskTracker,
) {
    let shutdown = shared.shutdown.clone();
    let addr = shared.regions[region].addr;
    let mut refuse = shared.regions[region].refuse.subscribe();
    let handler = {
        let shared = shared.clone();
        move |req: Request<Incoming>, abort: Arc<AtomicBool>| {
            let shared = shared.clone();
            async move { crate::origin::handle(shared, region, abort, req).await }
        }
    };
    let mut listener = Some(listener);
    loop {
        // Closed while refused.
        tokio::select! {
            r = refuse.wait_for(|&n| n == 0) => if r.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let l = match listener.take() {
            Some(l) => l,
            None => loop {
                match bind(addr) {
                    Ok(l) => break l,
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "re-listen failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                            _ = shutdown.cancelled() => return,
                        }
                    }
                }
            },
        };
        shared.regions[region].listening.send_replace(true);
        tracing::info!(region = %shared.regions[region].name, %addr, "listening");
        let refused = async {
            let _ = refuse.wait_for(|&n| n > 0).await;
        };
        accept_until(&l, &tracker, &shutdown, &handler, refused).await;
        drop(l);
        shared.regions[region].listening.send_replace(false);
        if shutdown.is_cancelled() {
            return;
        }
        tracing::info!(region = %shared.regions[region].name, %addr, "listener closed (refuse)");
    }
}
