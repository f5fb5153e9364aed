//! Speech synthesis with espeak-ng, run as a child process writing a WAV to its stdout.

use std::{process::Stdio, time::Duration};

use notesaga_log::provider::ProviderError;
use tokio::{io::AsyncWriteExt as _, process::Command};

/// Bytes of text per engine run or request (about a minute and a half of speech).
pub const CHUNK_BYTES: usize = 2_000;

/// Why espeak-ng could not speak a text.
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

impl From<SpeechError> for ProviderError {
    fn from(err: SpeechError) -> Self {
        if err.retryable() {
            Self::retryable(err.to_string())
        } else {
            Self::Permanent(err.to_string())
        }
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

    /// One engine run: `text` (one chunk) spoken into the bytes of a WAV file.
    pub async fn speak(&self, text: &str) -> Result<Vec<u8>, SpeechError> {
        let mut child = Command::new(&self.binary)
            .arg("-v")
            .arg(&self.voice)
            .arg("-s")
            .arg(self.rate.to_string())
            .arg("--stdout")
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
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
        // Fed from a task: a long text fills the pipe before espeak-ng, blocked on a full
        // stdout nobody reads yet, takes more of it.
        let feed = tokio::spawn(async move {
            stdin.write_all(text.as_bytes()).await?;
            stdin.shutdown().await
        });
        let run = async {
            let output = child
                .wait_with_output()
                .await
                .map_err(|err| SpeechError::Failed(err.to_string()))?;
            if !output.status.success() {
                return Err(SpeechError::Failed(format!(
                    "{} exited with {}: {}",
                    self.binary,
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            match feed.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(SpeechError::Failed(format!("writing text: {err}"))),
                Err(err) => return Err(SpeechError::Failed(format!("writing text: {err}"))),
            }
            // espeak-ng streams to stdout, so its header's sizes are placeholders; the
            // reader takes the bytes present instead (see `wav::parse`).
            crate::wav::data_chunk(&output.stdout, output.stdout.len() as u64)
                .map_err(|err| SpeechError::Failed(format!("engine wrote no valid WAV: {err}")))?;
            Ok(output.stdout)
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
        let err = engine.speak("hi").await.unwrap_err();
        assert!(matches!(err, SpeechError::NotInstalled { .. }), "{err}");
        assert!(!err.retryable());
        assert!(matches!(
            ProviderError::from(err),
            ProviderError::Permanent(_)
        ));
    }

    /// Needs espeak-ng (installed by `make deps`).
    #[tokio::test]
    async fn speaks_a_sentence_into_a_wav() {
        let bytes = Espeak::default()
            .speak("The cell is the unit of life.")
            .await
            .unwrap();
        let info = crate::wav::parse(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(info.encoding, crate::wav::PCM);
        assert!(
            (1_000..5_000).contains(&info.duration_ms()),
            "{} ms",
            info.duration_ms()
        );
    }
}
