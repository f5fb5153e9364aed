//! Test fixtures shared by the workspace's integration tests.
//!
//! [`BrokerProcess`] starts the workspace's own `notesaga-broker` executable on a free
//! loopback port with a throw-away data directory, exactly as `notesaga dev` does, and
//! kills it when dropped. [`random_name`] gives topics and groups that never collide.
//! Binaries are found next to the test executable's target directory (build them first
//! with `cargo build --bins`, which `make test` does) or through `NOTESAGA_BIN_DIR`.

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
        let child = Command::new(bin("notesaga-broker")?)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--kafka-addr")
            .arg(addr)
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

    /// The process id.
    pub fn id(&self) -> Option<u32> {
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

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
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
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Ok(command)
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

    /// Stops it the way an operator does (SIGTERM) and checks it exits cleanly.
    pub fn stop(&mut self) -> Result<()> {
        let status = self.process.terminate(Duration::from_secs(30))?;
        if !status.success() {
            bail!("notesaga dev exited with {status}");
        }
        Ok(())
    }
}

/// A small client of the HTTP API for tests.
pub mod client {
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context as _, Result};
    use serde_json::{json, Value};

    /// `POST /v1/notes`; returns `(status, body)`.
    pub async fn create(base: &str, title: &str, body: &str) -> Result<(u16, Value)> {
        let response = reqwest::Client::new()
            .post(format!("{base}/v1/notes"))
            .json(&json!({"title": title, "body": body}))
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// `PUT /v1/notes/{id}`; returns `(status, body)`.
    pub async fn edit(base: &str, id: &str, title: &str, body: &str) -> Result<(u16, Value)> {
        let response = reqwest::Client::new()
            .put(format!("{base}/v1/notes/{id}"))
            .json(&json!({"title": title, "body": body}))
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// `GET /v1/notes/{id}`; returns `(status, body)`.
    pub async fn get(base: &str, id: &str) -> Result<(u16, Value)> {
        let response = reqwest::get(format!("{base}/v1/notes/{id}")).await?;
        Ok((response.status().as_u16(), response.json().await?))
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
