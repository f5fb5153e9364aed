//! Test fixtures shared by the workspace's integration tests.
//!
//! [`BrokerProcess`] starts the workspace's own `notesaga-broker` executable on a free
//! loopback port with a throw-away data directory, exactly as `notesaga dev` does, and
//! kills it when dropped. [`random_name`] gives topics and groups that never collide.
//! Binaries are found next to the test executable's target directory (build them first
//! with `cargo build --bins`, which `make test` does) or through `NOTESAGA_BIN_DIR`.

pub mod moto;
pub mod openapi;

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    ClientConfig,
};
use tempfile::TempDir;

/// A unique, readable name for a topic, group or database in one test run.
pub fn random_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A free port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// A free `127.0.0.1:PORT` address.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The HS256 secret of every API the testkit starts: [`Cluster`] gives it to its `api`
/// role as `NOTESAGA_JWT_SECRET`, [`SingleNode`] seeds the data directory's `jwt-secret`
/// with it, so [`token`] and [`http`] are accepted by both.
pub const TEST_JWT_SECRET: &str = "notesaga-testkit-jwt-secret-0123456789abcdef";

/// The user the client helpers act as: `local`, the user of `notesaga dev`'s printed
/// tokens, and the owner that tests writing commands straight to the log use.
pub const TEST_USER: &str = "local";

/// A bearer token of `sub` (with the `admin` role if asked), signed with
/// [`TEST_JWT_SECRET`] and valid for an hour. The claims are those of
/// `notesaga_api::auth::Claims`, written here so the testkit does not depend on the API.
pub fn token(sub: &str, admin: bool) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let roles: &[&str] = if admin { &["admin"] } else { &[] };
    let claims = serde_json::json!({"sub": sub, "iat": now, "exp": now + 3600, "roles": roles});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .expect("HS256 signs any claims")
}

/// An HTTP client sending `Authorization: Bearer` [`token`]`(sub, admin)` on every request.
pub fn http_as(sub: &str, admin: bool) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {}", token(sub, admin));
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&value).expect("a JWT is a valid header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client builds")
}

/// An HTTP client acting as [`TEST_USER`] (not an admin): what the client helpers use.
pub fn http() -> reqwest::Client {
    http_as(TEST_USER, false)
}

/// An HTTP client acting as [`TEST_USER`] with the admin role (`/v1/admin/*`).
pub fn admin_http() -> reqwest::Client {
    http_as(TEST_USER, true)
}

/// The directory that holds the workspace's built executables.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NOTESAGA_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Test executables live in `<target>/<profile>/deps/`; binaries one level up.
    let exe = std::env::current_exe().expect("current test executable");
    let deps = exe.parent().expect("test executable has a directory");
    if deps.ends_with("deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// Path of a workspace executable, failing with what to do when it is not built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `cargo build --bins` (or `make test`) before the tests",
            path.display()
        );
    }
    Ok(path)
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_for_port(addr: &str, timeout: Duration) -> Result<()> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad address {addr}"))?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after {timeout:?}")
}

/// A `notesaga-broker` child process on a free port, killed on drop.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    addr: String,
    data_dir: PathBuf,
    _temp: Option<TempDir>,
}

impl BrokerProcess {
    /// Starts a broker with a fresh temporary data directory.
    pub fn start() -> Result<Self> {
        let temp = tempfile::tempdir()?;
        let data_dir = temp.path().join("broker");
        let mut broker = Self::start_in(&data_dir, &free_addr())?;
        broker._temp = Some(temp);
        Ok(broker)
    }

    /// Starts a broker on `addr` keeping its log in `data_dir` (which may already hold one).
    pub fn start_in(data_dir: &Path, addr: &str) -> Result<Self> {
        Self::start_with(data_dir, addr, &[])
    }

    /// [`BrokerProcess::start_in`] with extra `notesaga-broker` flags (e.g.
    /// `--metrics-addr`, `--storage sqlite`).
    pub fn start_with(data_dir: &Path, addr: &str, args: &[&str]) -> Result<Self> {
        let child = Command::new(bin("notesaga-broker")?)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--kafka-addr")
            .arg(addr)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn notesaga-broker")?;
        let broker = Self {
            child: Some(child),
            addr: addr.to_owned(),
            data_dir: data_dir.to_owned(),
            _temp: None,
        };
        wait_for_port(addr, Duration::from_secs(30))?;
        wait_for_metadata(addr, Duration::from_secs(30))?;
        Ok(broker)
    }

    /// The `HOST:PORT` bootstrap address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the broker (SIGKILL if `kill`, else SIGTERM and a wait of up to 30 s) and
    /// starts it again on the same address and log.
    pub fn restart(&mut self, kill: bool) -> Result<()> {
        if kill {
            self.kill();
        } else if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut fresh = Self::start_in(&self.data_dir, &self.addr)?;
        self.child = fresh.child.take();
        Ok(())
    }

    /// Stops the broker with SIGKILL (the log must survive that too).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the broker answers a metadata request through librdkafka.
pub fn wait_for_metadata(addr: &str, timeout: Duration) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("log_level", "3")
        .create()?;
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.fetch_metadata(None, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() > deadline => {
                bail!("broker at {addr} did not answer metadata: {err}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A child process killed (SIGKILL) on drop unless stopped first.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Option<Child>,
}

impl ChildProcess {
    /// Spawns `command`, naming it `name` in errors.
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self> {
        let child = command.spawn().with_context(|| format!("spawn {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (up to `timeout`) for a clean exit; SIGKILL after that.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.name)
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait()?;
                bail!(
                    "{} ignored SIGTERM for {timeout:?} (killed: {status})",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `notesaga` command with quiet logs unless `NOTESAGA_TEST_LOG` asks for more.
pub fn notesaga() -> Result<Command> {
    let mut command = Command::new(bin("notesaga")?);
    command
        .env(
            "NOTESAGA_LOG",
            std::env::var("NOTESAGA_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("NOTESAGA_DATABASE_URL")
        .env_remove("DATABASE_URL")
        // The hash embedder: tests not about the model stay fast and need no model files
        // (a test about the model sets `minilm` again).
        .env("NOTESAGA_EMBEDDING_PROVIDER", "builtin")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Ok(command)
}

/// A provider test server's scripted failure: `status` with `body`, and `Retry-After:
/// seconds` when given (the OpenAI-compatible test servers of the embedding and narration
/// providers answer with it).
pub fn scripted_status(
    status: u16,
    retry_after: Option<u64>,
    body: &'static str,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let status = axum::http::StatusCode::from_u16(status).expect("a valid status code");
    let mut response = (status, body).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(seconds),
        );
    }
    response
}

/// Every file under `root` (not directories), sorted: what a test checks was left on disk.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|entry| entry.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Runs an operator command to its end; returns its exit status and its stdout and
/// stderr together (for assertions and failure messages).
pub fn run_captured(command: &mut Command) -> Result<(std::process::ExitStatus, String)> {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status, text))
}

/// The report of a `notesaga check` run, or its violations as the error.
fn consistent(clean: bool, report: String) -> Result<String> {
    if !clean {
        bail!("notesaga check found violations:\n{report}");
    }
    Ok(report)
}

/// Waits until `GET url` answers 200.
pub async fn wait_for_http(url: &str, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `notesaga dev` on free ports with a given data directory.
#[derive(Debug)]
pub struct SingleNode {
    process: ChildProcess,
    /// Data directory.
    pub data_dir: PathBuf,
    /// `HOST:PORT` of the HTTP API.
    pub http_addr: String,
    /// `HOST:PORT` of the broker.
    pub kafka_addr: String,
    /// `HOST:PORT` of the registry.
    pub registry_addr: String,
}

impl SingleNode {
    /// Starts `notesaga dev` on fresh ports and waits until the API answers.
    pub async fn start(data_dir: &Path) -> Result<Self> {
        Self::start_on(data_dir, &free_addr(), &free_addr(), &free_addr()).await
    }

    /// Starts `notesaga dev` on the given addresses (to restart on the same ones).
    pub async fn start_on(
        data_dir: &Path,
        http: &str,
        kafka: &str,
        registry: &str,
    ) -> Result<Self> {
        seed_jwt_secret(data_dir)?;
        let process = ChildProcess::spawn(
            "notesaga dev",
            notesaga()?
                .arg("dev")
                .arg("--data-dir")
                .arg(data_dir)
                .args([
                    "--http-addr",
                    http,
                    "--kafka-addr",
                    kafka,
                    "--registry-addr",
                    registry,
                ])
                .args(["--partitions", "3"]),
        )?;
        let node = Self {
            process,
            data_dir: data_dir.to_owned(),
            http_addr: http.to_owned(),
            kafka_addr: kafka.to_owned(),
            registry_addr: registry.to_owned(),
        };
        wait_for_http(
            &format!("{}/healthz", node.http_url()),
            Duration::from_secs(120),
        )
        .await?;
        Ok(node)
    }

    /// `http://HOST:PORT` of the API.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// `http://HOST:PORT` of the registry.
    pub fn registry_url(&self) -> String {
        format!("http://{}", self.registry_addr)
    }

    /// Runs `notesaga check --data-dir` against the running node (it finds the addresses
    /// in the data directory) and fails with its report unless it is clean.
    pub fn assert_consistent(&self, wait: Duration) -> Result<String> {
        let mut command = notesaga()?;
        command
            .arg("check")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--wait", &wait.as_secs().to_string()]);
        let (status, report) = run_captured(&mut command)?;
        consistent(status.success(), report)
    }

    /// Stops it the way an operator does (SIGTERM) and checks it exits cleanly.
    pub fn stop(&mut self) -> Result<()> {
        let status = self.process.terminate(Duration::from_secs(30))?;
        if !status.success() {
            bail!("notesaga dev exited with {status}");
        }
        Ok(())
    }
}

/// Makes `notesaga dev` in `data_dir` use [`TEST_JWT_SECRET`]: it keeps the secret it
/// finds there (a directory it already ran in keeps its own).
fn seed_jwt_secret(data_dir: &Path) -> Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    std::fs::create_dir_all(data_dir)?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data_dir.join("jwt-secret"))
    {
        Ok(mut file) => Ok(file.write_all(TEST_JWT_SECRET.as_bytes())?),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err).context("seed the node's jwt-secret"),
    }
}

/// A small client of the HTTP API for tests, acting as [`TEST_USER`] (see [`http`]).
pub mod client {
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context as _, Result};
    use serde_json::{json, Value};

    /// The status and JSON body of a response, once it is checked against the API's
    /// `/openapi.json` (one that does not conform fails the test).
    async fn checked_json(
        base: &str,
        method: &str,
        response: reqwest::Response,
    ) -> Result<(u16, Value)> {
        let (status, _, body) = super::openapi::checked(base, method, response).await?;
        Ok((status, serde_json::from_slice(&body).context("JSON body")?))
    }

    /// `POST /v1/notes`; returns `(status, body)`.
    pub async fn create(base: &str, title: &str, body: &str) -> Result<(u16, Value)> {
        let response = super::http()
            .post(format!("{base}/v1/notes"))
            .json(&json!({"title": title, "body": body}))
            .send()
            .await?;
        checked_json(base, "POST", response).await
    }

    /// `PUT /v1/notes/{id}`; returns `(status, body)`.
    pub async fn edit(base: &str, id: &str, title: &str, body: &str) -> Result<(u16, Value)> {
        let response = super::http()
            .put(format!("{base}/v1/notes/{id}"))
            .json(&json!({"title": title, "body": body}))
            .send()
            .await?;
        checked_json(base, "PUT", response).await
    }

    /// `GET /v1/notes/{id}`; returns `(status, body)`.
    pub async fn get(base: &str, id: &str) -> Result<(u16, Value)> {
        let response = super::http()
            .get(format!("{base}/v1/notes/{id}"))
            .send()
            .await?;
        checked_json(base, "GET", response).await
    }

    /// `DELETE /v1/notes/{id}`; returns `(status, body)`.
    pub async fn delete(base: &str, id: &str) -> Result<(u16, Value)> {
        let response = super::http()
            .delete(format!("{base}/v1/notes/{id}"))
            .send()
            .await?;
        checked_json(base, "DELETE", response).await
    }

    /// `GET {path}` on the API; returns `(status, body)`.
    pub async fn get_json(base: &str, path: &str) -> Result<(u16, Value)> {
        let response = super::http().get(format!("{base}{path}")).send().await?;
        checked_json(base, "GET", response).await
    }

    /// `GET /v1/notes/{id}/sagas`: the note's sagas.
    pub async fn note_sagas(base: &str, id: &str) -> Result<Vec<Value>> {
        let (status, body) = get_json(base, &format!("/v1/notes/{id}/sagas")).await?;
        if status != 200 {
            bail!("GET sagas of {id}: {status} {body}");
        }
        Ok(body["sagas"].as_array().cloned().unwrap_or_default())
    }

    /// Polls until `done` holds for the note (`GET /v1/notes/{id}`: status and body).
    pub async fn wait_note(
        base: &str,
        id: &str,
        timeout: Duration,
        done: impl Fn(u16, &Value) -> bool,
    ) -> Result<(u16, Value)> {
        let deadline = Instant::now() + timeout;
        let mut last = (0, Value::Null);
        while Instant::now() < deadline {
            let (status, note) = get(base, id).await.context("GET note")?;
            if done(status, &note) {
                return Ok((status, note));
            }
            last = (status, note);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("note {id} not as expected within {timeout:?}; last seen {last:?}")
    }

    /// Polls the note's sagas until `done` holds for them.
    pub async fn wait_sagas(
        base: &str,
        id: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            // The note may not be projected yet (404): no sagas so far.
            let (status, body) = get_json(base, &format!("/v1/notes/{id}/sagas")).await?;
            let sagas = match status {
                200 => body["sagas"].as_array().cloned().unwrap_or_default(),
                404 => Vec::new(),
                _ => bail!("GET sagas of {id}: {status} {body}"),
            };
            if done(&sagas) {
                return Ok(sagas);
            }
            last = sagas;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("sagas of note {id} not as expected within {timeout:?}; last seen {last:#?}")
    }

    /// Polls `GET /v1/notes/{id}` until `version` is published (or failed: an error).
    pub async fn wait_published(
        base: &str,
        id: &str,
        version: i64,
        timeout: Duration,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let (status, note) = get(base, id).await.context("GET note")?;
            if status == 200 {
                if note["status"] == "failed" && note["version"] == version {
                    bail!("version {version} failed: {note}");
                }
                if note["status"] == "published" && note["published_version"] == version {
                    return Ok(note);
                }
            }
            last = note;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("note {id} v{version} not published within {timeout:?}; last seen {last}")
    }
}

/// A throw-away PostgreSQL database on the server at `NOTESAGA_TEST_POSTGRES_URL`
/// (default `postgres://postgres@127.0.0.1:5432`), dropped when the test ends.
#[derive(Debug)]
pub struct PostgresDatabase {
    server: String,
    name: String,
}

impl PostgresDatabase {
    /// Creates a database with a random name.
    pub async fn create() -> Result<Self> {
        use sqlx::Connection as _;
        let server = std::env::var("NOTESAGA_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = random_name("notesaga_test").replace('-', "_");
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .with_context(|| {
                format!("connect to PostgreSQL at {server} (set NOTESAGA_TEST_POSTGRES_URL)")
            })?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        Ok(Self { server, name })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // Best effort, off the test's runtime: leftovers carry a recognisable prefix.
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                use sqlx::Connection as _;
                let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
    }
}

/// One record as it sits on a topic.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers (UTF-8 values; others lossily converted).
    pub headers: std::collections::BTreeMap<String, String>,
}

impl RawRecord {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Every record of every partition of `topic`, up to the current end, outside any group.
pub fn read_topic(kafka: &str, topic: &str) -> Result<Vec<RawRecord>> {
    use rdkafka::message::{Headers as _, Message as _};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", random_name("testkit-reader"))
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0);
    let mut records = Vec::new();
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        if high <= low {
            continue;
        }
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, rdkafka::Offset::Offset(low))?;
        consumer.assign(&assignment)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Instant::now() > deadline {
                bail!("timed out reading {topic}/{partition}");
            }
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message?;
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            records.push(RawRecord {
                partition,
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers,
            });
            if message.offset() + 1 >= high {
                break;
            }
        }
    }
    Ok(records)
}

/// Polls `read_topic` until `done` holds for its records (or fails after `timeout`).
pub async fn wait_for_records(
    kafka: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[RawRecord]) -> bool,
) -> Result<Vec<RawRecord>> {
    let deadline = Instant::now() + timeout;
    loop {
        let (kafka_owned, topic_owned) = (kafka.to_owned(), topic.to_owned());
        let records =
            tokio::task::spawn_blocking(move || read_topic(&kafka_owned, &topic_owned)).await??;
        if done(&records) {
            return Ok(records);
        }
        if Instant::now() > deadline {
            bail!(
                "{topic} did not reach the expected state within {timeout:?} ({} records)",
                records.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every role of a distributed deployment as its own process on one broker, so a test
/// can kill and restart any of them.
#[derive(Debug)]
pub struct Cluster {
    // Fields drop in order: the roles stop before the broker they talk to.
    roles: std::collections::BTreeMap<String, ChildProcess>,
    broker: BrokerProcess,
    storage: Vec<String>,
    env: Vec<(String, String)>,
    /// `http://HOST:PORT` of the registry.
    pub registry_url: String,
    /// `http://HOST:PORT` of the API.
    pub http_url: String,
    http_addr: String,
    data: TempDir,
}

/// The roles [`Cluster`] runs besides the registry, in start order.
pub const ROLES: [&str; 6] = [
    "notes",
    "embedding",
    "narration",
    "orchestrator",
    "projector",
    "api",
];

impl Cluster {
    /// Starts the broker, the registry and every role with SQLite storage.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// The same, with `storage` flags (e.g. `--database-url postgres://…`) for the roles
    /// that keep state.
    pub async fn start_with(storage: &[&str]) -> Result<Self> {
        Self::start_roles(storage, &ROLES).await
    }

    /// The broker, the registry and only `roles` (each once, static membership under its
    /// own name), with `storage` flags.
    pub async fn start_roles(storage: &[&str], roles: &[&str]) -> Result<Self> {
        Self::start_configured(storage, roles, &[]).await
    }

    /// The broker, the registry and `roles`, each role with the environment `env` too
    /// (saga policy, provider settings, `NOTESAGA_FAULTS_DIR`); restarts keep it.
    pub async fn start_configured(
        storage: &[&str],
        roles: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let broker = BrokerProcess::start()?;
        let data = tempfile::tempdir()?;
        let registry_addr = free_addr();
        let registry_url = format!("http://{registry_addr}");
        let registry = ChildProcess::spawn(
            "registry",
            notesaga()?.args([
                "registry",
                "--kafka-addr",
                broker.addr(),
                "--registry-addr",
                &registry_addr,
            ]),
        )?;
        wait_for_http(&format!("{registry_url}/subjects"), Duration::from_secs(60)).await?;
        let http_addr = free_addr();
        let mut cluster = Self {
            roles: std::collections::BTreeMap::from([("registry".to_owned(), registry)]),
            broker,
            storage: storage.iter().map(|s| (*s).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            registry_url,
            http_url: format!("http://{http_addr}"),
            http_addr,
            data,
        };
        for role in roles {
            cluster.start_role(role)?;
        }
        if roles.contains(&"api") {
            wait_for_http(
                &format!("{}/healthz", cluster.http_url),
                Duration::from_secs(60),
            )
            .await?;
        }
        Ok(cluster)
    }

    /// The broker's `HOST:PORT`.
    pub fn kafka_addr(&self) -> &str {
        self.broker.addr()
    }

    /// The shared data directory (audio files, SQLite databases).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The command line of `role`, without spawning it.
    pub fn role_command(&self, role: &str) -> Result<Command> {
        let mut command = notesaga()?;
        command.arg(role).args([
            "--kafka-addr",
            self.broker.addr(),
            "--registry-url",
            &self.registry_url,
            "--partitions",
            "3",
        ]);
        // Only the roles with local state take a data directory and storage flags.
        if !matches!(role, "notes" | "orchestrator") {
            command.arg("--data-dir").arg(self.data.path());
        }
        if matches!(role, "embedding" | "projector" | "api") {
            command.args(&self.storage);
        }
        if role == "api" {
            command
                .args(["--http-addr", &self.http_addr])
                .env("NOTESAGA_JWT_SECRET", TEST_JWT_SECRET);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(command)
    }

    /// Runs `notesaga check` against this cluster's broker, registry and stores, waiting
    /// up to `wait` for in-flight sagas; returns `(success, report)`.
    pub fn check(&self, wait: Duration) -> Result<(bool, String)> {
        let mut command = notesaga()?;
        command
            .args([
                "check",
                "--kafka-addr",
                self.broker.addr(),
                "--registry-url",
                &self.registry_url,
                "--wait",
                &wait.as_secs().to_string(),
            ])
            .arg("--data-dir")
            .arg(self.data.path())
            .args(&self.storage);
        let (status, report) = run_captured(&mut command)?;
        Ok((status.success(), report))
    }

    /// Runs `notesaga check` and fails with its report unless it is clean.
    pub fn assert_consistent(&self, wait: Duration) -> Result<String> {
        let (clean, report) = self.check(wait)?;
        consistent(clean, report)
    }

    /// Runs `notesaga saga ARGS…` against this cluster's API; returns `(status, output)`.
    pub fn saga_cli(&self, args: &[&str]) -> Result<(std::process::ExitStatus, String)> {
        let mut command = notesaga()?;
        command
            .arg("saga")
            .args(args)
            .args(["--api", &self.http_url])
            .args(["--token", &token(TEST_USER, true)]);
        run_captured(&mut command)
    }

    /// Starts (or restarts) `role`, under the name `role` or `instance` for a second copy,
    /// with static group membership under that name (a restart takes its place at once).
    pub fn start_role_as(&mut self, role: &str, instance: &str) -> Result<()> {
        let mut command = self.role_command(role)?;
        command.args(["--instance-id", instance]);
        let child = ChildProcess::spawn(instance, &mut command)?;
        self.roles.insert(instance.to_owned(), child);
        Ok(())
    }

    /// Starts a role instance with dynamic group membership, logging at `info` into
    /// `<data dir>/<instance>.log` (returned), for tests that check what it did.
    pub fn start_role_logged(&mut self, role: &str, instance: &str) -> Result<PathBuf> {
        let path = self.data.path().join(format!("{instance}.log"));
        let mut command = self.role_command(role)?;
        command
            .env("NOTESAGA_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(std::fs::File::create(&path)?);
        let child = ChildProcess::spawn(instance, &mut command)?;
        self.roles.insert(instance.to_owned(), child);
        Ok(path)
    }

    /// Starts (or restarts) `role`.
    pub fn start_role(&mut self, role: &str) -> Result<()> {
        self.start_role_as(role, role)
    }

    /// The process id of a running role instance.
    pub fn role_pid(&self, instance: &str) -> Option<u32> {
        self.roles.get(instance).and_then(ChildProcess::pid)
    }

    /// The broker, to kill, pause or restart it.
    pub fn broker_mut(&mut self) -> &mut BrokerProcess {
        &mut self.broker
    }

    /// SIGKILLs a role instance, as a crash would.
    pub fn kill_role(&mut self, instance: &str) {
        if let Some(mut child) = self.roles.remove(instance) {
            child.kill();
        }
    }

    /// Stops a role instance with SIGTERM and checks it exits cleanly.
    pub fn stop_role(&mut self, instance: &str) -> Result<()> {
        let mut child = self
            .roles
            .remove(instance)
            .with_context(|| format!("{instance} is not running"))?;
        let status = child.terminate(Duration::from_secs(30))?;
        if !status.success() {
            bail!("{instance} exited with {status}");
        }
        Ok(())
    }
}

/// Client helpers for the query side of the HTTP API: note lists, command status,
/// search, readiness, and commands whose `Location` and `If-Match` matter. They act as
/// [`TEST_USER`] (see [`http`]).
pub mod queries {
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context as _, Result};
    use serde_json::{json, Value};

    /// An answer: status, the `Location` header if any, and the JSON body.
    #[derive(Debug, Clone)]
    pub struct Answer {
        /// HTTP status.
        pub status: u16,
        /// The `Location` header (the command status URL of a 202).
        pub location: Option<String>,
        /// The body.
        pub body: Value,
    }

    /// The answer, once the response is checked against the API's `/openapi.json` (one
    /// that does not conform fails the test).
    async fn answer(base: &str, method: &str, response: reqwest::Response) -> Result<Answer> {
        let (status, headers, body) = super::openapi::checked(base, method, response).await?;
        let location = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = serde_json::from_slice(&body).context("JSON body")?;
        Ok(Answer {
            status,
            location,
            body,
        })
    }

    /// `GET {path}` with the query `params` (encoded here).
    pub async fn get(base: &str, path: &str, params: &[(&str, &str)]) -> Result<Answer> {
        let url = reqwest::Url::parse_with_params(&format!("{base}{path}"), params)?;
        answer(base, "GET", super::http().get(url).send().await?).await
    }

    /// `POST /v1/notes`, keeping the `Location` header.
    pub async fn create(base: &str, title: &str, body: &str) -> Result<Answer> {
        let response = super::http()
            .post(format!("{base}/v1/notes"))
            .json(&json!({"title": title, "body": body}))
            .send()
            .await?;
        answer(base, "POST", response).await
    }

    /// `PUT /v1/notes/{id}` with `If-Match: "<expected_version>"`.
    pub async fn edit_if_match(
        base: &str,
        id: &str,
        title: &str,
        body: &str,
        expected_version: i64,
    ) -> Result<Answer> {
        let response = super::http()
            .put(format!("{base}/v1/notes/{id}"))
            .header(reqwest::header::IF_MATCH, format!("\"{expected_version}\""))
            .json(&json!({"title": title, "body": body}))
            .send()
            .await?;
        answer(base, "PUT", response).await
    }

    /// `DELETE /v1/notes/{id}`, keeping the `Location` header.
    pub async fn delete(base: &str, id: &str) -> Result<Answer> {
        let response = super::http()
            .delete(format!("{base}/v1/notes/{id}"))
            .send()
            .await?;
        answer(base, "DELETE", response).await
    }

    /// `GET /v1/notes` with `params` (`status`, `limit`, `cursor`).
    pub async fn list(base: &str, params: &[(&str, &str)]) -> Result<Answer> {
        get(base, "/v1/notes", params).await
    }

    /// Every page of `GET /v1/notes?limit=N` (and `status` if given), in order.
    pub async fn list_all(base: &str, limit: u32, status: Option<&str>) -> Result<Vec<Value>> {
        let limit = limit.to_string();
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut params = vec![("limit", limit.as_str())];
            if let Some(status) = status {
                params.push(("status", status));
            }
            if let Some(cursor) = &cursor {
                params.push(("cursor", cursor.as_str()));
            }
            let page = list(base, &params).await?;
            if page.status != 200 {
                bail!("GET /v1/notes {params:?}: {} {}", page.status, page.body);
            }
            items.extend(page.body["items"].as_array().cloned().unwrap_or_default());
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
        bail!("GET /v1/notes never ends")
    }

    /// `GET /v1/commands/{id}`.
    pub async fn command(base: &str, command_id: &str) -> Result<Answer> {
        get(base, &format!("/v1/commands/{command_id}"), &[]).await
    }

    /// Polls the command's status until it is no longer `pending`; returns it.
    pub async fn wait_command(base: &str, command_id: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let answer = command(base, command_id).await?;
            if answer.status != 200 {
                bail!(
                    "GET command {command_id}: {} {}",
                    answer.status,
                    answer.body
                );
            }
            if answer.body["status"] != "pending" {
                return Ok(answer.body);
            }
            last = answer.body;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("command {command_id} still pending after {timeout:?}: {last}")
    }

    /// `GET /v1/search?q=…` (and `limit` if given).
    pub async fn search(base: &str, q: &str, limit: Option<u32>) -> Result<Answer> {
        let limit = limit.map(|l| l.to_string());
        let mut params = vec![("q", q)];
        if let Some(limit) = &limit {
            params.push(("limit", limit.as_str()));
        }
        get(base, "/v1/search", &params).await
    }

    /// `GET /readyz`.
    pub async fn readyz(base: &str) -> Result<Answer> {
        get(base, "/readyz", &[]).await
    }
}
