//! The OTLP/gRPC front door: an HTTP/2 server (cleartext with prior knowledge, or TLS with ALPN
//! h2) on a tokio runtime of its own thread, handing complete calls to Python through `Bridge`.
//!
//! hyper's HTTP/2 server directly rather than tonic: a call here is raw bytes in, raw bytes or a
//! status with binary trailers out, answered from Python, so tonic's codecs, tower stack and
//! status types would only be wrapped around (and compiled in) for nothing.

use std::convert::Infallible;
use std::net::TcpListener as StdListener;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::grpc_bridge::{Answer, Bridge};
use crate::grpc_wire::{self, Status};

/// A response body of known frames: the message (if any), then the trailers.
struct Frames(Vec<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(if self.0.is_empty() {
            None
        } else {
            Some(Ok(self.0.remove(0)))
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn respond(answer: Answer) -> Response<Frames> {
    let (frames, status) = match answer {
        Ok(message) => (
            vec![Frame::data(grpc_wire::frame(&message))],
            Status::new(grpc_wire::OK, ""),
        ),
        Err(status) => (Vec::new(), status),
    };
    let mut frames = frames;
    frames.push(Frame::trailers(grpc_wire::trailers(&status)));
    let mut response = Response::new(Frames(frames));
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/grpc+proto"),
    );
    response
}

/// Reads the request to its end, refusing a message over `max` bytes as soon as its prefix came.
/// The buffer is sized once from the prefix: grown frame by frame (16 KB each), a 1,000-span
/// request was copied again at every doubling.
async fn read_body(mut body: Incoming, max: usize) -> Result<Vec<u8>, Status> {
    let mut read = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|err| Status::new(grpc_wire::INTERNAL, format!("request: {err}")))?;
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            // the prefix says the size: refuse before reading the rest
            if let Some(framed) = grpc_wire::check_size(&read, max)? {
                read.reserve(framed.saturating_sub(read.len()));
            }
        }
    }
    Ok(read)
}

async fn call(bridge: &Bridge, request: Request<Incoming>, max: usize) -> Answer {
    let Some(service) = grpc_wire::service_of(request.uri().path()) else {
        return Err(Status::new(
            grpc_wire::UNIMPLEMENTED,
            format!("unknown method {}", request.uri().path()),
        ));
    };
    let gzip = grpc_wire::gzip_encoded(request.headers())?;
    let authorization = header_text(request.headers(), "authorization");
    let body = read_body(request.into_body(), max).await?;
    let message = grpc_wire::unframe(body, gzip, max)?;
    bridge
        .submit(service, message, authorization)
        .await
        .unwrap_or_else(|_| Err(Status::new(grpc_wire::UNAVAILABLE, "receiver stopping")))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

async fn handle(
    bridge: Arc<Bridge>,
    request: Request<Incoming>,
    max: usize,
) -> Result<Response<Frames>, Infallible> {
    let grpc = request
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc {
        // as grpc-go answers a request that is not gRPC: plain HTTP, 415
        let mut response = Response::new(Frames(Vec::new()));
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Ok(response);
    }
    Ok(respond(call(&bridge, request, max).await))
}

fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("cert_file: {err}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| format!("key_file: {err}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| format!("tls: {err}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `stop` says how long the calls in flight may still take.
async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    bridge: Arc<Bridge>,
    max: usize,
    mut stop: oneshot::Receiver<Duration>,
) {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    // a 1000-span request is about 300 KB: let it arrive without waiting for window updates
    builder
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let grace = loop {
        let (stream, _) = tokio::select! {
            grace = &mut stop => break grace.unwrap_or_default(),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // out of file descriptors, say: let some close rather than spin
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let bridge = bridge.clone();
        let service = service_fn(move |request| handle(bridge.clone(), request, max));
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(conn).await;
                    }
                }
            }
        });
    };
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

/// Binds host:port, where the host may also be a bare IPv6 address ("::", as a config may say).
fn bind(address: &str) -> std::io::Result<StdListener> {
    match address.rsplit_once(':') {
        Some((host, port)) if host.contains(':') && !host.starts_with('[') => {
            let port = port.parse::<u16>().map_err(std::io::Error::other)?;
            StdListener::bind((host, port))
        }
        _ => StdListener::bind(address),
    }
}

/// The front door: serving from construction until `stop`.
#[pyclass(frozen)]
pub struct GrpcServer {
    bridge: Arc<Bridge>,
    port: u16,
    stop: Mutex<Option<oneshot::Sender<Duration>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[pymethods]
impl GrpcServer {
    /// Binds `address` (host:port) now, so that a port in use is an OSError here; TLS when both
    /// PEM texts are given. `max_request_bytes` caps the message, after any gzip.
    #[new]
    #[pyo3(signature = (address, max_request_bytes, cert_pem=None, key_pem=None))]
    fn new(
        address: &str,
        max_request_bytes: usize,
        cert_pem: Option<&[u8]>,
        key_pem: Option<&[u8]>,
    ) -> PyResult<Self> {
        let tls = match (cert_pem, key_pem) {
            (Some(cert), Some(key)) => {
                Some(tls_acceptor(cert, key).map_err(PyValueError::new_err)?)
            }
            (None, None) => None,
            _ => return Err(PyValueError::new_err("TLS needs both cert_pem and key_pem")),
        };
        let listener = bind(address)
            .map_err(|err| PyOSError::new_err(format!("grpc: cannot bind {address}: {err}")))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let bridge = Arc::new(Bridge::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let serving = bridge.clone();
        let closing = bridge.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-grpc".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Ok(listener) = TcpListener::from_std(listener) {
                        serve(listener, tls, serving, max_request_bytes, stop_rx).await;
                    }
                });
                closing.close();
            })?;
        Ok(GrpcServer {
            bridge,
            port,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The bound port (the one chosen when the address said port 0).
    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    /// Up to `max` calls as (id, service, message, authorization), waiting without the GIL until
    /// there is one; None once the server stopped.
    #[allow(clippy::type_complexity)]
    fn take<'py>(
        &self,
        py: Python<'py>,
        max: usize,
    ) -> Option<Vec<(u64, u8, Bound<'py, PyBytes>, Option<String>)>> {
        let calls = py.detach(|| self.bridge.take(max))?;
        Some(
            calls
                .into_iter()
                .map(|c| {
                    (
                        c.id,
                        c.service,
                        PyBytes::new(py, &c.message),
                        c.authorization,
                    )
                })
                .collect(),
        )
    }

    /// Ends call `id`: OK with `response` when `code` is 0, else `code` and `message` with
    /// `details` as binary trailers. False when the caller is gone.
    #[pyo3(signature = (id, code, message, response, details))]
    fn answer(
        &self,
        id: u64,
        code: u16,
        message: String,
        response: &[u8],
        details: Vec<(String, Vec<u8>)>,
    ) -> bool {
        let answer = if code == grpc_wire::OK {
            Ok(response.to_vec())
        } else {
            Err(Status {
                code,
                message,
                details,
            })
        };
        self.bridge.answer(id, answer)
    }

    /// Stops accepting, lets calls in flight finish for up to `grace` seconds, then ends the
    /// runtime; `take` returns None afterwards. Waits without the GIL, as the answers need it.
    fn stop(&self, py: Python<'_>, grace: f64) -> PyResult<()> {
        let grace = Duration::try_from_secs_f64(grace).map_err(PyValueError::new_err)?;
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(grace);
        }
        let thread = self.thread.lock().unwrap().take();
        py.detach(|| thread.map(JoinHandle::join).transpose())
            .map_err(|_| PyRuntimeError::new_err("the gRPC server thread panicked"))?;
        self.bridge.close();
        Ok(())
    }
}
