//! `notesaga saga`: list, show and retry sagas through the HTTP API (`GET /v1/sagas`,
//! `GET /v1/sagas/{id}`, `POST /v1/admin/sagas/{id}/retry`), a client like any other.
//!
//! The API is found with `--api`, else through the `node.json` that `notesaga dev`
//! writes into its data directory; found that way, the command signs its own admin token
//! with the node's secret unless `--token` gives one. Exit 0: done; 1: the API said no (a problem+json
//! answer, printed as `status title: detail`); 2: the API cannot be found or reached.

use std::process::ExitCode;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::{
    admin_client::{problem_line, AdminClient, Answer, Failure},
    args::{SagaArgs, SagaCommand, SagaListArgs},
};

/// What a 401 or 403 answer adds: how to pass a token.
const TOKEN_HINT: &str = "pass a token with --token / NOTESAGA_TOKEN";

/// Runs a `notesaga saga` command; the exit code says how it went.
pub(crate) async fn run(mut args: SagaArgs) -> ExitCode {
    // `--output json` is `--json` under the name every operator command shares.
    args.json |= args.output == Some(crate::dlq::Output::Json);
    match execute(&args).await {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("notesaga saga: {failure}");
            failure.exit_code()
        }
    }
}

/// Runs the command and returns what to print.
async fn execute(args: &SagaArgs) -> Result<String, Failure> {
    let api = Api::new(args)?;
    match &args.command {
        SagaCommand::List(list) => {
            let answer = api.call(Method::GET, api.list_url(list)).await?;
            let body = answer.success(TOKEN_HINT)?;
            if args.json {
                return Ok(raw(&body));
            }
            let list: SagaList = api.parse(&body)?;
            Ok(render_list(&list.sagas))
        }
        SagaCommand::Show { id } => {
            let answer = api
                .call(Method::GET, api.url(&["v1", "sagas", id.as_str()]))
                .await?;
            let body = answer.success(TOKEN_HINT)?;
            if args.json {
                return Ok(raw(&body));
            }
            let saga: SagaDetail = api.parse(&body)?;
            Ok(render_detail(&saga))
        }
        SagaCommand::Retry { id } => {
            let url = api.url(&["v1", "admin", "sagas", id.as_str(), "retry"]);
            let answer = api.call(Method::POST, url).await?;
            if answer.status == StatusCode::CONFLICT {
                return Err(Failure::Refused(format!(
                    "saga {id} cannot be retried: only a parked saga (state compensation_failed) can be retried\n  {}",
                    problem_line(answer.status, &answer.body)
                )));
            }
            let body = answer.success(TOKEN_HINT)?;
            if args.json {
                return Ok(raw(&body));
            }
            let retried: RetryAnswer = api.parse(&body)?;
            Ok(format!(
                "retry requested for saga {} (was {}): the orchestrator sends its parked step again with a fresh budget; follow it with `notesaga saga show {}`\n",
                retried.saga_id, retried.state, retried.saga_id
            ))
        }
    }
}

/// The API's body as it came, ending in a newline.
fn raw(body: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The saga commands' view of the admin client.
#[derive(Debug)]
struct Api(AdminClient);

impl Api {
    fn new(args: &SagaArgs) -> Result<Self, Failure> {
        AdminClient::new(args.api.as_deref(), &args.data_dir, args.token.as_deref()).map(Self)
    }

    /// The base URL with `segments` appended (each escaped as one path segment).
    fn url(&self, segments: &[&str]) -> Url {
        self.0.url(segments)
    }

    fn list_url(&self, list: &SagaListArgs) -> Url {
        let mut url = self.url(&["v1", "sagas"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(state) = &list.state {
                query.append_pair("state", state);
            }
            if list.stuck {
                query.append_pair("stuck", "true");
            }
            if let Some(limit) = list.limit {
                query.append_pair("limit", &limit.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        url
    }

    async fn call(&self, method: Method, url: Url) -> Result<Answer, Failure> {
        self.0.send(method, url).await
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, Failure> {
        serde_json::from_slice(body).map_err(|err| {
            Failure::Unreachable(format!(
                "the API at {} (from {}) answered something that is not notesaga's saga JSON ({err}); is it notesaga's API?",
                self.0.base(),
                self.0.origin()
            ))
        })
    }
}

/// `GET /v1/sagas`.
#[derive(Debug, Deserialize)]
struct SagaList {
    sagas: Vec<SagaRow>,
}

/// One saga as the API shows it.
#[derive(Debug, Deserialize)]
struct SagaRow {
    saga_id: String,
    note_id: String,
    version: i64,
    kind: String,
    state: String,
    #[serde(default)]
    stuck: bool,
    step: Option<String>,
    attempt: Option<i64>,
    failure_reason: Option<String>,
    #[serde(default)]
    started_at: String,
    #[serde(default)]
    updated_at: String,
}

/// `GET /v1/sagas/{id}`.
#[derive(Debug, Deserialize)]
struct SagaDetail {
    #[serde(flatten)]
    saga: SagaRow,
    #[serde(default)]
    timeline: Vec<TimelineRow>,
}

/// One transition of a saga.
#[derive(Debug, Deserialize)]
struct TimelineRow {
    event: String,
    step: Option<String>,
    attempt: Option<i64>,
    error: Option<String>,
    detail: Option<String>,
    at: String,
}

/// `POST /v1/admin/sagas/{id}/retry`.
#[derive(Debug, Deserialize)]
struct RetryAnswer {
    saga_id: String,
    state: String,
}

fn step_attempt(step: Option<&str>, attempt: Option<i64>) -> String {
    match (step, attempt) {
        (Some(step), Some(attempt)) => format!("{step}#{attempt}"),
        (Some(step), None) => step.to_owned(),
        (None, _) => "-".to_owned(),
    }
}

/// One line per cell value (newlines would break the table).
fn cell(text: Option<&str>) -> String {
    match text {
        Some(text) if !text.is_empty() => text.split_whitespace().collect::<Vec<_>>().join(" "),
        _ => "-".to_owned(),
    }
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, value) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(value);
            if i + 1 < widths.len() {
                let pad = widths[i].saturating_sub(value.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn render_list(sagas: &[SagaRow]) -> String {
    if sagas.is_empty() {
        return "no sagas match\n".to_owned();
    }
    let rows: Vec<Vec<String>> = sagas
        .iter()
        .map(|s| {
            vec![
                s.saga_id.clone(),
                s.note_id.clone(),
                s.version.to_string(),
                s.kind.clone(),
                s.state.clone(),
                if s.stuck { "yes" } else { "no" }.to_owned(),
                step_attempt(s.step.as_deref(), s.attempt),
                cell(Some(&s.updated_at)),
                cell(s.failure_reason.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "SAGA", "NOTE", "VERSION", "KIND", "STATE", "STUCK", "STEP", "UPDATED", "REASON",
        ],
        &rows,
    )
}

fn render_detail(detail: &SagaDetail) -> String {
    let s = &detail.saga;
    let state = if s.stuck {
        format!("{} (stuck)", s.state)
    } else {
        s.state.clone()
    };
    let fields = [
        ("saga", s.saga_id.clone()),
        ("note", s.note_id.clone()),
        ("version", s.version.to_string()),
        ("kind", s.kind.clone()),
        ("state", state),
        ("step", step_attempt(s.step.as_deref(), s.attempt)),
        ("failure", cell(s.failure_reason.as_deref())),
        ("started", cell(Some(&s.started_at))),
        ("updated", cell(Some(&s.updated_at))),
    ];
    let mut out = String::new();
    for (name, value) in fields {
        out.push_str(&format!("{name:<8} {value}\n"));
    }
    out.push('\n');
    if detail.timeline.is_empty() {
        out.push_str("no timeline entries\n");
        return out;
    }
    let rows: Vec<Vec<String>> = detail
        .timeline
        .iter()
        .map(|t| {
            vec![
                t.at.clone(),
                t.event.clone(),
                step_attempt(t.step.as_deref(), t.attempt),
                cell(t.error.as_deref()),
                cell(t.detail.as_deref()),
            ]
        })
        .collect();
    out.push_str(&table(&["TIME", "EVENT", "STEP", "ERROR", "DETAIL"], &rows));
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpListener,
        task::JoinHandle,
    };

    use super::*;
    use crate::{admin_client::api_base, dev::NODE_FILE};

    const SAGA: &str = "6f1c2b1e-4d5a-5b7e-9a51-0c1d2e3f4a5b";

    fn saga_json() -> serde_json::Value {
        serde_json::json!({
            "saga_id": SAGA,
            "note_id": "0b7e6c3a-1111-4222-8333-944455556666",
            "version": 3,
            "kind": "publish",
            "state": "compensation_failed",
            "stuck": true,
            "step": "delete_narration",
            "attempt": 8,
            "failure_reason": "narration failed:\nengine crashed",
            "started_at": "2026-11-21T10:00:00Z",
            "updated_at": "2026-11-21T10:05:00Z"
        })
    }

    fn args(api: &str, command: SagaCommand) -> SagaArgs {
        SagaArgs {
            api: Some(api.to_owned()),
            data_dir: PathBuf::from("/nonexistent"),
            token: None,
            json: false,
            output: None,
            command,
        }
    }

    /// An HTTP server that answers one request with `status` and `body`, and hands back
    /// the request it got.
    async fn answer_once(status: &str, body: &str) -> (String, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (status, body) = (status.to_owned(), body.to_owned());
        let served = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (url, served)
    }

    #[test]
    fn saga_api_from_flag_or_node_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = api_base(None, dir.path()).unwrap_err();
        assert!(matches!(err, Failure::Unreachable(_)));
        let message = err.to_string();
        assert!(
            message.contains("--api URL") && message.contains("--data-dir DIR"),
            "{message}"
        );

        std::fs::write(
            dir.path().join(NODE_FILE),
            r#"{"http_addr":"127.0.0.1:18080","kafka_addr":"127.0.0.1:19092","registry_addr":"127.0.0.1:18081","pid":42}"#,
        )
        .unwrap();
        let (url, origin) = api_base(None, dir.path()).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:18080/");
        assert!(origin.contains("pid 42"), "{origin}");

        let (url, origin) = api_base(Some("https://api.example/notesaga"), dir.path()).unwrap();
        assert_eq!(
            (url.as_str(), origin.as_str()),
            ("https://api.example/notesaga", "--api")
        );
        let (url, _) = api_base(Some("localhost:8080"), dir.path()).unwrap();
        assert_eq!(url.as_str(), "http://localhost:8080/");

        std::fs::write(dir.path().join(NODE_FILE), "not json").unwrap();
        let err = api_base(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not a node file"), "{err}");
    }

    #[test]
    fn saga_urls_escape_ids_and_carry_the_filters() {
        let mut args = args("http://h:1/prefix/", SagaCommand::Show { id: "a/b".into() });
        let api = Api::new(&args).unwrap();
        assert_eq!(
            api.url(&["v1", "sagas", "a/b"]).as_str(),
            "http://h:1/prefix/v1/sagas/a%2Fb"
        );
        let all = SagaListArgs {
            state: None,
            stuck: false,
            limit: None,
        };
        assert_eq!(api.list_url(&all).as_str(), "http://h:1/prefix/v1/sagas");
        let filtered = SagaListArgs {
            state: Some("compensation_failed".into()),
            stuck: true,
            limit: Some(5),
        };
        assert_eq!(
            api.list_url(&filtered).as_str(),
            "http://h:1/prefix/v1/sagas?state=compensation_failed&stuck=true&limit=5"
        );
        args.api = Some("http://h:1".into());
        let api = Api::new(&args).unwrap();
        assert_eq!(api.url(&["v1", "sagas"]).as_str(), "http://h:1/v1/sagas");
    }

    #[test]
    fn saga_problem_lines() {
        let problem = br#"{"type":"https://notesaga.dev/problems/bad-state","title":"Unknown saga state","status":400,"detail":"state must be one of running, not \"x\""}"#;
        assert_eq!(
            problem_line(StatusCode::BAD_REQUEST, problem),
            r#"400 Unknown saga state: state must be one of running, not "x""#
        );
        let fields =
            br#"{"title":"Invalid","status":422,"errors":[{"field":"title","message":"empty"}]}"#;
        assert_eq!(
            problem_line(StatusCode::UNPROCESSABLE_ENTITY, fields),
            "422 Invalid; title: empty"
        );
        assert_eq!(
            problem_line(StatusCode::BAD_GATEWAY, b"<html>upstream down</html>"),
            "502 Bad Gateway: <html>upstream down</html>"
        );
        assert_eq!(problem_line(StatusCode::NOT_FOUND, b""), "404 Not Found");
    }

    #[test]
    fn saga_list_table() {
        let list: SagaList =
            serde_json::from_value(serde_json::json!({ "sagas": [saga_json()] })).unwrap();
        let text = render_list(&list.sagas);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("SAGA  "), "{text}");
        for column in [
            "NOTE", "VERSION", "KIND", "STATE", "STUCK", "STEP", "UPDATED", "REASON",
        ] {
            assert!(lines[0].contains(column), "{column}: {text}");
        }
        assert!(lines[1].starts_with(SAGA));
        assert!(
            lines[1].contains("compensation_failed  yes    delete_narration#8  2026-11-21T10:05:00Z  narration failed: engine crashed"),
            "{text}"
        );
        assert_eq!(render_list(&[]), "no sagas match\n");
    }

    #[test]
    fn saga_detail_with_timeline() {
        let mut body = saga_json();
        body["timeline"] = serde_json::json!([
            {"event": "SagaStarted", "step": null, "attempt": null, "error": null, "detail": "publish v3", "at": "2026-11-21T10:00:00Z"},
            {"event": "StepFailed", "step": "narration", "attempt": 1, "error": "engine crashed", "detail": null, "at": "2026-11-21T10:01:00Z"}
        ]);
        let detail: SagaDetail = serde_json::from_value(body).unwrap();
        let text = render_detail(&detail);
        assert!(
            text.contains("state    compensation_failed (stuck)\n"),
            "{text}"
        );
        assert!(text.contains("step     delete_narration#8\n"), "{text}");
        assert!(
            text.contains(
                "TIME                  EVENT        STEP         ERROR           DETAIL\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "2026-11-21T10:00:00Z  SagaStarted  -            -               publish v3\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("2026-11-21T10:01:00Z  StepFailed   narration#1  engine crashed  -\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn saga_list_sends_the_filters_and_the_token() {
        let body = serde_json::json!({ "sagas": [saga_json()] }).to_string();
        let (url, served) = answer_once("200 OK", &body).await;
        let mut args = args(
            &url,
            SagaCommand::List(SagaListArgs {
                state: Some("running".into()),
                stuck: true,
                limit: Some(3),
            }),
        );
        args.token = Some("s3cret".into());
        args.json = true;
        let output = execute(&args).await.unwrap();
        assert_eq!(output, format!("{body}\n"), "--json prints the API's JSON");
        let request = served.await.unwrap();
        assert!(
            request.starts_with("GET /v1/sagas?state=running&stuck=true&limit=3 HTTP/1.1"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer s3cret"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn saga_retry_conflict_is_refused() {
        let problem = r#"{"type":"https://notesaga.dev/problems/saga-not-parked","title":"Saga is not parked","status":409,"detail":"only a compensation_failed saga can be retried; x is completed"}"#;
        let (url, served) = answer_once("409 Conflict", problem).await;
        let failure = execute(&args(&url, SagaCommand::Retry { id: SAGA.into() }))
            .await
            .unwrap_err();
        let request = served.await.unwrap();
        assert!(
            request.starts_with(&format!("POST /v1/admin/sagas/{SAGA}/retry ")),
            "{request}"
        );
        let Failure::Refused(message) = &failure else {
            panic!("{failure:?}");
        };
        assert!(
            message.contains("only a parked saga (state compensation_failed) can be retried"),
            "{message}"
        );
        assert!(
            message.contains("409 Saga is not parked: only a compensation_failed"),
            "{message}"
        );
        assert_eq!(failure.exit_code(), ExitCode::from(1));
    }

    #[tokio::test]
    async fn saga_retry_accepted() {
        let (url, _served) = answer_once(
            "202 Accepted",
            &format!(r#"{{"saga_id":"{SAGA}","state":"compensation_failed","retry":"requested"}}"#),
        )
        .await;
        let output = execute(&args(&url, SagaCommand::Retry { id: SAGA.into() }))
            .await
            .unwrap();
        assert!(
            output.starts_with(&format!(
                "retry requested for saga {SAGA} (was compensation_failed)"
            )),
            "{output}"
        );
    }

    #[tokio::test]
    async fn saga_show_not_found_and_unreachable() {
        let problem = r#"{"type":"https://notesaga.dev/problems/saga-not-found","title":"Saga not found","status":404,"detail":"no saga 1"}"#;
        let (url, _served) = answer_once("404 Not Found", problem).await;
        let failure = execute(&args(&url, SagaCommand::Show { id: SAGA.into() }))
            .await
            .unwrap_err();
        assert_eq!(
            failure,
            Failure::Refused("404 Saga not found: no saga 1".into())
        );

        // A port nobody listens on: bind one, then let it go.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let failure = execute(&args(
            &format!("http://{closed}"),
            SagaCommand::Show { id: SAGA.into() },
        ))
        .await
        .unwrap_err();
        assert!(matches!(failure, Failure::Unreachable(_)), "{failure:?}");
        assert!(
            failure.to_string().contains("cannot reach the API at"),
            "{failure}"
        );
        assert_eq!(failure.exit_code(), ExitCode::from(2));
    }

    #[tokio::test]
    async fn saga_answer_that_is_not_json() {
        let (url, _served) = answer_once("200 OK", "<html>hello</html>").await;
        let failure = execute(&args(
            &url,
            SagaCommand::List(SagaListArgs {
                state: None,
                stuck: false,
                limit: None,
            }),
        ))
        .await
        .unwrap_err();
        assert!(matches!(failure, Failure::Unreachable(_)), "{failure:?}");
    }
}
