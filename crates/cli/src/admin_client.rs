//! The HTTP client of the operator commands that talk to a node's API (`notesaga saga`,
//! `notesaga replay`): where the API is (`--api`, else the `node.json` that
//! `notesaga dev` writes into `--data-dir`), which token goes with each request
//! (`--token`, else an admin token signed with that node's secret), and how a refusal
//! reads on the terminal.
//!
//! Both commands exit 1 when the API said no and 2 when it cannot be found or reached,
//! so [`Failure`] carries that distinction.

use std::{fmt, path::Path, process::ExitCode, time::Duration};

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::dev::{self, NodeFile, NODE_FILE};

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The API answered with an error (or, for `replay`, a job failed).
    Refused(String),
    /// The API could not be found or reached, or did not answer like notesaga's API.
    Unreachable(String),
}

impl Failure {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Self::Refused(_) => ExitCode::from(1),
            Self::Unreachable(_) => ExitCode::from(2),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(message) | Self::Unreachable(message) => f.write_str(message),
        }
    }
}

/// The API's base URL: `--api`, else `http_addr` of `DATA_DIR/node.json`. Also says
/// where it came from, for error messages.
pub(crate) fn api_base(api: Option<&str>, data_dir: &Path) -> Result<(Url, String), Failure> {
    if let Some(api) = api {
        let url = base_url(api).map_err(|err| {
            Failure::Unreachable(format!(
                "--api / NOTESAGA_API_URL {api:?} is not a URL: {err}"
            ))
        })?;
        return Ok((url, "--api".to_owned()));
    }
    let node = NodeFile::read(data_dir).map_err(|err| Failure::Unreachable(format!("{err:#}")))?;
    let Some(node) = node else {
        return Err(Failure::Unreachable(format!(
            "cannot find the API: pass --api URL (or NOTESAGA_API_URL), or --data-dir DIR (NOTESAGA_DATA_DIR) of a running `notesaga dev`; there is no {}",
            data_dir.join(NODE_FILE).display()
        )));
    };
    let origin = match node.pid {
        Some(pid) => format!(
            "{} (notesaga dev, pid {pid})",
            data_dir.join(NODE_FILE).display()
        ),
        None => data_dir.join(NODE_FILE).display().to_string(),
    };
    let url = base_url(&node.http_addr).map_err(|err| {
        Failure::Unreachable(format!(
            "http_addr {:?} of {origin} is not an address: {err}",
            node.http_addr
        ))
    })?;
    Ok((url, origin))
}

/// `http://HOST:PORT/` for an address without a scheme; a URL as given.
fn base_url(raw: &str) -> Result<Url, url::ParseError> {
    if raw.contains("://") {
        Url::parse(raw)
    } else {
        Url::parse(&format!("http://{raw}/"))
    }
}

/// An answer of the API.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// The body of a 2xx answer; otherwise the API's refusal, as [`refusal`] words it.
    pub(crate) fn success(self, token_hint: &str) -> Result<Vec<u8>, Failure> {
        if self.status.is_success() {
            return Ok(self.body);
        }
        Err(Failure::Refused(refusal(
            self.status,
            &self.body,
            token_hint,
        )))
    }
}

/// [`problem_line`] of a refusal, with ` (token_hint)` after a 401 or 403 so the user
/// learns what to pass.
pub(crate) fn refusal(status: StatusCode, body: &[u8], token_hint: &str) -> String {
    let mut line = problem_line(status, body);
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        line.push_str(&format!(" ({token_hint})"));
    }
    line
}

/// An RFC 9457 problem, as the API writes them.
#[derive(Debug, Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<FieldProblem>,
}

#[derive(Debug, Deserialize)]
struct FieldProblem {
    field: String,
    message: String,
}

/// `status title: detail` (and the fields at fault) of a problem+json body; the status
/// line and the start of the body for anything else.
pub(crate) fn problem_line(status: StatusCode, body: &[u8]) -> String {
    let code = status.as_u16();
    match serde_json::from_slice::<Problem>(body) {
        Ok(problem) if problem.title.is_some() || problem.detail.is_some() => {
            let title = problem
                .title
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
            let mut line = match problem.detail {
                Some(detail) => format!("{code} {title}: {detail}"),
                None => format!("{code} {title}"),
            };
            for field in problem.errors {
                line.push_str(&format!("; {}: {}", field.field, field.message));
            }
            line
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            let reason = status.canonical_reason().unwrap_or("");
            if text.is_empty() {
                format!("{code} {reason}")
            } else {
                format!("{code} {reason}: {text}")
            }
        }
    }
}

/// The HTTP client, where the API is and the token to send.
#[derive(Debug)]
pub(crate) struct AdminClient {
    client: reqwest::Client,
    base: Url,
    origin: String,
    token: Option<String>,
}

impl AdminClient {
    /// The client of `--api` / `--data-dir` / `--token`. Without `--token`, an admin
    /// token is signed with the secret of `--data-dir`, unless `--api` names the API:
    /// another API's tokens are not ours to mint.
    pub(crate) fn new(
        api: Option<&str>,
        data_dir: &Path,
        token: Option<&str>,
    ) -> Result<Self, Failure> {
        let (base, origin) = api_base(api, data_dir)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|err| Failure::Unreachable(format!("cannot build an HTTP client: {err}")))?;
        let token = match (token, api) {
            (Some(token), _) => Some(token.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(dev::admin_token(data_dir).map_err(|err| {
                Failure::Unreachable(format!(
                    "cannot sign an admin token for {origin}: {err:#}; pass --token"
                ))
            })?),
        };
        Ok(Self {
            client,
            base,
            origin,
            token,
        })
    }

    /// The API's base URL.
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// Where the base URL came from (`--api`, or the node file), for error messages.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The base URL with `segments` appended (each escaped as one path segment).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Sends one request (JSON accepted, the token as a bearer) and reads the whole
    /// answer, whatever its status.
    pub(crate) async fn send(&self, method: Method, url: Url) -> Result<Answer, Failure> {
        let mut request = self
            .client
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let unreachable = |err: reqwest::Error| {
            Failure::Unreachable(format!(
                "cannot reach the API at {} (from {}): {}; is notesaga running there?",
                self.base,
                self.origin,
                error_chain(&err)
            ))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        Ok(Answer { status, body })
    }
}

/// An error and its causes, `: `-separated (reqwest's own message names only the URL).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
