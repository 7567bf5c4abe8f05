//! The connection to the Docker Engine API, made on first use.

use std::time::Duration;

use bollard::Docker;
use tokio::sync::OnceCell;

use crate::backend::BackendError;

/// Longest any one API request may take to answer (streams, once
/// answered, run on): a hung daemon fails a step instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the first contact (version negotiation) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Docker host (`$DOCKER_HOST`, or the local socket), reached on first
/// use; the API version is negotiated then, so older engines work.
#[derive(Default)]
pub struct Connection {
    /// A Unix socket to use instead of the defaults.
    socket: Option<String>,
    docker: OnceCell<Docker>,
}

impl Connection {
    /// The Docker host listening on the Unix socket at `path`.
    pub fn at_socket(path: &str) -> Connection {
        Connection {
            socket: Some(path.to_string()),
            docker: OnceCell::new(),
        }
    }

    /// The client, connecting first if this is the first use.
    pub async fn get(&self) -> Result<&Docker, BackendError> {
        self.docker.get_or_try_init(|| self.connect()).await
    }

    /// Where the Docker host is, in words.
    fn address(&self) -> String {
        match &self.socket {
            Some(path) => format!("unix://{path}"),
            None => std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string()),
        }
    }

    async fn connect(&self) -> Result<Docker, BackendError> {
        let unreachable = |why: String| {
            BackendError::Failed(format!(
                "cannot reach the Docker daemon at {}: {why}; start it (`dockerd`, or `systemctl start docker`) or point DOCKER_HOST at it",
                self.address()
            ))
        };
        let docker = match &self.socket {
            Some(path) => Docker::connect_with_unix(
                path,
                REQUEST_TIMEOUT.as_secs(),
                bollard::API_DEFAULT_VERSION,
            ),
            None => Docker::connect_with_local_defaults(),
        };
        let docker = docker
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(REQUEST_TIMEOUT);
        match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(docker)) => Ok(docker),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!(
                "no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// True when `e` is the daemon answering with HTTP `status`.
pub fn is_status(e: &bollard::errors::Error, status: u16) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code, .. } if *status_code == status
    )
}

/// A failed API call, saying what was being done.
pub fn api_error(doing: &str, e: &bollard::errors::Error) -> BackendError {
    let why = match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::RequestTimeoutError => format!(
            "the Docker daemon did not answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        ),
        e => e.to_string(),
    };
    BackendError::Failed(format!("docker: {doing}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_absent_daemon_is_a_clear_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let connection = Connection::at_socket(socket.to_str().unwrap());
        let Err(BackendError::Failed(why)) = connection.get().await else {
            panic!("connected to nothing");
        };
        assert!(
            why.starts_with("cannot reach the Docker daemon at unix://"),
            "{why}"
        );
        assert!(why.contains("start it"), "{why}");
    }
}
