//! The docs say what works: every shell command in README.md and docs/**/*.md (docs/research/
//! aside) runs as written as far as can be checked without running it (nerve-learn, nerve-eval
//! and nerveabr-sim accept the sub-commands and options, gst-launch-1.0 lines parse with the
//! nerve plugins, scripts exist and are executable), and every relative link of README.md,
//! docs/**/*.md and models/*.md resolves. The rules are in common/doccheck.rs; the tests at the
//! end run the checker on made-up markdown, to show that it can fail.

use std::path::{Path, PathBuf};

use nerve_e2e::doccheck::{Checker, Failure, Tool, Tools, doc_files};
use nerve_e2e::{in_ci, init, repo_root};

/// Where cargo put this test binary's sibling executables (target/release).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(|| repo_root().join("target/release"))
}

fn tool(path: PathBuf, how_to_get_it: &str) -> Tool {
    if path.is_file() { Tool::At(path) } else { Tool::Missing(format!("{} is missing: {how_to_get_it}", path.display())) }
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut best = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() { newest(&p) } else { e.metadata().ok().and_then(|m| m.modified().ok()) };
        best = best.max(t);
    }
    best
}

/// A binary of this workspace; `cargo test -p nerve-e2e` alone does not build it, so say when it
/// is older than its sources (`cargo test --workspace` builds it before any test runs).
fn workspace_binary(name: &str, krate: &str) -> Tool {
    let path = target_dir().join(name);
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(source)) = (built, newest(&repo_root().join(krate).join("src")))
        && source > built
    {
        eprintln!("note: {} is older than {krate}/src: its --help may not match (cargo build --release -p {krate})", path.display());
    }
    tool(path, &format!("cargo build --release -p {krate}"))
}

fn real_tools() -> Tools {
    Tools {
        nerve_learn: tool(repo_root().join(".venv/bin/nerve-learn"), "run scripts/setup.sh"),
        nerve_eval: workspace_binary("nerve-eval", "nerve-eval"),
        nerveabr_sim: workspace_binary("nerveabr-sim", "nerveabr-sim"),
    }
}

#[test]
fn readme_and_docs_commands_and_links_are_right() {
    let _t = nerve_e2e::Timer::start("docs");
    init();
    let root = repo_root();
    let tools = real_tools();
    let mut failures: Vec<Failure> = Vec::new();
    for t in [&tools.nerve_learn, &tools.nerve_eval, &tools.nerveabr_sim] {
        if let Tool::Missing(why) = t {
            if in_ci() {
                failures.push(Failure { file: PathBuf::from("(tools)"), line: 0, message: format!("{why} (CI is set)") });
            } else {
                eprintln!("SKIP: the commands of this tool are not checked: {why}");
            }
        }
    }
    let files = doc_files(&root);
    assert!(!files.is_empty(), "no README.md or docs under {}", root.display());
    let checker = Checker::new(&root, tools);
    failures.extend(checker.check_files(&files));
    eprintln!("checked {} markdown files:", files.len());
    for (f, code) in &files {
        eprintln!("  {}{}", f.strip_prefix(&root).unwrap_or(f).display(), if *code { "" } else { " (links only)" });
    }
    let mut checked: Vec<_> = checker.checked.lock().map(|c| c.clone().into_iter().collect()).unwrap_or_default();
    checked.sort();
    eprintln!("commands checked: {checked:?}");
    for s in checker.skipped.lock().map(|s| s.clone()).unwrap_or_default() {
        eprintln!("  not checked: {s}");
    }
    assert!(failures.is_empty(), "{} problems in the docs:\n{}", failures.len(), failures.iter().map(|f| format!("{f}\n")).collect::<String>());
}

// ---- the checker itself -------------------------------------------------------------------

/// A scratch repository: scripts/ok.sh (executable), pipelines/noexec.sh (not executable),
/// docs/sub/exists.md, and a fake argparse-style nerve-learn with `registry {list,promote}` and
/// `train-sr [--scale]`.
fn scratch() -> (PathBuf, Tools) {
    use std::os::unix::fs::PermissionsExt;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("doccheck-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for d in ["scripts", "pipelines", "docs/sub", "bin"] {
        std::fs::create_dir_all(root.join(d)).expect("scratch dir");
    }
    let write = |rel: &str, text: &str, mode: u32| {
        let p = root.join(rel);
        std::fs::write(&p, text).expect("scratch file");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write("scripts/ok.sh", "#!/bin/sh\n", 0o755);
    write("pipelines/noexec.sh", "#!/bin/sh\n", 0o644);
    write("docs/sub/exists.md", "# here\n", 0o644);
    write(
        "bin/nerve-learn",
        r#"#!/bin/sh
case "$*" in
  "--help"|"registry --help"|"train-sr --help"|"registry promote --help"|"registry list --help") ;;
  *) echo "nerve-learn: error: invalid choice in: $*" >&2; exit 2 ;;
esac
case "$*" in
  "--help") printf 'usage: nerve-learn [-h] {registry,train-sr} ...\n\npositional arguments:\n  {registry,train-sr}\n' ;;
  "registry --help") printf 'usage: nerve-learn registry [-h] [--tracking-uri URI]\n                            {list,promote}\n\npositional arguments:\n  {list,promote}\n' ;;
  "registry promote --help") printf 'usage: nerve-learn registry promote [-h] name ref\n' ;;
  "registry list --help") printf 'usage: nerve-learn registry list [-h]\n' ;;
  "train-sr --help") printf 'usage: nerve-learn train-sr [-h] [--scale SCALE] [--steps STEPS]\n' ;;
esac
"#,
        0o755,
    );
    let tools = Tools {
        nerve_learn: Tool::At(root.join("bin/nerve-learn")),
        nerve_eval: Tool::Missing("not in this test".into()),
        nerveabr_sim: Tool::Missing("not in this test".into()),
    };
    (root, tools)
}

/// The lines the checker reports for `markdown` placed at docs/page.md of the scratch repo.
fn failing_lines(markdown: &str) -> Vec<(usize, String)> {
    init();
    let (root, tools) = scratch();
    let checker = Checker::new(&root, tools);
    let failures = checker.check_text(&root.join("docs/page.md"), markdown, true);
    let _ = std::fs::remove_dir_all(&root);
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(failures.iter().all(|f| f.file == Path::new("docs/page.md")), "paths are shown relative to the root");
    failures.into_iter().map(|f| (f.line, f.message)).collect()
}

fn lines(failures: &[(usize, String)]) -> Vec<usize> {
    failures.iter().map(|f| f.0).collect()
}

#[test]
fn checker_finds_broken_links() {
    let md = "# Page\n\
              [fine](sub/exists.md#here) [dir](sub/) [up](../scripts/ok.sh) [web](https://example.org/x) [top](#page)\n\
              [broken](sub/missing.md)\n\
              `[not a link](nowhere.md)`\n\
              ![picture](img/none.png)\n\
              [ref]: ../nope/\n";
    let f = failing_lines(md);
    assert_eq!(lines(&f), [3, 5, 6], "{f:?}");
    assert!(f[0].1.contains("sub/missing.md"), "{f:?}");
}

#[test]
fn checker_finds_unknown_gst_elements_and_properties() {
    let md = "```sh\n\
              gst-launch-1.0 -q -e videotestsrc num-buffers=1 ! videoconvert ! nervesr scale=2 ! fakesink\n\
              gst-launch-1.0 videotestsrc ! nosuchelement ! fakesink\n\
              gst-launch-1.0 videotestsrc ! nervesr no-such-property=1 ! fakesink\n\
              gst-launch-1.0 filesrc location=$PWD/x.mp4 ! decodebin ! nervesr scale=${SCALE:-2} ! \\\n  \
                filesink location=$out/y.raw\n\
              GST_DEBUG=3 gst-launch-1.0 videotestsrc ! nerveabr policy=nerve ! fakesink | tee log.txt\n\
              gst-inspect-1.0 nerverecover && gst-inspect-1.0 nosuchelement\n\
              ```\n";
    let f = failing_lines(md);
    assert_eq!(lines(&f), [3, 4, 8], "{f:?}");
    assert!(f[0].1.contains("nosuchelement"), "{f:?}");
    assert!(f[1].1.contains("no-such-property"), "{f:?}");
}

#[test]
fn checker_finds_unknown_nerve_learn_sub_commands_and_options() {
    let md = "```console\n\
              $ nerve-learn registry promote nerve-sr-x2 candidate\n\
              $ .venv/bin/nerve-learn train-sr --scale 2 --steps=10\n\
              $ nerve-learn trian-sr --scale 2\n\
              $ nerve-learn registry promot nerve-sr-x2 candidate\n\
              $ nerve-learn train-sr --scael 2\n\
              $ nerve-learn registry --tracking-uri x list\n\
              ```\n";
    let f = failing_lines(md);
    assert_eq!(lines(&f), [4, 5, 6], "{f:?}");
    assert!(f[0].1.contains("trian-sr"), "{f:?}");
    assert!(f[1].1.contains("promot"), "{f:?}");
    assert!(f[2].1.contains("--scael"), "{f:?}");
}

#[test]
fn checker_finds_missing_and_non_executable_scripts() {
    let md = "```bash\n\
              ./scripts/ok.sh && scripts/missing.sh\n\
              pipelines/noexec.sh\n\
              bash pipelines/noexec.sh\n\
              cd pipelines && ../scripts/ok.sh\n\
              ```\n";
    let f = failing_lines(md);
    assert_eq!(lines(&f), [2, 3], "{f:?}");
    assert!(f[0].1.contains("does not exist"), "{f:?}");
    assert!(f[1].1.contains("not executable"), "{f:?}");
}

/// The sub-command rule against the real nerve-learn's argparse output (not a fake's).
#[test]
fn checker_reads_the_real_nerve_learn() {
    init();
    let tools = real_tools();
    if let Tool::Missing(why) = &tools.nerve_learn {
        nerve_e2e::missing(why);
        return;
    }
    let root = repo_root();
    let checker = Checker::new(&root, tools);
    let md = "```sh\nnerve-learn registry promot nerve-sr-x2 candidate\nnerve-learn registry list --no-such-option\n```\n";
    let f = checker.check_text(&root.join("docs/page.md"), md, true);
    assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), [2, 3], "{f:?}");
}
