//! How an agent marks what it runs on a Docker host (containers, Swarm
//! services): names and labels that say whose and which instance each is.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::backend::runner::{Launch, StartRequest};

/// Label holding the id of the agent that started it: what makes it ours.
pub const AGENT_LABEL: &str = "rollout.agent";
/// Label holding the home directory of the agent that started it (for
/// people and scripts; two agents may share a home path on two machines).
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
    /// The agent's id (8 hex digits, made once per home), as
    /// [`AGENT_LABEL`] and in names: two agents on one Docker host never
    /// share a name or take each other's containers.
    id: String,
}

impl Owner {
    /// The agent whose home is `home`: its id is read from `HOME/agent.id`,
    /// made there the first time.
    pub fn of_home(home: &Path) -> std::io::Result<Owner> {
        let file = home.join("agent.id");
        let id = match std::fs::read_to_string(&file) {
            Ok(id) if is_id(id.trim()) => id.trim().to_string(),
            _ => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                let seed = format!("{}:{}:{nanos}", home.display(), std::process::id());
                let digest = Sha256::digest(seed.as_bytes());
                let id: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
                std::fs::write(&file, format!("{id}\n"))?;
                id
            }
        };
        Ok(Owner {
            home: home.display().to_string(),
            id,
        })
    }

    /// The name of instance `id`'s container or service.
    pub fn name(&self, id: &str) -> String {
        format!("rollout-{}-{id}", self.id)
    }

    /// The labels of the instance `request` starts.
    pub fn labels(&self, request: &StartRequest<'_>) -> HashMap<String, String> {
        HashMap::from([
            (AGENT_LABEL.to_string(), self.id.clone()),
            (HOME_LABEL.to_string(), self.home.clone()),
            (SERVICE_LABEL.to_string(), request.service.to_string()),
            (REVISION_LABEL.to_string(), request.launch.revision.clone()),
            (INSTANCE_LABEL.to_string(), request.id.to_string()),
        ])
    }

    /// True when `labels` mark something of this agent's.
    pub fn owns(&self, labels: Option<&HashMap<String, String>>) -> bool {
        labels.is_some_and(|l| l.get(AGENT_LABEL) == Some(&self.id))
    }

    /// Of `found` (an object's labels, and what names it to the API), the
    /// instances not in `known`: (instance id, name or id to remove).
    pub fn strays(
        found: impl IntoIterator<Item = (Option<HashMap<String, String>>, Option<String>)>,
        known: &[String],
    ) -> Vec<(String, String)> {
        found
            .into_iter()
            .filter_map(|(labels, handle)| {
                let instance = labels.and_then(|mut l| l.remove(INSTANCE_LABEL))?;
                Some((instance, handle?))
            })
            .filter(|(instance, _)| !known.contains(instance))
            .collect()
    }

    /// The label filters that select this agent's objects of `service`.
    pub fn filters(&self, service: &str) -> HashMap<&'static str, Vec<String>> {
        HashMap::from([(
            "label",
            vec![
                format!("{AGENT_LABEL}={}", self.id),
                format!("{SERVICE_LABEL}={service}"),
            ],
        )])
    }
}

/// The image of a launch, or why it has none.
pub fn image(launch: &Launch) -> Result<String, crate::backend::BackendError> {
    launch.image.clone().ok_or_else(|| {
        crate::backend::BackendError::Failed(format!(
            "revision {} names no image: set `image` under [revision] in the spec",
            launch.revision
        ))
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

/// True for an agent id: 8 lowercase hex digits.
fn is_id(text: &str) -> bool {
    text.len() == 8
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strays_are_the_labelled_instances_nobody_knows() {
        let labelled = |id: &str| Some(HashMap::from([(INSTANCE_LABEL.to_string(), id.into())]));
        let found = [
            (labelled("web-r1-1"), Some("c1".to_string())),
            (labelled("web-r1-2"), Some("c2".to_string())),
            (None, Some("c3".to_string())),
            (labelled("web-r1-4"), None),
        ];
        assert_eq!(
            Owner::strays(found, &["web-r1-1".to_string()]),
            [("web-r1-2".to_string(), "c2".to_string())]
        );
    }

    #[test]
    fn an_agent_keeps_its_id_and_two_homes_differ() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = Owner::of_home(one.path()).unwrap();
        assert!(is_id(&first.id), "{}", first.id);
        assert_eq!(Owner::of_home(one.path()).unwrap().id, first.id);
        assert_ne!(Owner::of_home(two.path()).unwrap().id, first.id);
        assert_eq!(
            first.name("web-r1-1"),
            format!("rollout-{}-web-r1-1", first.id)
        );
    }
}
