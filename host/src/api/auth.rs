//! The TCP listener's bearer token: every request on it must carry
//! `Authorization: Bearer TOKEN` (the scheme in any case, as RFC 9110
//! says), the token compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Answer 401 to a request without the token; pass the others on.
pub(super) async fn require_token(
    State(token): State<Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    if authorized(&req, &token) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// True when `req` carries `token`.
fn authorized(req: &Request, token: &str) -> bool {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    // Compare without an early exit, so timing does not leak the token.
    given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// The credentials of an `Authorization` value in the bearer scheme.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn with(value: &str) -> Request {
        Request::builder()
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .expect("a request")
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_exact() {
        for ok in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER  s3cret",
            " Bearer s3cret ",
        ] {
            assert!(authorized(&with(ok), "s3cret"), "{ok:?}");
        }
        for refused in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer S3CRET",
            "Basic s3cret",
            "Bearers3cret",
            "s3cret",
            "Bearer",
            "",
        ] {
            assert!(!authorized(&with(refused), "s3cret"), "{refused:?}");
        }
        let none = Request::builder().body(Body::empty()).expect("a request");
        assert!(!authorized(&none, "s3cret"));
    }
}
