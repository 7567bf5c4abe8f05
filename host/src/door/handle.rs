//! The agent's side of a front door: [`FrontDoor`] finds the door process
//! serving a port (or starts one), tells it the fleet's ready set and the
//! policy's weights, and asks it for its traffic. A door process found
//! gone is started again and told what the last one knew.

use std::io::{BufReader, ErrorKind};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::wire::{self, Opened, Reply, Request};
use crate::model::{InstanceId, RevisionId, RevisionStats};
use crate::proxy::{Door, Member};

/// How long a control request may take (a drain: its grace period more).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long a new door process may take to answer on its socket.
const START_WITHIN: Duration = Duration::from_secs(10);
/// The longest path a Unix socket address holds (`sun_path`, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Why a front door could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    /// Its control socket's path does not fit a Unix socket address.
    #[error(
        "the control socket path {0} is longer than {MAX_SOCKET_PATH} bytes: use a shorter home"
    )]
    SocketPath(PathBuf),
    /// The door process could not be started.
    #[error("cannot start the door process: {0}")]
    Spawn(#[source] std::io::Error),
    /// It started, then did not answer or exited.
    #[error("the door process did not answer on {socket}: {log}")]
    NoAnswer {
        /// Its control socket.
        socket: PathBuf,
        /// The end of its log, or why it is not known.
        log: String,
    },
    /// It answered no.
    #[error("{0}")]
    Refused(String),
    /// Its control socket failed.
    #[error("its control socket: {0}")]
    Io(#[from] std::io::Error),
}

/// What the agent last told the door, to tell a door process started
/// again.
struct Told {
    /// The ready set, once the fleet published one.
    members: Option<Vec<Member>>,
    /// The weights it splits traffic by.
    weights: Option<Vec<(RevisionId, u32)>>,
}

/// Where front door processes come from.
#[derive(Debug, Clone)]
pub struct Doors {
    /// The directory of their control sockets and logs.
    pub dir: PathBuf,
    /// The `rollout` program they run (`rollout door`).
    pub program: PathBuf,
}

impl Doors {
    /// Doors under `home`, running this program (as it is now, so that a
    /// rebuild replacing its file does not matter).
    pub fn of_home(home: &Path) -> std::io::Result<Doors> {
        let exe = std::env::current_exe()?;
        let program = match exe.to_string_lossy().strip_suffix(" (deleted)") {
            Some(path) => PathBuf::from(path),
            None => exe,
        };
        Ok(Doors {
            dir: home.join("doors"),
            program,
        })
    }

    /// The front door `opened` describes: the door process already
    /// serving exactly that is adopted (with the weights it has), one
    /// serving anything else on the port is closed, else a new one is
    /// started.
    pub fn open(&self, opened: Opened) -> Result<Arc<FrontDoor>, DoorError> {
        FrontDoor::open(self, opened)
    }
}

/// A front door served by a process of its own, which outlives the agent.
pub struct FrontDoor {
    program: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    opened: Opened,
    /// Whether a door process already served exactly this when it was
    /// opened (an earlier agent's).
    adopted: bool,
    /// Held while telling the door something, or starting it again, so
    /// that a newer ready set never arrives before an older one.
    told: Mutex<Told>,
    /// Set once closed: its process is never started again.
    closed: AtomicBool,
}

impl FrontDoor {
    /// See [`Doors::open`].
    fn open(doors: &Doors, opened: Opened) -> Result<Arc<FrontDoor>, DoorError> {
        let port = opened.addr.port();
        let socket = doors.dir.join(format!("{port}.sock"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(DoorError::SocketPath(socket));
        }
        std::fs::create_dir_all(&doors.dir)?;
        let mut door = FrontDoor {
            program: doors.program.clone(),
            log: doors.dir.join(format!("{port}.log")),
            socket,
            opened,
            adopted: false,
            told: Mutex::new(Told {
                members: None,
                weights: None,
            }),
            closed: AtomicBool::new(false),
        };
        match exchange(&door.socket, &Request::Hello, ANSWER_WITHIN) {
            Ok(Reply::Hello {
                opened: Some(o),
                weights,
                ..
            }) if o == door.opened => {
                door.adopted = true;
                door.told().weights = weights;
            }
            Ok(Reply::Hello {
                opened: None, pid, ..
            }) => {
                // Started by an agent that died before opening it.
                if let Err(e) = door.ask(&Request::Open(door.opened.clone())) {
                    gone(pid);
                    return Err(e);
                }
            }
            Ok(Reply::Hello { pid, .. }) => {
                let _ = exchange(&door.socket, &Request::Close, ANSWER_WITHIN);
                gone(pid);
                door.start()?;
            }
            _ => door.start()?,
        }
        Ok(Arc::new(door))
    }

    /// Whether an earlier agent's door process was taken over: it keeps
    /// serving the members and weights it had.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// What it serves.
    pub fn opened(&self) -> &Opened {
        &self.opened
    }

    /// How it treats its clients.
    pub fn door(&self) -> &Door {
        &self.opened.door
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.opened.addr
    }

    /// The instances that take traffic now (ready ones).
    pub fn set_members(&self, members: &[Member]) {
        let mut told = self.told();
        told.members = Some(members.to_vec());
        let request = Request::Members {
            members: members.to_vec(),
        };
        self.tell(&mut told, &request);
    }

    /// Split traffic by weight per revision (`None`: by instance count).
    pub fn set_weights(&self, weights: Option<Vec<(RevisionId, u32)>>) {
        let mut told = self.told();
        told.weights = weights.clone();
        self.tell(&mut told, &Request::Weights { weights });
    }

    /// The weights it splits traffic by (`None`: by instance count).
    pub fn weights(&self) -> Option<Vec<(RevisionId, u32)>> {
        self.told().weights.clone()
    }

    /// Take `ids` out of the table and wait until their requests in flight
    /// have finished, at most `grace`; how many were still in flight.
    pub async fn drain(self: &Arc<Self>, ids: &[InstanceId], grace: Duration) -> u64 {
        let (door, ids) = (self.clone(), ids.to_vec());
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let asked = tokio::task::spawn_blocking(move || {
            door.query(&Request::Drain { ids, grace_ms }, grace + ANSWER_WITHIN)
        })
        .await;
        match asked {
            Ok(Ok(Reply::Drained { in_flight })) => in_flight,
            Ok(other) => {
                self.complain("drain", other.map(|_| ()));
                0
            }
            Err(e) => {
                eprintln!("{}: front door: drain: {e}", self.opened.service);
                0
            }
        }
    }

    /// Revisions with traffic metrics, sorted.
    pub fn revisions(&self) -> Vec<RevisionId> {
        match self.query(&Request::Revisions, ANSWER_WITHIN) {
            Ok(Reply::Revisions { revisions }) => revisions,
            other => {
                self.complain("revisions", other.map(|_| ()));
                Vec::new()
            }
        }
    }

    /// Traffic of `revision` over the last `window`.
    pub fn stats(&self, revision: &str, window: Duration) -> RevisionStats {
        let request = Request::Stats {
            revision: revision.to_string(),
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
        };
        match self.query(&request, ANSWER_WITHIN) {
            Ok(Reply::Stats { stats }) => stats,
            other => {
                self.complain("stats", other.map(|_| ()));
                RevisionStats {
                    revision: revision.to_string(),
                    ..RevisionStats::default()
                }
            }
        }
    }

    /// Prometheus text for its traffic, appended to `out`.
    pub fn prometheus(&self, out: &mut String) {
        match self.query(&Request::Prometheus, ANSWER_WITHIN) {
            Ok(Reply::Text { text }) => out.push_str(&text),
            other => self.complain("metrics", other.map(|_| ())),
        }
    }

    /// Start its process again if it is gone (killed, or crashed), and tell
    /// it what the last one knew.
    pub fn ensure(&self) {
        let mut told = self.told();
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let restarted = self.restart(&mut told);
        self.complain("start again", restarted);
    }

    /// Stop its process: the service is gone, or its door moves.
    pub fn close(&self) {
        let _told = self.told();
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(Reply::Hello { pid, .. }) = exchange(&self.socket, &Request::Hello, ANSWER_WITHIN)
        {
            let _ = exchange(&self.socket, &Request::Close, ANSWER_WITHIN);
            gone(pid);
        }
    }

    fn told(&self) -> MutexGuard<'_, Told> {
        self.told.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send `request`, which changes what the door does, holding `told`;
    /// a door process found gone is started again first.
    fn tell(&self, told: &mut Told, request: &Request) {
        let sent = match exchange(&self.socket, request, ANSWER_WITHIN) {
            Err(e) if is_gone(&e) => self.restart(told).map(|()| Reply::Done),
            other => other.map_err(DoorError::from),
        };
        self.complain("update", sent.and_then(done));
    }

    /// Send `request`, which only asks; a door process found gone is
    /// started again, and asked again.
    fn query(&self, request: &Request, within: Duration) -> Result<Reply, DoorError> {
        match exchange(&self.socket, request, within) {
            Err(e) if is_gone(&e) => {
                self.restart(&mut self.told())?;
                Ok(exchange(&self.socket, request, within)?)
            }
            other => Ok(other?),
        }
    }

    /// Send `request` and expect it done.
    fn ask(&self, request: &Request) -> Result<(), DoorError> {
        done(exchange(&self.socket, request, ANSWER_WITHIN)?)
    }

    /// Start a door process again (unless another caller just did), and
    /// tell it what the last one knew.
    fn restart(&self, told: &mut Told) -> Result<(), DoorError> {
        if exchange(&self.socket, &Request::Hello, ANSWER_WITHIN).is_ok() {
            return Ok(());
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(DoorError::Refused("this front door is closed".into()));
        }
        eprintln!(
            "{}: the front door on {} was not running: starting it again",
            self.opened.service, self.opened.addr
        );
        self.start()?;
        self.ask(&Request::Weights {
            weights: told.weights.clone(),
        })?;
        if let Some(members) = &told.members {
            self.ask(&Request::Members {
                members: members.clone(),
            })?;
        }
        Ok(())
    }

    /// Start a door process, in a session of its own so that neither a
    /// signal to the agent's process group nor the agent's death reaches
    /// it, and open it.
    fn start(&self) -> Result<(), DoorError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.program);
        command
            .arg("door")
            .arg("--socket")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: between fork and exec the child only calls setsid, which
        // is async-signal-safe.
        unsafe {
            command.pre_exec(|| match libc::setsid() {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            });
        }
        let mut child = command.spawn().map_err(DoorError::Spawn)?;
        let until = Instant::now() + START_WITHIN;
        loop {
            if exchange(&self.socket, &Request::Hello, ANSWER_WITHIN).is_ok() {
                break;
            }
            let exited = child.try_wait()?;
            if exited.is_some() || Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DoorError::NoAnswer {
                    socket: self.socket.clone(),
                    log: log_tail(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Reaped when it exits, whichever agent closes it.
        std::thread::spawn(move || child.wait());
        self.ask(&Request::Open(self.opened.clone()))
    }

    /// Say that `what` failed, unless it did not.
    fn complain(&self, what: &str, result: Result<(), DoorError>) {
        if let Err(e) = result {
            eprintln!("{}: front door: {what}: {e}", self.opened.service);
        }
    }
}

/// `Ok` for [`Reply::Done`], the door's reason otherwise.
fn done(reply: Reply) -> Result<(), DoorError> {
    match reply {
        Reply::Done => Ok(()),
        Reply::Refused { error } => Err(DoorError::Refused(error)),
        other => Err(DoorError::Refused(format!("unexpected answer {other:?}"))),
    }
}

/// One request and its answer, on a connection of its own.
fn exchange(socket: &Path, request: &Request, within: Duration) -> std::io::Result<Reply> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(within))?;
    stream.set_write_timeout(Some(within))?;
    wire::send(&mut stream, request)?;
    wire::receive(&mut BufReader::new(stream))?.ok_or_else(|| {
        std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "the door closed its connection without answering",
        )
    })
}

/// Whether `e` means no door process answers there (none runs, or it died
/// while answering).
fn is_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
    )
}

/// Wait (a few seconds at most) until process `pid` has exited, so that
/// the port it listened on is free.
fn gone(pid: u32) {
    let until = Instant::now() + START_WITHIN;
    while runs(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether process `pid` runs (a zombie holds no port: it does not).
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        !matches!(state, Some('Z' | 'X') | None)
    })
}

/// The last lines of the log at `path`.
fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().rev().take(5).collect();
            match lines.is_empty() {
                true => "it exited without a word".into(),
                false => lines.into_iter().rev().collect::<Vec<_>>().join("\n"),
            }
        }
        Err(e) => format!("its log {}: {e}", path.display()),
    }
}
