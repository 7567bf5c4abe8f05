//! The CLI's side of the control API: one HTTP/1.1 request per connection,
//! over the agent's Unix socket or TCP with a bearer token.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::ErrorBody;

/// Where the agent listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Its Unix socket.
    Unix(PathBuf),
    /// A TCP address, with the agent's token.
    Tcp {
        /// `host:port`.
        addr: String,
        /// Bearer token.
        token: String,
    },
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No agent answers at the endpoint.
    #[error(
        "the agent is not running ({what}): start it with `rollout serve{home}` (it keeps running; add `&` or use another terminal)"
    )]
    NotRunning {
        /// What was tried.
        what: String,
        /// `--home` to repeat, if not the default.
        home: String,
    },
    /// The agent refused or failed the request.
    #[error("{message}")]
    Agent {
        /// HTTP status.
        status: u16,
        /// What it said.
        message: String,
        /// True when it changed nothing.
        unchanged: bool,
    },
    /// The exchange broke.
    #[error("talking to the agent: {0}")]
    Protocol(String),
}

/// A client of one agent.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    home_flag: String,
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

impl Client {
    /// A client of the agent at `endpoint`; `home_flag` (e.g. ` --home /x`)
    /// goes into the hint when the agent is not running.
    pub fn new(endpoint: Endpoint, home_flag: String) -> Self {
        Client {
            endpoint,
            home_flag,
        }
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, ClientError> {
        let not_running = |what: String| ClientError::NotRunning {
            what,
            home: self.home_flag.clone(),
        };
        Ok(match &self.endpoint {
            Endpoint::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| not_running(format!("{}: {e}", path.display())))?,
            ),
            Endpoint::Tcp { addr, .. } => Box::new(
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| not_running(format!("{addr}: {e}")))?,
            ),
        })
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let protocol = |e: &dyn std::fmt::Display| ClientError::Protocol(e.to_string());
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(&e))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "rollout-agent")
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Endpoint::Tcp { token, .. } = &self.endpoint {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| protocol(&e))?;
        let res = sender.send_request(req).await.map_err(|e| protocol(&e))?;
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| protocol(&e))?
            .to_bytes();
        if !status.is_success() {
            let (message, unchanged) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error, b.unchanged),
                Err(_) => (String::from_utf8_lossy(&bytes).into_owned(), false),
            };
            return Err(ClientError::Agent {
                status: status.as_u16(),
                message,
                unchanged,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| protocol(&e))
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.request(Method::POST, path, Some(body)).await
    }

    /// `DELETE path`; the JSON answer.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::DELETE, path, None).await
    }
}
