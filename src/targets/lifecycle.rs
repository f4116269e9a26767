//! Changes to users a target already holds (`roster sync`): update, deactivate, reactivate
//! and delete, each built by the target from its documented endpoint (see
//! `../shared/VENDORS.md`), and how their answers read.

use crate::http::problem;
use crate::http::wait::server_wait;
use ::http::Method;
use ::http::header::HeaderMap;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime};

/// What is done to a user the target holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Its fields changed in the file.
    Update,
    /// It left (absent from the file): disabled, kept.
    Deactivate,
    /// It came back after a deactivation: enabled again, same remote id.
    Reactivate,
    /// It left, and `--leavers delete` asked for it to be removed.
    Delete,
}

impl Action {
    /// The word for messages and plans.
    pub fn word(self) -> &'static str {
        match self {
            Action::Update => "update",
            Action::Deactivate => "deactivate",
            Action::Reactivate => "reactivate",
            Action::Delete => "delete",
        }
    }
}

/// One request that changes one user.
#[derive(Debug, Clone)]
pub struct Change {
    /// The method.
    pub method: Method,
    /// The URL.
    pub url: String,
    /// The JSON body, if the request has one.
    pub body: Option<Vec<u8>>,
}

impl Change {
    /// `PATCH url` with a JSON object.
    pub fn patch(url: String, fields: Map<String, Value>) -> Change {
        Change::json(Method::PATCH, url, Value::Object(fields))
    }

    /// `method url` with a JSON body.
    pub fn json(method: Method, url: String, body: Value) -> Change {
        Change {
            method,
            url,
            body: Some(serde_json::to_vec(&body).expect("a JSON value always serialises")),
        }
    }

    /// `DELETE url`.
    pub fn delete(url: String) -> Change {
        Change {
            method: Method::DELETE,
            url,
            body: None,
        }
    }
}

/// What an update is built from: the create body (password left out) of the person as roster
/// last sent it and as the file says now, and the user as the target holds it, read first
/// where the target's update replaces the whole resource (Nexway).
#[derive(Debug, Clone, Copy)]
pub struct Bodies<'a> {
    /// As last sent.
    pub before: &'a Value,
    /// As the file says now.
    pub after: &'a Value,
    /// As the target holds it, when [`super::Api::reads_before_change`].
    pub current: Option<&'a Value>,
    /// The person's normalised values now (a generic profile's body templates read them).
    pub user: &'a crate::model::UserFields,
}

/// The top-level attributes of `after` whose values differ from `before`'s, with their new
/// values (an attribute `after` dropped is not listed: a create body omits empty fields, and
/// an update never clears a field by leaving it out).
pub fn changed_keys(before: &Value, after: &Value) -> Map<String, Value> {
    let mut changed = Map::new();
    if let Value::Object(after) = after {
        for (key, value) in after {
            if before.get(key) != Some(value) {
                changed.insert(key.clone(), value.clone());
            }
        }
    }
    changed
}

/// `{endpoint}/{id}`: where most APIs keep the user with that id.
pub fn by_id(endpoint: &str, remote_id: &str) -> String {
    format!(
        "{}/{}",
        endpoint.trim_end_matches('/'),
        super::path_segment(remote_id)
    )
}

/// `current` with `changes` written over it: a complete resource for a `PUT` that replaces
/// it, so that what roster does not manage (status, roles) is sent back as it was.
pub fn overlay(current: Option<&Value>, changes: Map<String, Value>) -> Value {
    let mut resource = match current {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    resource.extend(changes);
    Value::Object(resource)
}

/// `{"status": value}`: the disabled/enabled switch of the sandbox and Nexway.
pub fn status(value: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("status".into(), Value::String(value.into()));
    map
}

/// Why a target cannot do `action`, for the message and the plan.
pub fn unsupported(action: Action, why: &str) -> String {
    format!("it cannot {} a user: {why}", action.word())
}

/// How a change's answer reads.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeVerdict {
    /// Done (any 2xx).
    Done,
    /// The target no longer holds this user (404, 410).
    Gone,
    /// Transient: try again after backoff (and at least `wait`).
    Retry {
        /// The server's requested wait.
        wait: Option<Duration>,
    },
    /// Going on is pointless: stop.
    Fatal {
        /// Why.
        message: String,
    },
    /// Refused for this user.
    Rejected {
        /// The API's message.
        message: String,
    },
}

/// The usual reading of an answer to a change: 2xx done, 404/410 gone, 405/501 refused (the
/// method is not supported), 408/425/429/other 5xx transient, 401/403 fatal, a redirect refused (never followed: the request carries
/// credentials and a person), any other status a refusal with the API's message.
pub fn classify_change(status: u16, headers: &HeaderMap, body: &[u8]) -> ChangeVerdict {
    match status {
        200..=299 => ChangeVerdict::Done,
        404 | 410 => ChangeVerdict::Gone,
        // The server does not take this method: no retry cures that (a fallback may).
        405 | 501 => ChangeVerdict::Rejected {
            message: format!("HTTP {status}: {}", problem::summary(body)),
        },
        401 | 403 => ChangeVerdict::Fatal {
            message: format!(
                "credentials refused (HTTP {status}): {}",
                problem::summary(body)
            ),
        },
        408 | 425 | 429 | 500..=599 => ChangeVerdict::Retry {
            wait: server_wait(headers, SystemTime::now()),
        },
        300..=399 => ChangeVerdict::Rejected {
            message: format!("redirected (HTTP {status}): roster does not follow redirects"),
        },
        _ => ChangeVerdict::Rejected {
            message: format!("HTTP {status}: {}", problem::summary(body)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_changed_attributes_are_listed_and_a_put_keeps_the_rest() {
        let before = json!({"email": "a@x.io", "firstName": "Ann", "phone": "+1"});
        let after = json!({"email": "a@x.io", "firstName": "Anna"});
        let changed = changed_keys(&before, &after);
        assert_eq!(Value::Object(changed.clone()), json!({"firstName": "Anna"}));
        let current = json!({"id": "7", "firstName": "Ann", "status": "ENABLED", "roles": ["r"]});
        assert_eq!(
            overlay(Some(&current), changed),
            json!({"id": "7", "firstName": "Anna", "status": "ENABLED", "roles": ["r"]})
        );
    }

    #[test]
    fn answers_to_changes_are_classified() {
        let h = HeaderMap::new();
        assert_eq!(classify_change(204, &h, b""), ChangeVerdict::Done);
        assert_eq!(classify_change(404, &h, b""), ChangeVerdict::Gone);
        assert!(matches!(
            classify_change(503, &h, b""),
            ChangeVerdict::Retry { .. }
        ));
        assert!(matches!(
            classify_change(401, &h, b""),
            ChangeVerdict::Fatal { .. }
        ));
        assert!(matches!(
            classify_change(400, &h, br#"{"message":"bad"}"#),
            ChangeVerdict::Rejected { .. }
        ));
        assert!(matches!(
            classify_change(308, &h, b""),
            ChangeVerdict::Rejected { .. }
        ));
    }
}
