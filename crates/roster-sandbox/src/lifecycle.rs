//! What a profile does to users it already holds (for `roster sync`): read one by id, change
//! it (`PATCH` merges, `PUT` replaces the whole resource), and delete it — each in that API's
//! shapes, as its documentation (`../shared/VENDORS.md`) describes:
//!
//! | profile | read | change | delete |
//! |---|---|---|---|
//! | sandbox | `GET /users/{id}` | `PATCH /users/{id}` (fields, `status`) | `DELETE /users/{id}` |
//! | cryptlex | `GET /v3/users/{id}` | `PATCH /v3/users/{id}` | `DELETE /v3/users/{id}` |
//! | crayon | `GET /api/v1/users/{id}` | `PUT /api/v1/users/{id}` (UserName, FirstName, LastName, TenantAdmin) | `DELETE` (answers `true`) |
//! | nexway | `GET /iam/users/{id}` | `PUT /iam/users/{id}`: a complete resource; what it leaves out is cleared (`status`, `roles`) | `DELETE` |
//! | cradl | `GET /users/{id}` | `PATCH /users/{id}` (metadata, roleIds, name, description) | `DELETE` |
//! | scim | `GET /Users/{id}` | `PATCH /Users/{id}` (RFC 7644 `PatchOp`), `PUT` (replace) | `DELETE` (then 404) |
//!
//! cl2c updates only the caller's own profile: it has none of these for other users.
//!
//! Each user keeps its resource as last sent (the password left out); a change that leaves it
//! as it was is not counted, so [`crate::Sandbox::changes`] counts what really changed.

use super::profiles::{Profile, problem};
use super::{Shared, StoredUser, authorized, lock};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The key a profile's user resource carries its id under.
fn id_key(profile: Profile) -> &'static str {
    match profile {
        Profile::Crayon => "Id",
        Profile::Cradl => "userId",
        _ => "id",
    }
}

/// The body a user was created with, as the profile keeps it: the password never.
pub(crate) fn kept_resource(body: &[u8]) -> Value {
    let mut value: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
    if let Some(map) = value.as_object_mut() {
        map.remove("password");
        map.remove("Password");
    }
    value
}

/// The user as `GET {path}/{id}` shows it: its resource with its id.
fn shown(profile: Profile, user: &StoredUser) -> Value {
    let mut resource = match &user.resource {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    resource.insert(id_key(profile).into(), Value::String(user.id.clone()));
    if profile == Profile::Sandbox {
        resource.insert(
            "status".into(),
            Value::String(user.status.clone().unwrap_or_else(|| "ENABLED".into())),
        );
    }
    Value::Object(resource)
}

/// The routes of one profile's users by id.
pub(crate) fn user_routes(profile: Profile) -> Router<Arc<Shared>> {
    let mut router = Router::new();
    if profile == Profile::Cl2c {
        return router;
    }
    let base = profile.create_paths()[0].trim_end_matches('/');
    let path = format!("{base}/{{id}}");
    let handler = get(
        move |State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>| async move {
            read(&shared, profile, &headers, &id)
        },
    )
    .patch(
        move |State(shared): State<Arc<Shared>>,
              headers: HeaderMap,
              Path(id): Path<String>,
              body: Bytes| async move {
            pause(&shared).await;
            change(&shared, profile, &headers, &id, Method::Patch, &body)
        },
    )
    .put(
        move |State(shared): State<Arc<Shared>>,
              headers: HeaderMap,
              Path(id): Path<String>,
              body: Bytes| async move {
            pause(&shared).await;
            change(&shared, profile, &headers, &id, Method::Put, &body)
        },
    )
    .delete(
        move |State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>| async move {
            pause(&shared).await;
            remove(&shared, profile, &headers, &id)
        },
    );
    router = router.route(&path, handler);
    router
}

/// The configured `delay`, as the create endpoint waits it.
async fn pause(shared: &Shared) {
    if !shared.config.delay.is_zero() {
        tokio::time::sleep(shared.config.delay).await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Patch,
    Put,
}

fn not_found(profile: Profile, id: &str) -> Response {
    match profile {
        Profile::Scim => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                              "status": "404", "detail": format!("User {id} not found")}),
            ),
        )
            .into_response(),
        _ => problem(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("no user {id}"),
            None,
        ),
    }
}

/// The (profile, email) key of the user with this id.
fn key_of(shared: &Shared, profile: Profile, id: &str) -> Option<(Profile, String)> {
    lock(&shared.users)
        .iter()
        .find(|((p, _), u)| *p == profile && u.id == id)
        .map(|(k, _)| k.clone())
}

fn read(shared: &Shared, profile: Profile, headers: &HeaderMap, id: &str) -> Response {
    if !authorized(shared, profile, headers) {
        return profile.unauthorized();
    }
    let users = lock(&shared.users);
    match users
        .values()
        .find(|u| u.profile == Some(profile) && u.id == id)
    {
        Some(user) => axum::Json(shown(profile, user)).into_response(),
        None => not_found(profile, id),
    }
}

fn remove(shared: &Shared, profile: Profile, headers: &HeaderMap, id: &str) -> Response {
    if !authorized(shared, profile, headers) {
        return profile.unauthorized();
    }
    let Some(key) = key_of(shared, profile, id) else {
        return not_found(profile, id);
    };
    lock(&shared.users).remove(&key);
    shared.counters.deleted.fetch_add(1, Ordering::Relaxed);
    *lock(&shared.changes).entry(key.1).or_insert(0) += 1;
    match profile {
        Profile::Crayon => axum::Json(json!(true)).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Where a profile's PATCH is documented to accept what: Cradl's only metadata, roleIds,
/// name and description; Crayon and Nexway take PUT only.
fn refusal(profile: Profile, method: Method, body: &Value) -> Option<String> {
    match (profile, method) {
        (Profile::Crayon | Profile::Nexway, Method::Patch) => {
            Some("this API updates users with PUT".into())
        }
        (Profile::Cradl | Profile::Cryptlex | Profile::Sandbox, Method::Put) => {
            Some("this API updates users with PATCH".into())
        }
        (Profile::Cradl, Method::Patch) => body.as_object().and_then(|map| {
            map.keys()
                .find(|k| !["metadata", "roleIds", "name", "description"].contains(&k.as_str()))
                .map(|k| format!("`{k}` cannot be changed"))
        }),
        (Profile::Nexway, Method::Put) => ["email", "firstName", "lastName", "userName"]
            .iter()
            .find(|k| {
                body.get(**k)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            })
            .map(|k| format!("`{k}` is required: PUT takes a complete user")),
        (Profile::Crayon, Method::Put) => ["UserName", "FirstName", "LastName"]
            .iter()
            .find(|k| {
                body.get(**k)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            })
            .map(|k| format!("`{k}` is required")),
        _ => None,
    }
}

/// The resource after a SCIM `PatchOp`: each `replace` or `add` sets its path (a top-level
/// attribute, or one level down: `name.givenName`), or merges its value's attributes.
fn scim_patch(resource: &mut Map<String, Value>, body: &Value) -> Result<(), String> {
    let ops = body
        .get("Operations")
        .and_then(Value::as_array)
        .ok_or("a PatchOp needs `Operations`")?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        if kind != "replace" && kind != "add" {
            return Err(format!("unsupported op `{kind}`"));
        }
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        match op.get("path").and_then(Value::as_str) {
            None => match value {
                Value::Object(map) => resource.extend(map),
                _ => return Err("an op without a path needs an object value".into()),
            },
            Some(path) => match path.split_once('.') {
                Some((outer, inner)) => {
                    let entry = resource
                        .entry(outer.to_string())
                        .or_insert_with(|| json!({}));
                    if !entry.is_object() {
                        *entry = json!({});
                    }
                    entry
                        .as_object_mut()
                        .expect("made an object")
                        .insert(inner.to_string(), value);
                }
                None => {
                    resource.insert(path.to_string(), value);
                }
            },
        }
    }
    Ok(())
}

fn change(
    shared: &Shared,
    profile: Profile,
    headers: &HeaderMap,
    id: &str,
    method: Method,
    body: &[u8],
) -> Response {
    if !authorized(shared, profile, headers) {
        return profile.unauthorized();
    }
    let Some(key) = key_of(shared, profile, id) else {
        return not_found(profile, id);
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "the body is not JSON",
            None,
        );
    };
    if method == Method::Patch && shared.config.no_patch {
        return (
            StatusCode::NOT_IMPLEMENTED,
            axum::Json(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                              "status": "501", "detail": "PATCH is not supported"}),
            ),
        )
            .into_response();
    }
    if let Some(why) = refusal(profile, method, &body) {
        return problem(StatusCode::BAD_REQUEST, "Bad Request", &why, None);
    }
    let mut users = lock(&shared.users);
    let Some(user) = users.get_mut(&key) else {
        return not_found(profile, id);
    };
    let before = user.clone();
    let mut resource = match (&user.resource, method) {
        (Value::Object(map), Method::Patch) => map.clone(),
        _ => Map::new(),
    };
    let patched = match (profile, method) {
        (Profile::Scim, Method::Patch) => scim_patch(&mut resource, &body),
        _ => match kept_resource(&serde_json::to_vec(&body).unwrap_or_default()) {
            Value::Object(map) => {
                for (k, v) in map {
                    resource.insert(k, v);
                }
                Ok(())
            }
            _ => Err("the body is not a JSON object".into()),
        },
    };
    if let Err(why) = patched {
        return problem(StatusCode::BAD_REQUEST, "Bad Request", &why, None);
    }
    resource.remove(id_key(profile));
    let resource = Value::Object(resource);
    let raw = match profile.read(&serde_json::to_vec(&resource).unwrap_or_default()) {
        Ok(raw) => raw,
        Err(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "the user cannot be read",
                None,
            );
        }
    };
    // What the store models, re-read from the resource; what it does not (title, roles,
    // metadata) stays in the resource itself.
    if let Some(first) = raw.first_name {
        user.first_name = first;
    }
    if let Some(last) = raw.last_name {
        user.last_name = last;
    }
    if method == Method::Put || raw.username.is_some() {
        user.username = raw.username;
    }
    if method == Method::Put || raw.phone.is_some() {
        user.phone = raw.phone;
    }
    if let Some(role) = raw.role {
        user.role = role;
    } else if profile == Profile::Crayon {
        user.role = "user".into();
    }
    user.status = match (profile, method) {
        // A complete resource without a status leaves the user without one: disabled.
        (Profile::Nexway, Method::Put) => raw.status.or(Some("DISABLED".into())),
        (Profile::Scim, _) => raw.status.or(before.status.clone()),
        (Profile::Sandbox, _) => resource
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(before.status.clone()),
        _ => before.status.clone(),
    };
    user.resource = resource;
    let changed = *user != before;
    let shown = shown(profile, user);
    drop(users);
    if changed {
        *lock(&shared.changes).entry(key.1).or_insert(0) += 1;
        shared.counters.updated.fetch_add(1, Ordering::Relaxed);
    }
    axum::Json(shown).into_response()
}
