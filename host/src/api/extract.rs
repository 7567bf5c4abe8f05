//! What handlers take from a request: path segments, query parameters
//! and a JSON body of bounded size that must keep arriving, through axum's
//! extractors but refused as [`ApiError`]s, so every refusal has the API's
//! error body.

use std::collections::HashMap;
use std::str::FromStr;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use super::CLIENT_IDLE;
use super::error::ApiError;

/// Largest request body: a policy upload (an 18 MB Python component is
/// 24 MB in base64) with room to spare.
const MAX_BODY: usize = 128 << 20;

/// A JSON request body of at most [`MAX_BODY`] bytes, each piece arriving
/// within [`CLIENT_IDLE`] of the last.
pub(super) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let mut body = Limited::new(req.into_body(), MAX_BODY);
        let mut bytes = Vec::new();
        loop {
            let frame = tokio::time::timeout(CLIENT_IDLE, body.frame())
                .await
                .map_err(|_| ApiError::Stalled(CLIENT_IDLE))?;
            match frame {
                None => break,
                Some(frame) => {
                    if let Ok(data) = frame.map_err(ApiError::Read)?.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
            }
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(ApiError::Malformed)
    }
}

/// The parameters of a route's path (`{name}`, `{id}`), decoded.
pub(super) struct Segments<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::from_request_parts(parts, state).await?;
        Ok(Segments(value))
    }
}

/// The parameters of the query string.
pub(super) struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Query(params) = Query::try_from_uri(&parts.uri)?;
        Ok(Params(params))
    }
}

impl Params {
    /// The number `key`, if given.
    pub(super) fn number<T: FromStr>(&self, key: &'static str) -> Result<Option<T>, ApiError> {
        self.0
            .get(key)
            .map(|value| {
                value.parse().map_err(|_| ApiError::NotANumber {
                    key,
                    value: value.clone(),
                })
            })
            .transpose()
    }
}
