//! Speech synthesis with espeak-ng, run as a child process writing a WAV file.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _},
    process::Command,
};

/// Bytes of text per engine run (about a minute and a half of speech).
pub const CHUNK_BYTES: usize = 2_000;

/// Appends the PCM bytes of the WAV file `piece` to `out`; every piece must have the
/// format of the first. Returns how many bytes were appended.
async fn append_pcm(
    piece: &Path,
    out: &mut tokio::fs::File,
    format: &mut Option<crate::wav::WavInfo>,
) -> Result<u64, SpeechError> {
    let fail =
        |what: &str, err: &dyn std::fmt::Display| SpeechError::Failed(format!("{what}: {err}"));
    let (mut file, _, chunk) = crate::wav::open(piece)
        .await
        .map_err(|e| fail("engine wrote no valid WAV", &e))?;
    let same = |a: &crate::wav::WavInfo, b: &crate::wav::WavInfo| {
        (a.sample_rate, a.channels, a.bits_per_sample)
            == (b.sample_rate, b.channels, b.bits_per_sample)
    };
    match format {
        Some(first) if !same(first, &chunk.info) => {
            return Err(SpeechError::Failed(
                "the engine changed audio format between chunks".into(),
            ))
        }
        Some(_) => {}
        None => *format = Some(chunk.info),
    }
    file.seek(std::io::SeekFrom::Start(chunk.offset))
        .await
        .map_err(|e| fail("read rendered chunk", &e))?;
    let copied = tokio::io::copy(&mut file.take(chunk.info.data_bytes), out)
        .await
        .map_err(|e| fail("append audio", &e))?;
    Ok(copied)
}

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

    /// Renders `text` into one WAV file at `out`. Long text is spoken in chunks of at
    /// most [`CHUNK_BYTES`], each appended to `out` as soon as it is rendered, so a long
    /// note never sits in memory and each engine run has a bounded time.
    pub async fn render(&self, text: &str, out: &Path) -> Result<(), SpeechError> {
        let chunks = crate::chunks::split(text, CHUNK_BYTES);
        if chunks.is_empty() {
            return Err(SpeechError::Failed("there is nothing to say".into()));
        }
        let io = |what: &str, err: std::io::Error| SpeechError::Failed(format!("{what}: {err}"));
        let mut file = tokio::fs::File::create(out)
            .await
            .map_err(|e| io("create audio file", e))?;
        file.write_all(&[0u8; 44])
            .await
            .map_err(|e| io("write audio", e))?;
        let mut format: Option<crate::wav::WavInfo> = None;
        let mut total = 0u64;
        for (index, chunk) in chunks.iter().enumerate() {
            let piece = out.with_extension(format!("part{index}.wav"));
            let rendered = self.render_one(chunk, &piece).await;
            let appended = match rendered {
                Ok(()) => append_pcm(&piece, &mut file, &mut format).await,
                Err(err) => Err(err),
            };
            let _ = tokio::fs::remove_file(&piece).await;
            total += appended?;
        }
        let format = format.expect("at least one chunk was rendered");
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| io("seek audio", e))?;
        file.write_all(&crate::wav::pcm_header(&format, total))
            .await
            .map_err(|e| io("write audio header", e))?;
        file.sync_all().await.map_err(|e| io("sync audio", e))
    }

    /// One engine run: `text` into a WAV file at `out`.
    async fn render_one(&self, text: &str, out: &Path) -> Result<(), SpeechError> {
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

#[cfg(test)]
mod render_tests {
    use super::*;

    /// Needs espeak-ng (installed by `make deps`): a text of several chunks becomes one
    /// valid WAV whose length is the sum of the chunks'.
    #[tokio::test]
    async fn long_text_becomes_one_valid_wav() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Espeak::default();
        let short = dir.path().join("short.wav");
        engine
            .render("The cell is the unit of life.", &short)
            .await
            .unwrap();
        let long = dir.path().join("long.wav");
        let text = "The cell is the unit of life. ".repeat(200);
        assert!(text.len() > 2 * CHUNK_BYTES);
        engine.render(&text, &long).await.unwrap();
        let read = |path: &Path| {
            let bytes = std::fs::read(path).unwrap();
            crate::wav::parse(&bytes, bytes.len() as u64).unwrap()
        };
        let (one, all) = (read(&short), read(&long));
        assert_eq!(
            all.data_bytes as usize + 44,
            std::fs::metadata(&long).unwrap().len() as usize
        );
        assert!(
            all.duration_ms() > 150 * one.duration_ms(),
            "{} ms vs {} ms",
            all.duration_ms(),
            one.duration_ms()
        );
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 2,
            "no chunk files left behind"
        );
    }
}
