//! HTTP basic authentication with three roles, as Confluent's registry does it with its
//! basic-auth security extension: clients send `Authorization: Basic …` built from their
//! `basic.auth.user.info` (`USER:PASSWORD`).
//!
//! - `read`: every `GET`, schema lookups (`POST /subjects/{s}`) and compatibility checks;
//! - `write`: registering schemas (`POST /subjects/{s}/versions`), and everything `read` may;
//! - `admin`: deletes and configuration changes (`DELETE`, `PUT /config…`), and everything.
//!
//! Anonymous callers get `read` unless that is turned off. [`required_role`] is a pure
//! table of routes to roles; [`Access::authorize`] decides one request; the middleware in
//! `api` answers 401 (no or wrong credentials) or 403 (a role too low) with Confluent's
//! error bodies.

use std::{collections::HashMap, fmt, str::FromStr};

use axum::http::Method;
use base64::Engine as _;

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read schemas, subjects, versions and configuration; look up and check schemas.
    Read,
    /// Register schemas.
    Write,
    /// Delete subjects and versions, change compatibility configuration.
    Admin,
}

impl Role {
    /// The role's name in configuration (`read`, `write`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown registry role {other:?} (read, write or admin)"
            )),
        }
    }
}

/// One user: a name, a password and a role.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The name sent as the basic-auth user.
    pub name: String,
    password: String,
    /// What the user may do.
    pub role: Role,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

impl User {
    /// A user with `role`.
    pub fn new(name: impl Into<String>, password: impl Into<String>, role: Role) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
            role,
        }
    }
}

impl FromStr for User {
    type Err = String;

    /// `USER:PASSWORD:ROLE`; the password may itself contain `:` (the user ends at the
    /// first one, the role starts after the last one).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed =
            || format!("{text:?} is not USER:PASSWORD:ROLE (e.g. notesaga:s3cret:write)");
        let (name, rest) = text.split_once(':').ok_or_else(malformed)?;
        let (password, role) = rest.rsplit_once(':').ok_or_else(malformed)?;
        if name.is_empty() || password.is_empty() {
            return Err(malformed());
        }
        Ok(Self::new(name, password, role.parse()?))
    }
}

/// Who may do what. With no users the registry is open (every caller is admin), as
/// Confluent's registry is without its security extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    users: HashMap<String, User>,
    /// The role of callers sending no credentials: `Some(Read)` by default, so analysts
    /// can read schemas with their own tools; `None` refuses them.
    anonymous: Option<Role>,
}

impl Default for Access {
    fn default() -> Self {
        Self::open()
    }
}

/// Why a request is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No credentials where some are needed, or credentials that do not match: 401.
    Unauthenticated,
    /// Known credentials whose role is too low: 403.
    Forbidden {
        /// The role the request needs.
        needed: Role,
    },
}

impl Access {
    /// No authentication: everyone may do everything.
    pub fn open() -> Self {
        Self {
            users: HashMap::new(),
            anonymous: Some(Role::Admin),
        }
    }

    /// Basic authentication for `users`, anonymous reads allowed.
    pub fn users(users: impl IntoIterator<Item = User>) -> Self {
        let users: HashMap<_, _> = users
            .into_iter()
            .map(|user| (user.name.clone(), user))
            .collect();
        if users.is_empty() {
            return Self::open();
        }
        Self {
            users,
            anonymous: Some(Role::Read),
        }
    }

    /// Whether callers without credentials may read (no effect on an open registry).
    pub fn with_anonymous_read(mut self, allowed: bool) -> Self {
        if !self.is_open() {
            self.anonymous = allowed.then_some(Role::Read);
        }
        self
    }

    /// Whether any caller may do anything.
    pub fn is_open(&self) -> bool {
        self.users.is_empty()
    }

    /// Decides a request given its `Authorization` header (if any).
    pub fn authorize(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<(), Denied> {
        if self.is_open() {
            return Ok(());
        }
        let needed = required_role(method, path);
        let role = match authorization {
            None => self.anonymous.ok_or(Denied::Unauthenticated)?,
            Some(header) => self.authenticate(header).ok_or(Denied::Unauthenticated)?,
        };
        if role >= needed {
            Ok(())
        } else if authorization.is_none() {
            // Anonymous callers are asked to authenticate rather than told they may not.
            Err(Denied::Unauthenticated)
        } else {
            Err(Denied::Forbidden { needed })
        }
    }

    /// The role of the user the `Authorization: Basic` header names, if the password is right.
    fn authenticate(&self, header: &str) -> Option<Role> {
        let (scheme, encoded) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (name, password) = decoded.split_once(':')?;
        let user = self.users.get(name)?;
        constant_time_eq(user.password.as_bytes(), password.as_bytes()).then_some(user.role)
    }
}

/// The role a request needs. Unknown routes need `read` (they answer 404 anyway).
pub fn required_role(method: &Method, path: &str) -> Role {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Role::Read,
        Method::DELETE | Method::PUT | Method::PATCH => Role::Admin,
        Method::POST => match segments.as_slice() {
            // Registering a new version.
            ["subjects", _, "versions"] => Role::Write,
            // Looking a schema up, checking compatibility: reads.
            ["subjects", _] | ["compatibility", ..] => Role::Read,
            _ => Role::Admin,
        },
        _ => Role::Admin,
    }
}

/// Compares secrets without stopping at the first difference, so response times do not
/// reveal how much of a guess was right.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = expected.len() ^ given.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(index).copied().unwrap_or(!byte));
    }
    difference == 0
}

/// `Authorization` header value for `user_info` (`USER:PASSWORD`), as clients send it.
pub fn basic_header(user_info: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_info)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access::users([
            User::new("reader", "r", Role::Read),
            User::new("writer", "w", Role::Write),
            User::new("boss", "b:with:colons", Role::Admin),
        ])
    }

    #[test]
    fn routes_map_to_roles() {
        let table = [
            (Method::GET, "/subjects", Role::Read),
            (Method::GET, "/schemas/ids/3", Role::Read),
            (Method::POST, "/subjects/s", Role::Read),
            (
                Method::POST,
                "/compatibility/subjects/s/versions/latest",
                Role::Read,
            ),
            (Method::POST, "/subjects/s/versions", Role::Write),
            (Method::DELETE, "/subjects/s", Role::Admin),
            (Method::DELETE, "/subjects/s/versions/1", Role::Admin),
            (Method::PUT, "/config", Role::Admin),
            (Method::PUT, "/config/s", Role::Admin),
            (Method::DELETE, "/config", Role::Admin),
            (Method::POST, "/anything/else", Role::Admin),
        ];
        for (method, path, role) in table {
            assert_eq!(required_role(&method, path), role, "{method} {path}");
        }
    }

    #[test]
    fn users_parse_with_colons_in_the_password() {
        let user: User = "boss:b:with:colons:admin".parse().unwrap();
        assert_eq!(user, User::new("boss", "b:with:colons", Role::Admin));
        assert!("nobody".parse::<User>().is_err());
        assert!("a::read".parse::<User>().is_err());
        assert!("a:b:root".parse::<User>().is_err());
        assert!(!format!("{user:?}").contains("colons"), "password redacted");
    }

    #[test]
    fn decisions() {
        let access = access();
        let register = (Method::POST, "/subjects/s/versions");
        let delete = (Method::DELETE, "/subjects/s");
        let read = (Method::GET, "/subjects");
        let header = |info: &str| basic_header(info);
        let decide = |(method, path): &(Method, &str), auth: Option<&str>| {
            access.authorize(method, path, auth)
        };
        assert_eq!(decide(&read, None), Ok(()), "anonymous reads");
        assert_eq!(decide(&register, None), Err(Denied::Unauthenticated));
        assert_eq!(
            decide(&register, Some(&header("reader:r"))),
            Err(Denied::Forbidden {
                needed: Role::Write
            })
        );
        assert_eq!(decide(&register, Some(&header("writer:w"))), Ok(()));
        assert_eq!(
            decide(&delete, Some(&header("writer:w"))),
            Err(Denied::Forbidden {
                needed: Role::Admin
            })
        );
        assert_eq!(decide(&delete, Some(&header("boss:b:with:colons"))), Ok(()));
        assert_eq!(
            decide(&read, Some(&header("writer:wrong"))),
            Err(Denied::Unauthenticated),
            "a wrong password is refused even where anonymous callers may read"
        );
        assert_eq!(
            decide(&read, Some("Bearer abc")),
            Err(Denied::Unauthenticated)
        );

        let closed = access.clone().with_anonymous_read(false);
        assert_eq!(
            closed.authorize(&Method::GET, "/subjects", None),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(
            closed.authorize(&Method::GET, "/subjects", Some(&header("reader:r"))),
            Ok(())
        );
    }

    #[test]
    fn open_registries_allow_everything() {
        let open = Access::users([]).with_anonymous_read(false);
        assert!(open.is_open());
        assert_eq!(open.authorize(&Method::DELETE, "/subjects/s", None), Ok(()));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
