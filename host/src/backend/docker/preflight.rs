//! The container backends' preflight: a revision whose image the Docker
//! host lacks is refused before a rollout changes anything (the backends
//! never pull).

use super::client::{Connection, api_error, is_status};
use super::owner::image;
use crate::backend::BackendError;
use crate::backend::runner::Launch;

/// Check that the Docker host has the image `launch` runs.
pub(crate) async fn check(docker: &Connection, launch: &Launch) -> Result<(), BackendError> {
    let image = image(launch)?;
    match docker.get().await?.inspect_image(&image).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Err(missing_image(&image)),
        Err(e) => Err(api_error(&format!("inspecting image {image}"), &e)),
    }
}

/// The Docker host has no `image`: what to do about it.
pub(crate) fn missing_image(image: &str) -> BackendError {
    BackendError::Failed(format!(
        "revision.image: image {image} is not on the Docker host (rollout never pulls): build it (`docker build -t {image} .`) or pull it (`docker pull {image}`)"
    ))
}
