//! Speech synthesis with espeak-ng, run as a child process writing a WAV file.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::{io::AsyncWriteExt as _, process::Command};

/// Why speech could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// The engine is not installed.
    #[error("{binary} is not installed or not on PATH (on Debian: apt-get install espeak-ng)")]
    NotInstalled {
        /// The program looked for.
        binary: String,
    },
    /// The engine ran longer than the timeout for this text.
    #[error("speech synthesis timed out after {0:?}")]
    Timeout(Duration),
    /// The engine failed.
    #[error("speech synthesis failed: {0}")]
    Failed(String),
}

impl SpeechError {
    /// Whether trying again may help.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::NotInstalled { .. })
    }
}

/// espeak-ng with a voice and a speaking rate.
#[derive(Debug, Clone)]
pub struct Espeak {
    /// Program to run.
    pub binary: String,
    /// espeak-ng voice (`-v`), e.g. `en`, `en-us`, `de`.
    pub voice: String,
    /// Words per minute (`-s`).
    pub rate: u32,
}

impl Default for Espeak {
    fn default() -> Self {
        Self {
            binary: "espeak-ng".into(),
            voice: "en".into(),
            rate: 175,
        }
    }
}

impl Espeak {
    /// Time allowed for `text`: long notes are long audio, so it grows with the length.
    pub fn timeout_for(text: &str) -> Duration {
        Duration::from_secs(30) + Duration::from_millis(text.len() as u64 * 5)
    }

    /// Renders `text` into a WAV file at `out`; espeak-ng writes it as it speaks.
    pub async fn render(&self, text: &str, out: &Path) -> Result<(), SpeechError> {
        let mut child = Command::new(&self.binary)
            .arg("-v")
            .arg(&self.voice)
            .arg("-s")
            .arg(self.rate.to_string())
            .arg("-w")
            .arg(out)
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => SpeechError::NotInstalled {
                    binary: self.binary.clone(),
                },
                _ => SpeechError::Failed(err.to_string()),
            })?;
        let timeout = Self::timeout_for(text);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let text = text.to_owned();
        let feed = async move {
            stdin.write_all(text.as_bytes()).await?;
            stdin.shutdown().await
        };
        let run = async {
            feed.await
                .map_err(|err| SpeechError::Failed(format!("writing text: {err}")))?;
            let output = child
                .wait_with_output()
                .await
                .map_err(|err| SpeechError::Failed(err.to_string()))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(SpeechError::Failed(format!(
                    "{} exited with {}: {}",
                    self.binary,
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )))
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| SpeechError::Timeout(timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_grows_with_the_text() {
        assert!(Espeak::timeout_for(&"a".repeat(100_000)) > Espeak::timeout_for("short"));
    }

    #[tokio::test]
    async fn a_missing_engine_is_not_retryable() {
        let engine = Espeak {
            binary: "no-such-espeak-binary".into(),
            ..Espeak::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let err = engine
            .render("hi", &dir.path().join("x.wav"))
            .await
            .unwrap_err();
        assert!(matches!(err, SpeechError::NotInstalled { .. }), "{err}");
        assert!(!err.retryable());
    }
}
