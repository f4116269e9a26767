//! The sandbox's vendor profiles: each fakes one target's create-user API as its documentation
//! describes it — path, body casing, required fields, success status and body, error shape,
//! duplicate answer and authentication — so every target is tested end to end over HTTP.

use super::StoredUser;
use super::rules::{self, Canon, Demands, Raw, Refusal};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A faked API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// roster's own API (`POST /users`).
    Sandbox,
    /// Cryptlex `POST /v3/users`.
    Cryptlex,
    /// Crayon `POST /api/v1/users/`.
    Crayon,
    /// cl2c `POST /v1/cl2c/user`.
    Cl2c,
    /// Nexway `POST /iam/users`.
    Nexway,
    /// Cradl `POST /users`.
    Cradl,
    /// SCIM 2.0 `POST /Users`.
    Scim,
}

/// How a profile checks credentials.
pub enum AuthKind {
    /// The plain sandbox: a bearer token only when one is configured.
    Optional,
    /// A fixed bearer token.
    Bearer,
    /// `tenant` + `X-API-Key` headers.
    ApiKey,
    /// A token from the profile's token endpoint (or the fixed one).
    Issued,
}

const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 7] = [
        Profile::Sandbox,
        Profile::Cryptlex,
        Profile::Crayon,
        Profile::Cl2c,
        Profile::Nexway,
        Profile::Cradl,
        Profile::Scim,
    ];

    /// The profile's name, also its path prefix (`/cl2c/v1/cl2c/user`).
    pub fn name(self) -> &'static str {
        match self {
            Profile::Sandbox => "sandbox",
            Profile::Cryptlex => "cryptlex",
            Profile::Crayon => "crayon",
            Profile::Cl2c => "cl2c",
            Profile::Nexway => "nexway",
            Profile::Cradl => "cradl",
            Profile::Scim => "scim",
        }
    }

    /// The profile called `name`.
    pub fn parse(name: &str) -> Option<Profile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The create-user paths.
    pub fn create_paths(self) -> &'static [&'static str] {
        match self {
            Profile::Sandbox | Profile::Cradl => &["/users"],
            Profile::Cryptlex => &["/v3/users"],
            Profile::Crayon => &["/api/v1/users/", "/api/v1/users"],
            Profile::Cl2c => &["/v1/cl2c/user"],
            Profile::Nexway => &["/iam/users"],
            Profile::Scim => &["/Users"],
        }
    }

    /// The token endpoint's paths, for profiles that issue tokens.
    pub fn token_paths(self) -> &'static [&'static str] {
        match self {
            Profile::Crayon => &["/api/v1/connect/token/", "/api/v1/connect/token"],
            Profile::Nexway => &["/iam/tokens"],
            Profile::Cradl => &["/oauth2/token"],
            _ => &[],
        }
    }

    /// How requests are authenticated.
    pub fn auth(self) -> AuthKind {
        match self {
            Profile::Sandbox => AuthKind::Optional,
            Profile::Cryptlex | Profile::Scim => AuthKind::Bearer,
            Profile::Cl2c => AuthKind::ApiKey,
            Profile::Crayon | Profile::Nexway | Profile::Cradl => AuthKind::Issued,
        }
    }

    fn demands(self) -> Demands {
        use Canon::*;
        match self {
            Profile::Sandbox => rules::SANDBOX,
            Profile::Cryptlex => Demands {
                name: rules::camel_names,
                required: &[Email, FirstName, LastName, Password, Role],
                roles: &["user", "organization-admin"],
                statuses: &[],
                cradl_role_ids: false,
            },
            Profile::Crayon => Demands {
                name: pascal_names,
                required: &[Username, FirstName, LastName],
                roles: &[],
                statuses: &[],
                cradl_role_ids: false,
            },
            Profile::Cl2c => Demands {
                name: rules::camel_names,
                // The page's five "essential" fields.
                required: &[Email, FirstName, LastName, Username, Phone],
                roles: &[],
                statuses: &[],
                cradl_role_ids: false,
            },
            Profile::Nexway => Demands {
                name: rules::camel_names,
                // Every property but these five is marked Optional on the page.
                required: &[Email, FirstName, LastName, Username, Password],
                roles: &[],
                statuses: &["ENABLED", "DISABLED"],
                cradl_role_ids: false,
            },
            Profile::Cradl => Demands {
                name: cradl_names,
                required: &[Email],
                roles: &[],
                statuses: &[],
                cradl_role_ids: true,
            },
            Profile::Scim => Demands {
                name: scim_names,
                required: &[Username, Email],
                roles: &[],
                statuses: &[],
                cradl_role_ids: false,
            },
        }
    }

    /// Reads a create-user body in this profile's shape.
    pub fn read(self, body: &[u8]) -> Result<Raw, Refusal> {
        if self == Profile::Sandbox {
            return rules::parse(body);
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Refusal::Body(format!("the body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(Refusal::Body("the body is not a JSON object".into()));
        }
        let text = |pointer: &str| {
            value.pointer(pointer).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let mut raw = Raw::default();
        match self {
            Profile::Sandbox => unreachable!("read above"),
            Profile::Cryptlex | Profile::Cl2c | Profile::Nexway => {
                raw.email = text("/email");
                raw.first_name = text("/firstName");
                raw.last_name = text("/lastName");
                raw.username = text("/userName");
                raw.phone = text("/phoneNumber");
                raw.role = text("/role");
                raw.password = text("/password");
                raw.status = text("/status");
            }
            Profile::Crayon => {
                raw.username = text("/UserName");
                raw.email = text("/Email").or_else(|| raw.username.clone());
                raw.first_name = text("/FirstName");
                raw.last_name = text("/LastName");
                raw.phone = text("/PhoneNumber");
                raw.role = text("/TenantAdmin")
                    .filter(|v| v == "true")
                    .map(|_| "organization-admin".into());
            }
            Profile::Cradl => {
                raw.email = text("/email");
                if let Some(name) = text("/name") {
                    match name.split_once(' ') {
                        Some((first, last)) => {
                            raw.first_name = Some(first.into());
                            raw.last_name = Some(last.into());
                        }
                        None => raw.first_name = Some(name),
                    }
                }
                raw.role_ids = value
                    .get("roleIds")
                    .and_then(Value::as_array)
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Profile::Scim => {
                raw.username = text("/userName");
                raw.email = text("/emails/0/value");
                raw.first_name = text("/name/givenName");
                raw.last_name = text("/name/familyName");
                raw.phone = text("/phoneNumbers/0/value");
                raw.status = text("/active")
                    .map(|a| if a == "false" { "DISABLED" } else { "ENABLED" }.to_string());
            }
        }
        Ok(raw)
    }

    /// Validates a read body.
    pub fn validate(self, raw: Raw) -> Result<rules::Input, Refusal> {
        rules::validate_with(raw, &self.demands())
    }

    /// The answer to a refused body, in this API's error shape.
    pub fn refuse(self, refusal: Refusal) -> Response {
        let fields = match refusal {
            Refusal::Body(detail) => vec![("", vec![detail])],
            Refusal::Fields(fields) => fields,
        };
        let first = fields
            .first()
            .and_then(|(_, m)| m.first())
            .cloned()
            .unwrap_or_default();
        let body = match self {
            Profile::Sandbox | Profile::Cl2c => {
                let errors: serde_json::Map<String, Value> = fields
                    .iter()
                    .filter(|(f, _)| !f.is_empty())
                    .map(|(f, m)| (f.to_string(), json!(m)))
                    .collect();
                return problem(
                    StatusCode::BAD_REQUEST,
                    "One or more validation errors occurred.",
                    &first,
                    (!errors.is_empty()).then_some(Value::Object(errors)),
                );
            }
            Profile::Cryptlex | Profile::Nexway => json!({
                "message": "Validation failed.",
                "code": "VALIDATION_ERROR",
                "errors": fields.iter().flat_map(|(f, messages)| messages.iter().map(move |m| json!({
                    "field": f, "message": m, "code": "invalid",
                }))).collect::<Vec<_>>(),
            }),
            Profile::Crayon => json!({
                "ErrorCode": "BadRequest",
                "Message": "The request is invalid.",
                "Parameters": {},
                "ObjectErrors": fields.iter().flat_map(|(f, messages)| messages.iter().map(move |m| json!({
                    "ErrorCode": "Invalid", "Message": m, "Parameters": {"PropertyName": f},
                }))).collect::<Vec<_>>(),
            }),
            // Cradl answers one plain message.
            Profile::Cradl => json!({ "message": first }),
            Profile::Scim => {
                let detail = fields
                    .iter()
                    .map(|(f, m)| format!("{f}: {}", m.join(" ")))
                    .collect::<Vec<_>>()
                    .join("; ");
                json!({"schemas": [SCIM_ERROR], "scimType": "invalidValue", "detail": detail, "status": "400"})
            }
        };
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    }

    /// The answer when a user with this email exists, as each API says it.
    pub fn duplicate(self, email: &str) -> Response {
        let (status, body) = match self {
            Profile::Sandbox => {
                return problem(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "a user with this email already exists",
                    None,
                );
            }
            Profile::Cryptlex => (
                StatusCode::BAD_REQUEST,
                json!({"message": format!("User with email '{email}' already exists."), "code": "USER_EXISTS"}),
            ),
            Profile::Crayon => (
                StatusCode::BAD_REQUEST,
                json!({"ErrorCode": "BadRequest", "Message": "The user could not be created.", "Parameters": {},
                       "ObjectErrors": [{"ErrorCode": "DuplicateUserName", "Message": format!("User name '{email}' is already taken."), "Parameters": {}}]}),
            ),
            Profile::Cl2c => {
                let errors =
                    json!({"DuplicateUserName": [format!("Username '{email}' is already taken.")]});
                return problem(
                    StatusCode::BAD_REQUEST,
                    "One or more validation errors occurred.",
                    "",
                    Some(errors),
                );
            }
            Profile::Nexway => (
                StatusCode::CONFLICT,
                json!({"errorMessage": "User exists with same email"}),
            ),
            Profile::Cradl => (
                StatusCode::CONFLICT,
                json!({"message": "User already exists"}),
            ),
            Profile::Scim => (
                StatusCode::CONFLICT,
                json!({"schemas": [SCIM_ERROR], "scimType": "uniqueness", "detail": "userName is already in use", "status": "409"}),
            ),
        };
        (status, axum::Json(body)).into_response()
    }

    /// Whether the API has user names, unique like emails.
    pub fn has_usernames(self) -> bool {
        matches!(
            self,
            Profile::Cl2c | Profile::Crayon | Profile::Nexway | Profile::Scim
        )
    }

    /// The answer when another user holds the user name `name`, as each API says it (for
    /// ASP.NET Identity, Crayon and SCIM the same answer as for a duplicate: the user name is
    /// what they check).
    pub fn username_taken(self, name: &str) -> Response {
        match self {
            Profile::Nexway => (
                StatusCode::CONFLICT,
                axum::Json(json!({"errorMessage": "User exists with same username"})),
            )
                .into_response(),
            other => other.duplicate(name),
        }
    }

    /// The answer to missing or wrong credentials.
    pub fn unauthorized(self) -> Response {
        let (status, body) = match self {
            Profile::Sandbox | Profile::Cl2c => {
                return problem(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "missing or invalid credentials",
                    None,
                );
            }
            Profile::Cradl => (StatusCode::FORBIDDEN, json!({"message": "Forbidden"})),
            Profile::Scim => (
                StatusCode::UNAUTHORIZED,
                json!({"schemas": [SCIM_ERROR], "detail": "Authorization failure", "status": "401"}),
            ),
            Profile::Crayon => (
                StatusCode::UNAUTHORIZED,
                json!({"ErrorCode": "Unauthorized", "Message": "Authorization has been denied for this request."}),
            ),
            Profile::Cryptlex | Profile::Nexway => (
                StatusCode::UNAUTHORIZED,
                json!({"message": "Unauthorized", "code": "UNAUTHORIZED"}),
            ),
        };
        (status, axum::Json(body)).into_response()
    }

    /// The answer to a created user: each API's status and body.
    pub fn created(self, user: &StoredUser) -> Response {
        let (status, body) = match self {
            Profile::Sandbox => return (StatusCode::CREATED, axum::Json(user)).into_response(),
            Profile::Cryptlex => (
                StatusCode::CREATED,
                json!({"id": user.id, "name": format!("{} {}", user.first_name, user.last_name),
                       "firstName": user.first_name, "lastName": user.last_name, "email": user.email,
                       "role": user.role, "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"}),
            ),
            Profile::Crayon => (
                StatusCode::OK,
                json!({"Id": user.id, "TenantId": 1, "UserName": user.username, "FirstName": user.first_name,
                       "LastName": user.last_name, "Email": user.email, "EmailConfirmed": false,
                       "PhoneNumber": user.phone, "TenantAdmin": user.role == "organization-admin"}),
            ),
            Profile::Cl2c => (
                StatusCode::OK,
                json!({"id": user.id, "userName": user.username, "firstName": user.first_name,
                       "lastName": user.last_name, "email": user.email, "emailConfirmed": false,
                       "phoneNumber": user.phone}),
            ),
            Profile::Nexway => (
                StatusCode::CREATED,
                json!({"id": user.id, "email": user.email, "firstName": user.first_name,
                       "lastName": user.last_name, "userName": user.username, "status": user.status}),
            ),
            Profile::Cradl => (
                StatusCode::OK,
                json!({"userId": user.id, "email": user.email, "name": format!("{} {}", user.first_name, user.last_name).trim(),
                       "metadata": {}, "roleIds": [], "status": "invite_pending", "createdBy": "sandbox",
                       "createdTime": "2026-01-01T00:00:00Z", "updatedTime": null, "updatedBy": null,
                       "description": null, "profileId": null}),
            ),
            Profile::Scim => (
                StatusCode::CREATED,
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": user.id,
                       "userName": user.username, "name": {"givenName": user.first_name, "familyName": user.last_name},
                       "emails": [{"value": user.email, "primary": true}], "active": user.status.as_deref() != Some("DISABLED"),
                       "meta": {"resourceType": "User"}}),
            ),
        };
        (status, axum::Json(body)).into_response()
    }

    /// The id given to the `n`th user.
    pub fn id(self, n: u64) -> String {
        match self {
            Profile::Cradl => format!("cradl:user:{n:032x}"),
            Profile::Crayon
            | Profile::Cl2c
            | Profile::Nexway
            | Profile::Cryptlex
            | Profile::Scim => {
                format!("00000000-0000-4000-8000-{n:012x}")
            }
            Profile::Sandbox => format!("usr_{n:06}"),
        }
    }
}

fn pascal_names(c: Canon) -> &'static str {
    match c {
        Canon::Email => "Email",
        Canon::FirstName => "FirstName",
        Canon::LastName => "LastName",
        Canon::Username => "UserName",
        Canon::Phone => "PhoneNumber",
        Canon::Role => "TenantAdmin",
        Canon::Password => "Password",
        Canon::Status => "Status",
    }
}

fn cradl_names(c: Canon) -> &'static str {
    match c {
        Canon::FirstName | Canon::LastName => "name",
        Canon::Role => "roleIds",
        other => rules::camel_names(other),
    }
}

fn scim_names(c: Canon) -> &'static str {
    match c {
        Canon::Email => "emails",
        Canon::FirstName => "name.givenName",
        Canon::LastName => "name.familyName",
        Canon::Username => "userName",
        Canon::Phone => "phoneNumbers",
        Canon::Status => "active",
        other => rules::camel_names(other),
    }
}

/// An RFC 7807 problem details answer.
pub fn problem(status: StatusCode, title: &str, detail: &str, errors: Option<Value>) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some(errors) = errors {
        body["errors"] = errors;
    }
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
