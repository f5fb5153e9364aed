//! Fault points: places inside the roles where the end-to-end tests make an operation
//! fail on purpose (a delete that fails three times, then succeeds).
//!
//! They exist only in builds with the `fault-injection` cargo feature, which only the
//! test command enables (`make test`); a release build has no such code, so no runtime
//! switch can make a production deployment fail by accident. With the feature, a point
//! fails while the file `$NOTESAGA_FAULTS_DIR/<point>` says so: a number N fails the next
//! N calls (the file counts down), `always` fails every call; removing the file is the
//! "fix" a test applies before an operator retry. A pause point ([`pause`]) sleeps the
//! number of milliseconds its file holds, to play a hanging provider.

/// Whether the fault point `point` (e.g. `narration.delete`) fails this call.
#[cfg(feature = "fault-injection")]
pub fn check(point: &str) -> Result<(), String> {
    let Some(dir) = std::env::var_os("NOTESAGA_FAULTS_DIR") else {
        return Ok(());
    };
    let path = std::path::Path::new(&dir).join(point);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let failure = || Err(format!("fault point {point}: injected failure"));
    match text.trim() {
        "always" => failure(),
        count => match count.parse::<u32>() {
            Ok(left) if left > 0 => {
                // Best effort: a test that cannot count down sees one more failure.
                let _ = std::fs::write(&path, (left - 1).to_string());
                failure()
            }
            _ => Ok(()),
        },
    }
}

/// Whether the fault point `point` fails this call: never, in a build without the
/// `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn check(_point: &str) -> Result<(), String> {
    Ok(())
}

/// Sleeps as long as the file `$NOTESAGA_FAULTS_DIR/<point>` says (milliseconds), to
/// make a step hang past its saga deadline.
#[cfg(feature = "fault-injection")]
pub async fn pause(point: &str) {
    let Some(dir) = std::env::var_os("NOTESAGA_FAULTS_DIR") else {
        return;
    };
    let path = std::path::Path::new(&dir).join(point);
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(millis) = text.trim().parse::<u64>() {
            tracing::warn!(point, millis, "fault point: pausing");
            tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        }
    }
}

/// Sleeps as long as the pause point says: never, without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub async fn pause(_point: &str) {}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;

    #[test]
    fn counts_down_then_passes() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("NOTESAGA_FAULTS_DIR", dir.path());
        std::fs::write(dir.path().join("x.op"), "2").unwrap();
        assert!(check("x.op").is_err());
        assert!(check("x.op").is_err());
        assert!(check("x.op").is_ok());
        std::fs::write(dir.path().join("x.op"), "always").unwrap();
        assert!(check("x.op").is_err());
        assert!(check("x.op").is_err());
        std::fs::remove_file(dir.path().join("x.op")).unwrap();
        assert!(check("x.op").is_ok());
        assert!(check("y.op").is_ok());
    }
}
