//! How an agent marks what it runs on a Docker host (containers, Swarm
//! services): names and labels that say whose and which instance each is.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::backend::live::{Launch, StartRequest};

/// Label holding the home directory of the agent that started it.
pub const HOME_LABEL: &str = "rollout.home";
/// Label holding the service.
pub const SERVICE_LABEL: &str = "rollout.service";
/// Label holding the revision.
pub const REVISION_LABEL: &str = "rollout.revision";
/// Label holding the instance id.
pub const INSTANCE_LABEL: &str = "rollout.instance";

/// The agent, as its Docker objects name it.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The agent's home, as [`HOME_LABEL`].
    home: String,
    /// Short digest of `home`, in names: two agents on one Docker host
    /// never share a name.
    key: String,
}

impl Owner {
    /// The agent whose home is `home`.
    pub fn new(home: &Path) -> Owner {
        let home = home.display().to_string();
        let digest = Sha256::digest(home.as_bytes());
        let key = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Owner { home, key }
    }

    /// The name of instance `id`'s container or service.
    pub fn name(&self, id: &str) -> String {
        format!("rollout-{}-{id}", self.key)
    }

    /// The labels of the instance `request` starts.
    pub fn labels(&self, request: &StartRequest<'_>) -> HashMap<String, String> {
        HashMap::from([
            (HOME_LABEL.to_string(), self.home.clone()),
            (SERVICE_LABEL.to_string(), request.service.to_string()),
            (REVISION_LABEL.to_string(), request.launch.revision.clone()),
            (INSTANCE_LABEL.to_string(), request.id.to_string()),
        ])
    }

    /// True when `labels` mark something of this agent's.
    pub fn owns(&self, labels: Option<&HashMap<String, String>>) -> bool {
        labels.is_some_and(|l| l.get(HOME_LABEL) == Some(&self.home))
    }

    /// The label filters that select this agent's objects of `service`.
    pub fn filters(&self, service: &str) -> HashMap<&'static str, Vec<String>> {
        HashMap::from([(
            "label",
            vec![
                format!("{HOME_LABEL}={}", self.home),
                format!("{SERVICE_LABEL}={service}"),
            ],
        )])
    }
}

/// The image of a launch, or why it has none.
pub fn image(launch: &Launch) -> Result<String, crate::backend::BackendError> {
    launch.image.clone().ok_or_else(|| {
        crate::backend::BackendError::Failed(format!("revision {} names no image", launch.revision))
    })
}

/// What a launch runs in its image: (entrypoint override, arguments
/// override); `None` keeps the image's.
pub fn entrypoint(launch: &Launch) -> (Option<Vec<String>>, Option<Vec<String>>) {
    match (launch.command.is_empty(), launch.args.is_empty()) {
        (false, _) => (
            Some(vec![launch.command.clone()]),
            Some(launch.args.clone()),
        ),
        (true, false) => (None, Some(launch.args.clone())),
        (true, true) => (None, None),
    }
}

/// `KEY=VALUE` lines of an instance's environment.
pub fn env_lines(env: &[(String, String)]) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Docker's json-file log options capping its own copy of the output at
/// about `max_bytes` (two files).
pub fn log_options(max_bytes: u64) -> HashMap<String, String> {
    HashMap::from([
        ("max-size".to_string(), max_bytes.to_string()),
        ("max-file".to_string(), "2".to_string()),
    ])
}
