//! Just enough HTTP/1.x: reading request heads and writing responses, without
//! per-request allocations.

use std::io::{self, BufRead, Read, Write};

/// Longest accepted request or header line, in bytes.
const MAX_LINE: usize = 8192;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 100;

/// The endpoints the app knows; the query string is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/`
    Root,
    /// `/version`
    Version,
    /// `/healthz`
    Healthz,
    /// Any other path.
    Unknown,
}

impl Route {
    /// Routes a request target such as `/healthz?full=1`.
    fn from_target(target: &str) -> Self {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        match path {
            "/" => Self::Root,
            "/version" => Self::Version,
            "/healthz" => Self::Healthz,
            _ => Self::Unknown,
        }
    }
}

/// What the server needs to know about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Where the request goes.
    pub route: Route,
    /// `HEAD`: answer with headers only.
    pub head_only: bool,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Length of the body to read and discard.
    pub content_length: u64,
}

/// The response statuses the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200
    Ok,
    /// 400
    BadRequest,
    /// 404
    NotFound,
    /// 500
    InternalServerError,
    /// 501
    NotImplemented,
    /// 503
    ServiceUnavailable,
}

impl Status {
    /// The numeric code and reason phrase.
    fn code_and_reason(self) -> (u16, &'static str) {
        match self {
            Self::Ok => (200, "OK"),
            Self::BadRequest => (400, "Bad Request"),
            Self::NotFound => (404, "Not Found"),
            Self::InternalServerError => (500, "Internal Server Error"),
            Self::NotImplemented => (501, "Not Implemented"),
            Self::ServiceUnavailable => (503, "Service Unavailable"),
        }
    }
}

/// A plain-text response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The status line's status.
    pub status: Status,
    /// The body (omitted on the wire for `HEAD`).
    pub body: &'a str,
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed or closed mid-request: give up silently.
    Io(io::Error),
    /// The request is not acceptable: answer with this status and close.
    Malformed(Status),
}

impl From<io::Error> for ReadError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// Reads one request head, using `line` as scratch space. `Ok(None)` means
/// the client closed the connection cleanly between requests.
pub fn read_request(
    reader: &mut impl BufRead,
    line: &mut String,
) -> Result<Option<Request>, ReadError> {
    let start = loop {
        if !read_line(reader, line)? {
            return Ok(None);
        }
        // Empty lines before a request line are tolerated (RFC 9112 2.2).
        if !line.is_empty() {
            break parse_request_line(line).map_err(ReadError::Malformed)?;
        }
    };
    let mut headers = Headers::default();
    for _ in 0..=MAX_HEADERS {
        if !read_line(reader, line)? {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        if line.is_empty() {
            return Ok(Some(start.with_headers(&headers)));
        }
        headers.apply(line).map_err(ReadError::Malformed)?;
    }
    Err(ReadError::Malformed(Status::BadRequest))
}

/// Writes a response; `version` goes in the `X-Version` header.
pub fn write_response(
    out: &mut impl Write,
    response: &Response<'_>,
    version: &str,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let (code, reason) = response.status.code_and_reason();
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        out,
        "HTTP/1.1 {code} {reason}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         X-Version: {version}\r\n\
         Connection: {connection}\r\n\r\n",
        response.body.len()
    )?;
    if !head_only {
        out.write_all(response.body.as_bytes())?;
    }
    Ok(())
}

/// Reads one line into `line` without its line ending; `false` at a clean
/// end of input.
fn read_line(reader: &mut impl BufRead, line: &mut String) -> Result<bool, ReadError> {
    line.clear();
    let read = match Read::take(&mut *reader, MAX_LINE as u64).read_line(line) {
        Ok(read) => read,
        Err(error) if error.kind() == io::ErrorKind::InvalidData => {
            return Err(ReadError::Malformed(Status::BadRequest));
        }
        Err(error) => return Err(error.into()),
    };
    if read == 0 {
        return Ok(false);
    }
    if !line.ends_with('\n') {
        return Err(if read >= MAX_LINE {
            ReadError::Malformed(Status::BadRequest)
        } else {
            io::Error::from(io::ErrorKind::UnexpectedEof).into()
        });
    }
    let len = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(len);
    Ok(true)
}

/// The parts of a request line the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestLine {
    route: Route,
    head_only: bool,
    http11: bool,
}

impl RequestLine {
    /// Completes the request with what its headers say.
    fn with_headers(self, headers: &Headers) -> Request {
        let keep_alive = !headers.close && (self.http11 || headers.keep_alive);
        Request {
            route: self.route,
            head_only: self.head_only,
            keep_alive,
            content_length: headers.content_length.unwrap_or(0),
        }
    }
}

/// Parses `METHOD TARGET HTTP/1.x`. Any method is accepted; only `HEAD` is
/// treated differently.
fn parse_request_line(line: &str) -> Result<RequestLine, Status> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Status::BadRequest),
    };
    if method.is_empty() || !target.starts_with('/') {
        return Err(Status::BadRequest);
    }
    Ok(RequestLine {
        route: Route::from_target(target),
        head_only: method == "HEAD",
        http11,
    })
}

/// The headers the server cares about.
#[derive(Debug, Default)]
struct Headers {
    content_length: Option<u64>,
    close: bool,
    keep_alive: bool,
}

impl Headers {
    /// Takes one `Name: value` line into account.
    fn apply(&mut self, line: &str) -> Result<(), Status> {
        let (name, value) = line.split_once(':').ok_or(Status::BadRequest)?;
        // Whitespace around the name means obsolete line folding or a
        // request-smuggling attempt: reject both.
        if name.is_empty() || name.starts_with([' ', '\t']) || name.ends_with([' ', '\t']) {
            return Err(Status::BadRequest);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            self.set_content_length(value)
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            Err(Status::NotImplemented)
        } else if name.eq_ignore_ascii_case("connection") {
            self.set_connection(value);
            Ok(())
        } else {
            Ok(())
        }
    }

    /// Records a `Content-Length`; repeated values must agree.
    fn set_content_length(&mut self, value: &str) -> Result<(), Status> {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Status::BadRequest);
        }
        let length = value.parse().map_err(|_| Status::BadRequest)?;
        match self.content_length.replace(length) {
            Some(previous) if previous != length => Err(Status::BadRequest),
            _ => Ok(()),
        }
    }

    /// Records the `close` and `keep-alive` options of a `Connection` header.
    fn set_connection(&mut self, value: &str) {
        for option in value.split(',').map(str::trim) {
            self.close |= option.eq_ignore_ascii_case("close");
            self.keep_alive |= option.eq_ignore_ascii_case("keep-alive");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str) -> Result<Option<Request>, ReadError> {
        read_request(&mut input.as_bytes(), &mut String::new())
    }

    fn parse(input: &str) -> Request {
        read(input).expect("valid request").expect("one request")
    }

    fn malformed(input: &str) -> Status {
        match read(input) {
            Err(ReadError::Malformed(status)) => status,
            other => panic!("expected a malformed request, got {other:?}"),
        }
    }

    #[test]
    fn routes_paths_and_ignores_queries() {
        for (target, route) in [
            ("/", Route::Root),
            ("/?a=b", Route::Root),
            ("/version", Route::Version),
            ("/healthz?x", Route::Healthz),
            ("/healthz/", Route::Unknown),
            ("/nope", Route::Unknown),
        ] {
            let request = parse(&format!("GET {target} HTTP/1.1\r\n\r\n"));
            assert_eq!(request.route, route, "{target}");
        }
    }

    #[test]
    fn http11_keeps_alive_unless_closed() {
        let request = parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(request.keep_alive && !request.head_only);
        assert_eq!(request.content_length, 0);
        let request = parse("GET / HTTP/1.1\r\nconnection: Close\r\n\r\n");
        assert!(!request.keep_alive);
    }

    #[test]
    fn http10_closes_unless_keep_alive_asked() {
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").keep_alive);
        let request = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive, foo\r\n\r\n");
        assert!(request.keep_alive);
    }

    #[test]
    fn head_and_content_length_are_read() {
        assert!(parse("HEAD / HTTP/1.1\r\n\r\n").head_only);
        let request = parse("POST / HTTP/1.1\nContent-Length:  12 \n\nhello world!");
        assert_eq!(request.content_length, 12);
    }

    #[test]
    fn consecutive_requests_and_clean_eof() {
        let mut input = "\r\nGET /version HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\n".as_bytes();
        let mut line = String::new();
        let first = read_request(&mut input, &mut line).unwrap().unwrap();
        let second = read_request(&mut input, &mut line).unwrap().unwrap();
        assert_eq!((first.route, second.head_only), (Route::Version, true));
        assert!(read_request(&mut input, &mut line).unwrap().is_none());
    }

    #[test]
    fn truncated_request_is_an_io_error() {
        assert!(matches!(
            read("GET / HTTP/1.1\r\nHost"),
            Err(ReadError::Io(_))
        ));
        assert!(matches!(read("GET / HTTP/1.1\r\n"), Err(ReadError::Io(_))));
    }

    #[test]
    fn bad_requests_are_rejected() {
        for input in [
            "GET /\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET x HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert_eq!(malformed(input), Status::BadRequest, "{input:?}");
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE));
        assert_eq!(malformed(&long), Status::BadRequest);
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(malformed(&many), Status::BadRequest);
    }

    #[test]
    fn transfer_encoding_is_not_implemented() {
        let input = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(malformed(input), Status::NotImplemented);
    }

    #[test]
    fn responses_have_length_version_and_connection() {
        let response = Response {
            status: Status::ServiceUnavailable,
            body: "starting\n",
        };
        let mut out = Vec::new();
        write_response(&mut out, &response, "v2", false, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 9\r\nX-Version: v2\r\nConnection: keep-alive\r\n\r\nstarting\n"
        );
        let mut out = Vec::new();
        write_response(&mut out, &response, "v2", true, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("Content-Length: 9\r\nX-Version: v2\r\nConnection: close\r\n\r\n"));
    }
}
