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
    let addr: SocketAddr = addr.parse().with_context(|| format!("bad address {addr}"))?;
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
