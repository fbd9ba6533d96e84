//! Running the statically linked C player (`player.c`, built by `build.sh` into
//! `target/capi/nerve-player`) and reading what it prints: one `decision <structure>` line per
//! nerveabr decision, `stats <structure>` with nervesr's counters at EOS, `output <caps>` with the
//! size that left nervesr, then `eos`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The player binary: `NERVE_PLAYER`, else `target/capi/nerve-player` in the workspace.
pub fn player_path() -> PathBuf {
    std::env::var_os("NERVE_PLAYER").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/capi/nerve-player"),
        PathBuf::from,
    )
}

/// What one run of the player printed, line by line, sorted by kind.
#[derive(Debug, Default)]
pub struct Run {
    pub status: Option<i32>,
    pub decisions: Vec<String>,
    pub stats: Vec<String>,
    pub output: Option<String>,
    pub eos: bool,
    pub stderr: String,
}

impl Run {
    pub fn parse(status: Option<i32>, stdout: &str, stderr: &str) -> Self {
        let mut run = Self { status, stderr: stderr.to_owned(), ..Self::default() };
        for line in stdout.lines() {
            match line.split_once(' ') {
                Some(("decision", s)) => run.decisions.push(s.to_owned()),
                Some(("stats", s)) => run.stats.push(s.to_owned()),
                Some(("output", s)) => run.output = Some(s.to_owned()),
                _ if line == "eos" => run.eos = true,
                _ => {}
            }
        }
        run
    }
}

/// Plays `uri` with the player (sink: its default fakesink) and waits for it to exit.
pub fn play(player: &Path, uri: &str) -> std::io::Result<Run> {
    let out = Command::new(player).arg(uri).output()?;
    Ok(Run::parse(out.status.code(), &String::from_utf8_lossy(&out.stdout), &String::from_utf8_lossy(&out.stderr)))
}

#[cfg(test)]
mod tests {
    use super::Run;

    #[test]
    fn lines_are_sorted_by_kind() {
        let r = Run::parse(
            Some(0),
            "decision nerveabr-decision, fragment=(guint64)1;\nnoise\nstats nervesr-stats, frames-enhanced=(guint64)3;\n\
             output video/x-raw, width=(int)640;\neos\n",
            "",
        );
        assert_eq!(r.decisions.len(), 1);
        assert_eq!(r.stats.len(), 1);
        assert!(r.output.as_deref().is_some_and(|o| o.contains("640")));
        assert!(r.eos);
        assert!(!Run::parse(Some(1), "error\n", "").eos);
    }
}
