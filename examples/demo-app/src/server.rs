//! Accepting connections and serving keep-alive requests on them, one thread
//! per connection.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::app::App;
use crate::http::{self, ReadError, Response, Status};
use crate::log;

/// Pause after a failed `accept` (e.g. out of file descriptors), so that the
/// loop does not spin and flood the log.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections forever, serving each on its own thread.
pub fn run(listener: &TcpListener, app: &Arc<App>) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => spawn_connection(stream, Arc::clone(app)),
            Err(error) => {
                log::error(format_args!("accept failed: {error}"));
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

/// Serves `stream` on a new thread; connection errors end it silently.
fn spawn_connection(stream: TcpStream, app: Arc<App>) {
    let spawned = thread::Builder::new().spawn(move || {
        let _ = serve(stream, &app);
    });
    if let Err(error) = spawned {
        log::error(format_args!("cannot start connection thread: {error}"));
    }
}

/// Serves requests on one connection until either side closes it.
fn serve(stream: TcpStream, app: &App) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = BufWriter::new(stream);
    let mut line = String::with_capacity(256);
    loop {
        let request = match http::read_request(&mut reader, &mut line) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(ReadError::Io(error)) => return Err(error),
            Err(ReadError::Malformed(status)) => return reject(&mut writer, app, status),
        };
        discard_body(&mut reader, request.content_length)?;
        let response = app.respond(request.route);
        http::write_response(
            &mut writer,
            &response,
            app.version(),
            request.head_only,
            request.keep_alive,
        )?;
        if !request.keep_alive {
            return writer.flush();
        }
        // Pipelined requests already buffered are answered in the same write.
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}

/// Answers an unacceptable request with `status`; the connection then closes.
fn reject(writer: &mut impl Write, app: &App, status: Status) -> io::Result<()> {
    let body = match status {
        Status::NotImplemented => "transfer encodings are not supported\n",
        _ => "bad request\n",
    };
    let response = Response { status, body };
    http::write_response(writer, &response, app.version(), false, false)?;
    writer.flush()
}

/// Reads and drops a body of `length` bytes.
fn discard_body(reader: &mut impl BufRead, length: u64) -> io::Result<()> {
    if length == 0 {
        return Ok(());
    }
    let discarded = io::copy(&mut Read::take(reader, length), &mut io::sink())?;
    if discarded < length {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
