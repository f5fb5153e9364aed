//! A real S3 API on a loopback port: the standalone server of PyPI's `moto` (pinned and
//! installed by `make deps` into ~/.cache/notesaga-moto/venv), for the S3 audio store.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{free_port, wait_for_port, ChildProcess};

/// The `moto_server` program: NOTESAGA_MOTO_SERVER, else the venv `make deps` makes,
/// else the one on PATH.
pub fn moto_server_bin() -> PathBuf {
    if let Some(explicit) = std::env::var_os("NOTESAGA_MOTO_SERVER") {
        return PathBuf::from(explicit);
    }
    let venv = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/notesaga-moto/venv/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

/// A `moto_server` child process on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    _child: ChildProcess,
    endpoint: String,
}

impl MotoServer {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> Result<Self> {
        let port = free_port();
        let bin = moto_server_bin();
        let child = ChildProcess::spawn(
            "moto_server",
            Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .with_context(|| {
            format!(
                "start {} (run `make deps`, or set NOTESAGA_MOTO_SERVER)",
                bin.display()
            )
        })?;
        let addr = format!("127.0.0.1:{port}");
        wait_for_port(&addr, Duration::from_secs(60))?;
        Ok(Self {
            _child: child,
            endpoint: format!("http://{addr}"),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates `bucket` (moto accepts unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("creating bucket {bucket}: {}", response.status());
        }
        Ok(())
    }
}
