//! Just enough of RIFF/WAVE to know how long a file plays, and to join the audio of
//! several files into one ([`WavWriter`]).

use std::{
    io::{self, Read as _, Seek as _, Write as _},
    path::Path,
};

/// The format code of integer PCM (`WAVE_FORMAT_PCM`).
pub const PCM: u16 = 1;
/// The format tag whose real format code is in its sub-format GUID.
const EXTENSIBLE: u16 = 0xFFFE;

/// Why a byte string is not a playable PCM WAV.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    /// Not a RIFF/WAVE file.
    #[error("not a RIFF/WAVE file")]
    NotWave,
    /// The `fmt ` chunk is missing or broken.
    #[error("no usable fmt chunk")]
    NoFormat,
    /// The `data` chunk is missing.
    #[error("no data chunk")]
    NoData,
}

/// The playable facts of a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    /// Format code: [`PCM`] for integer PCM (an extensible header's sub-format counts).
    pub encoding: u16,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// Bytes of audio in the data chunk.
    pub data_bytes: u64,
}

impl WavInfo {
    /// Playing time in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        let bytes_per_second = u64::from(self.sample_rate)
            * u64::from(self.channels)
            * u64::from(self.bits_per_sample)
            / 8;
        (self.data_bytes * 1000)
            .checked_div(bytes_per_second)
            .unwrap_or(0)
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the header of a WAV file (`file_len` is the whole file's size, used when a
/// streaming writer left the data chunk's size unset at 0 or 0xFFFFFFFF).
pub fn parse(header: &[u8], file_len: u64) -> Result<WavInfo, WavError> {
    if header.get(0..4) != Some(b"RIFF") || header.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWave);
    }
    let mut at = 12;
    let mut format = None;
    while let (Some(id), Some(size)) = (header.get(at..at + 4), u32_at(header, at + 4)) {
        let body = at + 8;
        match id {
            b"fmt " => {
                let tag = u16_at(header, body).ok_or(WavError::NoFormat)?;
                let encoding = if tag == EXTENSIBLE {
                    // The first two bytes of the sub-format GUID are the format code.
                    u16_at(header, body + 24).ok_or(WavError::NoFormat)?
                } else {
                    tag
                };
                format = Some((
                    encoding,
                    u16_at(header, body + 2).ok_or(WavError::NoFormat)?,
                    u32_at(header, body + 4).ok_or(WavError::NoFormat)?,
                    u16_at(header, body + 14).ok_or(WavError::NoFormat)?,
                ));
            }
            b"data" => {
                let (encoding, channels, sample_rate, bits_per_sample) =
                    format.ok_or(WavError::NoFormat)?;
                let available = file_len.saturating_sub(body as u64);
                let data_bytes = match size {
                    0 | u32::MAX => available,
                    size => u64::from(size).min(available),
                };
                return Ok(WavInfo {
                    encoding,
                    sample_rate,
                    channels,
                    bits_per_sample,
                    data_bytes,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body + size as usize + (size as usize & 1);
    }
    Err(WavError::NoData)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(sample_rate: u32, data: usize, declared: Option<u32>) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&sample_rate.to_le_bytes());
        out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&declared.unwrap_or(data as u32).to_le_bytes());
        out.resize(out.len() + data, 0);
        out
    }

    #[test]
    fn durations() {
        for (rate, data, declared, expected) in [
            (22_050, 44_100, None, 1000),
            (22_050, 22_050, None, 500),
            (16_000, 64_000, Some(u32::MAX), 2000),
            (16_000, 64_000, Some(0), 2000),
            (16_000, 0, None, 0),
        ] {
            let bytes = wav(rate, data, declared);
            let info = parse(&bytes, bytes.len() as u64).unwrap();
            assert_eq!(info.duration_ms(), expected, "rate {rate} data {data}");
        }
    }

    #[test]
    fn rejects_what_is_not_wav() {
        assert_eq!(parse(b"ID3\x03 not a wav", 14), Err(WavError::NotWave));
        let mut no_data = wav(8000, 0, None);
        no_data.truncate(36);
        assert_eq!(parse(&no_data, 36), Err(WavError::NoData));
    }
}

/// Where the PCM bytes of a WAV file are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChunk {
    /// Format of the audio.
    pub info: WavInfo,
    /// Offset of the first audio byte in the file.
    pub offset: u64,
}

/// Finds the data chunk of a WAV file (its format and where its bytes start).
pub fn data_chunk(header: &[u8], file_len: u64) -> Result<DataChunk, WavError> {
    let info = parse(header, file_len)?;
    let mut at = 12;
    while let (Some(id), Some(size)) = (header.get(at..at + 4), u32_at(header, at + 4)) {
        if id == b"data" {
            return Ok(DataChunk {
                info,
                offset: (at + 8) as u64,
            });
        }
        at += 8 + size as usize + (size as usize & 1);
    }
    Err(WavError::NoData)
}

/// The 44-byte header of a PCM WAV file holding `data_bytes` of audio.
pub fn pcm_header(info: &WavInfo, data_bytes: u64) -> [u8; 44] {
    let data = u32::try_from(data_bytes).unwrap_or(u32::MAX);
    let block_align = info.channels * info.bits_per_sample / 8;
    let byte_rate = info.sample_rate * u32::from(block_align);
    let mut header = [0u8; 44];
    header[0..4].copy_from_slice(b"RIFF");
    header[4..8].copy_from_slice(&data.saturating_add(36).to_le_bytes());
    header[8..16].copy_from_slice(b"WAVEfmt ");
    header[16..20].copy_from_slice(&16u32.to_le_bytes());
    header[20..22].copy_from_slice(&1u16.to_le_bytes());
    header[22..24].copy_from_slice(&info.channels.to_le_bytes());
    header[24..28].copy_from_slice(&info.sample_rate.to_le_bytes());
    header[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    header[32..34].copy_from_slice(&block_align.to_le_bytes());
    header[34..36].copy_from_slice(&info.bits_per_sample.to_le_bytes());
    header[36..40].copy_from_slice(b"data");
    header[40..44].copy_from_slice(&data.to_le_bytes());
    header
}

/// Opens a WAV file and finds its audio: the open file, its size in bytes and its data
/// chunk (read from the first 4 KiB, where every engine here puts its header).
pub async fn open(path: &std::path::Path) -> Result<(tokio::fs::File, u64, DataChunk), String> {
    let path = path.to_owned();
    let (file, size, chunk) = blocking(move || open_blocking(&path))
        .await
        .map_err(|e| e.to_string())??;
    Ok((tokio::fs::File::from_std(file), size, chunk))
}

/// [`open`] on the calling thread: one hand-off to the blocking pool for the open, the
/// size and the header, where an async file paid one for each.
fn open_blocking(path: &Path) -> io::Result<Result<(std::fs::File, u64, DataChunk), String>> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut header = vec![0u8; 4096.min(size as usize)];
    file.read_exact(&mut header)?;
    Ok(data_chunk(&header, size)
        .map(|chunk| (file, size, chunk))
        .map_err(|e| e.to_string()))
}

/// Runs file work on tokio's blocking pool. Each call is a hand-off to another thread
/// and back, so a step's system calls go in one call, not one each as
/// `tokio::fs::File` makes them.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

/// Why audio could not be added to a [`WavWriter`].
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The piece is not a playable WAV.
    #[error("not a playable WAV: {0}")]
    Invalid(#[from] WavError),
    /// The piece is not integer PCM, whose bytes can be concatenated.
    #[error("unsupported WAV encoding (format code {0}): only integer PCM can be joined")]
    Unsupported(u16),
    /// The piece's format differs from the first piece's.
    #[error(
        "audio format changed between chunks: {}, then {}",
        describe(.first),
        describe(.then)
    )]
    FormatChanged {
        /// The format of the file so far.
        first: WavInfo,
        /// The format of the piece refused.
        then: WavInfo,
    },
    /// Writing the file failed.
    #[error("writing audio: {0}")]
    Io(#[from] io::Error),
}

impl JoinError {
    /// Whether the same pieces could be joined on another try: only when the disk
    /// failed; a bad or mismatched piece stays bad.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Io(_))
    }
}

fn describe(info: &WavInfo) -> String {
    format!(
        "{} Hz, {} channel(s), {} bit",
        info.sample_rate, info.channels, info.bits_per_sample
    )
}

/// One PCM WAV file built from the audio of several WAV pieces of one format, written
/// to disk as each piece arrives (a long narration is never held in memory whole). The
/// header is written last, when the length is known.
#[derive(Debug)]
pub struct WavWriter {
    /// `None` only while a write is on the blocking pool, or after one failed.
    file: Option<std::fs::File>,
    format: Option<WavInfo>,
    data_bytes: u64,
}

impl WavWriter {
    /// Creates (or truncates) `path`, leaving room for the header.
    pub async fn create(path: &Path) -> io::Result<Self> {
        let path = path.to_owned();
        let file = blocking(move || {
            let mut file = std::fs::File::create(&path)?;
            file.write_all(&[0u8; 44])?;
            Ok(file)
        })
        .await?;
        Ok(Self {
            file: Some(file),
            format: None,
            data_bytes: 0,
        })
    }

    /// The file, unless an earlier write failed.
    fn take_file(&mut self) -> io::Result<std::fs::File> {
        self.file
            .take()
            .ok_or_else(|| io::Error::other("an earlier write to this audio file failed"))
    }

    /// Appends the audio of the WAV file `piece` (whole, in memory). The first piece
    /// sets the format; a piece of another format is refused.
    pub async fn append(&mut self, piece: &[u8]) -> Result<(), JoinError> {
        let chunk = data_chunk(piece, piece.len() as u64)?;
        let info = chunk.info;
        if info.encoding != PCM {
            return Err(JoinError::Unsupported(info.encoding));
        }
        let same = |a: &WavInfo| {
            (a.sample_rate, a.channels, a.bits_per_sample)
                == (info.sample_rate, info.channels, info.bits_per_sample)
        };
        match &self.format {
            Some(first) if !same(first) => {
                return Err(JoinError::FormatChanged {
                    first: *first,
                    then: info,
                })
            }
            Some(_) => {}
            None => self.format = Some(info),
        }
        let start = chunk.offset as usize;
        // `data_chunk` bounds the data by the bytes present, so this cannot overrun.
        let audio = piece[start..start + info.data_bytes as usize].to_vec();
        let written = audio.len() as u64;
        let mut file = self.take_file()?;
        let file = blocking(move || {
            file.write_all(&audio)?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        self.data_bytes += written;
        Ok(())
    }

    /// Writes the header and flushes the file to disk; returns what it holds.
    pub async fn finish(mut self) -> Result<WavInfo, JoinError> {
        let format = self.format.ok_or(WavError::NoData)?;
        let header = pcm_header(&format, self.data_bytes);
        let mut file = self.take_file()?;
        blocking(move || {
            file.seek(io::SeekFrom::Start(0))?;
            file.write_all(&header)?;
            file.sync_all()
        })
        .await?;
        Ok(WavInfo {
            data_bytes: self.data_bytes,
            ..format
        })
    }
}

#[cfg(test)]
mod join_tests {
    use super::*;

    #[test]
    fn a_written_header_reads_back() {
        let info = WavInfo {
            encoding: PCM,
            sample_rate: 22_050,
            channels: 1,
            bits_per_sample: 16,
            data_bytes: 0,
        };
        let header = pcm_header(&info, 88_200);
        let chunk = data_chunk(&header, 44 + 88_200).unwrap();
        assert_eq!(chunk.offset, 44);
        assert_eq!(chunk.info.data_bytes, 88_200);
        assert_eq!(chunk.info.duration_ms(), 2000);
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    /// A PCM WAV of `samples` mono 16-bit samples, each equal to its index.
    fn piece(sample_rate: u32, samples: u16) -> Vec<u8> {
        let info = WavInfo {
            encoding: PCM,
            sample_rate,
            channels: 1,
            bits_per_sample: 16,
            data_bytes: 0,
        };
        let mut bytes = pcm_header(&info, u64::from(samples) * 2).to_vec();
        bytes.extend((0..samples).flat_map(u16::to_le_bytes));
        bytes
    }

    #[tokio::test]
    async fn pieces_join_into_one_wav_holding_all_their_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("joined.wav");
        let mut writer = WavWriter::create(&path).await.unwrap();
        writer.append(&piece(8_000, 8_000)).await.unwrap();
        writer.append(&piece(8_000, 4_000)).await.unwrap();
        let info = writer.finish().await.unwrap();
        assert_eq!(info.duration_ms(), 1_500);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 44 + 24_000);
        assert_eq!(parse(&bytes, bytes.len() as u64).unwrap(), info);
        // The second piece's first sample follows the first piece's last one.
        assert_eq!(&bytes[44 + 15_998..44 + 16_002], &[0x3f, 0x1f, 0, 0]);
    }

    #[tokio::test]
    async fn a_piece_of_another_format_is_refused_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = WavWriter::create(&dir.path().join("x.wav")).await.unwrap();
        writer.append(&piece(24_000, 10)).await.unwrap();
        let err = writer.append(&piece(22_050, 10)).await.unwrap_err();
        assert!(matches!(err, JoinError::FormatChanged { .. }), "{err}");
        assert!(!err.retryable());
        assert!(err.to_string().contains("24000 Hz"), "{err}");
    }

    #[tokio::test]
    async fn float_audio_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = WavWriter::create(&dir.path().join("x.wav")).await.unwrap();
        let mut float = piece(24_000, 10);
        float[20] = 3; // WAVE_FORMAT_IEEE_FLOAT
        let err = writer.append(&float).await.unwrap_err();
        assert!(matches!(err, JoinError::Unsupported(3)), "{err}");
        let err = writer.append(b"ID3 this is an mp3").await.unwrap_err();
        assert!(
            matches!(err, JoinError::Invalid(WavError::NotWave)),
            "{err}"
        );
        assert!(!err.retryable());
        assert!(
            writer.finish().await.is_err(),
            "no audio, no file to speak of"
        );
    }
}
