//! Checks the shell commands and the relative links of the project's markdown.
//!
//! Commands: every fenced block whose info string is `sh`, `bash`, `shell` or `console` is read
//! as shell (backslash continuations joined, `$ ` prompts, comments, `VAR=value` prefixes and
//! redirections removed, split on `&&`, `||`, `;`, `|` and `&` outside quotes, words split with
//! `shlex`), and each command is checked by what it starts with:
//! - `nerve-learn`, `nerve-eval`, `nerveabr-sim` (any path ending in those names): the leading
//!   sub-commands must be accepted (`<tool> <sub-commands> --help` exits 0; a sub-command level
//!   is entered while the previous `--help` lists sub-commands, argparse `{a,b}` or clap
//!   `Commands:`), and every `--flag` used must appear in the help of the command or of a parent;
//! - `gst-launch-1.0`: the pipeline (options dropped, shell variables replaced by plausible
//!   values) must parse with `gst::parse::launchv` and fatal errors (unknown element or
//!   property);
//! - `gst-inspect-1.0 NAME`: NAME must be a registered element or plugin;
//! - `./scripts/…`, `scripts/…`, `pipelines/…` or any relative `….sh`: the script must exist and
//!   be executable (`bash x.sh` / `sh x.sh`: exist); `cd DIR` moves where later commands of the
//!   same block are resolved.
//!
//! Links: every `[text](target)`, `![alt](target)` and `[id]: target` outside code whose target
//! is not a URL (`scheme:`) or a pure `#anchor` must name an existing file or directory,
//! relative to the markdown file (`/…`: relative to the repository root).

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::process::Command as Process;
use std::sync::Mutex;

/// The info strings of the blocks whose commands are checked.
pub const SHELL_LANGS: &[&str] = &["sh", "bash", "shell", "console"];
/// Words that run the command after them.
const COMMAND_PREFIXES: &[&str] = &["sudo", "exec", "env", "time", "nohup", "command", "do", "then", "else", "!"];
/// How many `--help` runs go at once (nerve-learn takes ~2 s of CPU to start).
const PARALLEL_HELP: usize = 3;

/// One problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// A fenced code block: its language (first word of the info string, lower case) and its lines
/// with their 1-based line numbers in the file.
#[derive(Debug, Clone)]
pub struct Block {
    pub lang: String,
    pub lines: Vec<(usize, String)>,
}

/// The fenced code blocks of a markdown text (``` or ~~~, three or more, indented or not).
pub fn code_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(char, usize, usize, Block)> = None; // fence char, fence length, indent
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        let fence = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        match &mut open {
            None => {
                for c in ['`', '~'] {
                    let n = fence(c);
                    if n >= 3 {
                        let info = trimmed[n..].trim();
                        if c == '`' && info.contains('`') {
                            continue; // an inline code span, not a fence
                        }
                        let lang = info.split(|ch: char| ch.is_whitespace() || ch == '{' || ch == ',').next().unwrap_or("");
                        open = Some((c, n, indent, Block { lang: lang.to_lowercase(), lines: Vec::new() }));
                        break;
                    }
                }
            }
            Some((c, n, fence_indent, block)) => {
                let closing = fence(*c);
                if closing >= *n && trimmed[closing..].trim().is_empty() {
                    if let Some((_, _, _, block)) = open.take() {
                        blocks.push(block);
                    }
                } else {
                    // Content lines lose at most the fence's own indentation.
                    let strip = indent.min(*fence_indent);
                    block.lines.push((i + 1, line[strip..].to_string()));
                }
            }
        }
    }
    blocks
}

/// One simple command: its words (after prefixes are removed) and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub line: usize,
    pub words: Vec<String>,
}

/// The commands of a shell block, or why a part of it cannot be read.
pub fn commands(block: &Block) -> (Vec<Command>, Vec<(usize, String)>) {
    let console = block.lang == "console";
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut continuing = false;
    let mut heredoc: Option<String> = None;
    for (n, raw) in &block.lines {
        if let Some(end) = &heredoc {
            if raw.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let mut line = raw.trim_start().to_string();
        if !continuing {
            if let Some(rest) = line.strip_prefix("$ ").or_else(|| (line == "$").then_some("")) {
                line = rest.to_string();
            } else if console {
                continue; // output
            }
        }
        let line = strip_comment(&line);
        let (body, more) = match line.trim_end().strip_suffix('\\') {
            Some(body) if !body.ends_with('\\') => (body.to_string(), true),
            _ => (line.trim_end().to_string(), false),
        };
        match logical.last_mut() {
            Some((_, acc)) if continuing => {
                acc.push(' ');
                acc.push_str(body.trim());
            }
            _ => logical.push((*n, body)),
        }
        continuing = more;
        if !more {
            heredoc = logical.last().and_then(|(_, l)| heredoc_end(l));
        }
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in logical {
        for part in split_commands(&line) {
            if part.trim().is_empty() {
                continue;
            }
            let Some(words) = shlex::split(&part) else {
                errors.push((n, format!("cannot split into words (unbalanced quotes?): {}", part.trim())));
                continue;
            };
            let words = strip_prefixes(words);
            if !words.is_empty() {
                out.push(Command { line: n, words });
            }
        }
    }
    (out, errors)
}

/// The line without its `#` comment (a `#` at the start of a word, outside quotes).
fn strip_comment(line: &str) -> String {
    let mut quote: Option<char> = None;
    let mut prev: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), _) if c == q && !(q == '"' && prev == Some('\\')) => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') if prev != Some('\\') => quote = Some(c),
            (None, '#') if prev.is_none_or(char::is_whitespace) => return line[..i].trim_end().to_string(),
            _ => {}
        }
        prev = Some(c);
    }
    line.to_string()
}

/// The end word of a here-document started on this line (`<<EOF`, `<<'EOF'`, `<<-EOF`).
fn heredoc_end(line: &str) -> Option<String> {
    let at = line.find("<<")?;
    let rest = line[at + 2..].trim_start_matches('-').trim_start();
    if rest.starts_with('<') {
        return None; // a here-string
    }
    let word: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ';' && *c != '|' && *c != '&').collect();
    let word = word.trim_matches(|c| c == '\'' || c == '"').to_string();
    (!word.is_empty()).then_some(word)
}

/// Splits a line at `&&`, `||`, `;`, `|` and `&` outside quotes, `$( )` and backticks (`2>&1`
/// and `&>` are redirections, not separators).
pub fn split_commands(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize; // $( ... )
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = if i > 0 { Some(chars[i - 1]) } else { None };
        let next = chars.get(i + 1).copied();
        if let Some(q) = quote {
            if c == q && !(q == '"' && prev == Some('\\')) {
                quote = None;
            }
            cur.push(c);
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' | '`' if prev != Some('\\') => quote = Some(c),
            '(' if prev == Some('$') => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ => {}
        }
        let separator = depth == 0
            && match c {
                ';' => true,
                '|' => true,
                '&' => !matches!(prev, Some('>' | '<')) && next != Some('>'),
                _ => false,
            };
        if separator && quote.is_none() {
            parts.push(std::mem::take(&mut cur));
            if matches!((c, next), ('&', Some('&')) | ('|', Some('|'))) {
                i += 1;
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    parts.push(cur);
    parts
}

/// Drops what comes before the program (`VAR=value`, `sudo`, `exec`, `env`, `time`, …) and the
/// redirections anywhere (`>f`, `2>&1`, `< f`).
fn strip_prefixes(words: Vec<String>) -> Vec<String> {
    let is_assignment = |w: &str| {
        w.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().enumerate().all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
        })
    };
    let mut out = Vec::new();
    let mut skip_next = false;
    for w in words {
        if skip_next {
            skip_next = false;
            continue;
        }
        let redirect = w.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
        if redirect.starts_with('>') || redirect.starts_with('<') {
            let op_only = redirect.trim_start_matches(['>', '<', '&', '|']).trim_start_matches(|c: char| c.is_ascii_digit()).is_empty();
            // `2>&1` is complete; `> file` takes the next word.
            skip_next = op_only && !redirect.contains('&');
            continue;
        }
        if out.is_empty() && (is_assignment(&w) || COMMAND_PREFIXES.contains(&w.as_str())) {
            continue;
        }
        out.push(w);
    }
    out
}

/// The relative link targets of a markdown text outside code, with their line numbers.
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut in_block = vec![false; text.lines().count() + 1];
    for block in code_blocks(text) {
        for (n, _) in &block.lines {
            in_block[*n] = true;
        }
    }
    // The fence lines themselves hold no links either; they are skipped by code_blocks' lines
    // only for the content, so skip lines starting with a fence too.
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let t = line.trim_start();
        if in_block[n] || t.starts_with("```") || t.starts_with("~~~") {
            continue;
        }
        let line = without_code_spans(line);
        // [id]: target
        if let Some(rest) = line.trim_start().strip_prefix('[')
            && let Some((_, def)) = rest.split_once("]:")
            && let Some(target) = def.split_whitespace().next()
        {
            out.push((n, target.trim_matches(['<', '>']).to_string()));
            continue;
        }
        let mut from = 0;
        while let Some(at) = line[from..].find("](") {
            let start = from + at + 2;
            let target = link_target(&line[start..]);
            out.push((n, target));
            from = start;
        }
    }
    out
}

/// The target at the start of `rest` (just after `](`): `<…>`, or up to whitespace or the `)`
/// that closes the link (balanced parentheses inside are kept).
fn link_target(rest: &str) -> String {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        return inner.split('>').next().unwrap_or("").to_string();
    }
    let mut depth = 0usize;
    let mut end = rest.len();
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                end = i;
                break;
            }
            ')' => depth -= 1,
            c if c.is_whitespace() => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    rest[..end].to_string()
}

/// The line with its inline code spans (`…`, ``…``) blanked out.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('`') {
        out.push_str(&rest[..at]);
        let ticks = rest[at..].chars().take_while(|&c| c == '`').count();
        let fence = "`".repeat(ticks);
        let after = &rest[at + ticks..];
        match after.find(&fence) {
            Some(close) => {
                out.push_str(&" ".repeat(ticks * 2 + close));
                rest = &after[close + ticks..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Why a link target does not resolve, or `None` when it does or is not a local path.
pub fn check_link(root: &Path, markdown: &Path, target: &str) -> Option<String> {
    let t = target.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let scheme = t.split_once(':').map(|(s, _)| s);
    if scheme.is_some_and(|s| !s.is_empty() && !s.contains('/') && s.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))) {
        return None; // http:, https:, mailto:, …
    }
    let path = t.split(['#', '?']).next().unwrap_or("");
    let path = percent_decode(path);
    let resolved = match path.strip_prefix('/') {
        Some(abs) => root.join(abs),
        None => markdown.parent().unwrap_or(Path::new(".")).join(&path),
    };
    if resolved.exists() { None } else { Some(format!("broken link `{target}`: {} does not exist", normalise(&resolved).display())) }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a/b/../c` → `a/c` (no file system access).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where a command-line tool is, or why it cannot be used (its commands are then not checked).
#[derive(Debug, Clone)]
pub enum Tool {
    At(PathBuf),
    Missing(String),
}

/// The project's command-line tools the docs call.
#[derive(Debug, Clone)]
pub struct Tools {
    pub nerve_learn: Tool,
    pub nerve_eval: Tool,
    pub nerveabr_sim: Tool,
}

impl Tools {
    fn get(&self, name: &str) -> Option<&Tool> {
        match name {
            "nerve-learn" => Some(&self.nerve_learn),
            "nerve-eval" => Some(&self.nerve_eval),
            "nerveabr-sim" => Some(&self.nerveabr_sim),
            _ => None,
        }
    }
}

/// A `--help` run: its standard output when it exits 0, else what it said.
type HelpResult = Result<String, String>;

/// The checker; `check` may be called for many files (the `--help` answers are cached).
pub struct Checker {
    root: PathBuf,
    tools: Tools,
    helps: Mutex<HashMap<(PathBuf, Vec<String>), HelpResult>>,
    /// Commands not checked because their tool is missing (what, where).
    pub skipped: Mutex<Vec<String>>,
    /// How many commands of each kind were checked.
    pub checked: Mutex<HashMap<&'static str, usize>>,
}

impl Checker {
    pub fn new(root: &Path, tools: Tools) -> Self {
        Self { root: root.to_path_buf(), tools, helps: Mutex::default(), skipped: Mutex::default(), checked: Mutex::default() }
    }

    /// Checks markdown files: `(path, check code blocks)`. GStreamer must be initialised (and
    /// the plugins registered) before, for the gst-launch lines.
    pub fn check_files(&self, files: &[(PathBuf, bool)]) -> Vec<Failure> {
        let mut texts = Vec::new();
        let mut failures = Vec::new();
        for (path, code) in files {
            match std::fs::read_to_string(path) {
                Ok(t) => texts.push((path.clone(), t, *code)),
                Err(e) => failures.push(self.failure(path, 0, format!("cannot read: {e}"))),
            }
        }
        // Start every tool's first `--help` runs in parallel: they are what takes the time.
        let mut prefetch = Vec::new();
        for (_, text, code) in &texts {
            if *code {
                for block in code_blocks(text).iter().filter(|b| SHELL_LANGS.contains(&b.lang.as_str())) {
                    for cmd in commands(block).0 {
                        prefetch.extend(self.help_prefixes(&cmd.words));
                    }
                }
            }
        }
        self.run_helps(prefetch);
        for (path, text, code) in &texts {
            failures.extend(self.check_text(path, text, *code));
        }
        failures
    }

    /// Checks one markdown text as if it were at `path`.
    pub fn check_text(&self, path: &Path, text: &str, code: bool) -> Vec<Failure> {
        let mut failures = Vec::new();
        if code {
            for block in code_blocks(text).iter().filter(|b| SHELL_LANGS.contains(&b.lang.as_str())) {
                let (cmds, errors) = commands(block);
                for (n, e) in errors {
                    failures.push(self.failure(path, n, e));
                }
                let mut cwd = self.root.clone();
                for cmd in cmds {
                    if cmd.words[0] == "cd" {
                        cwd = match cmd.words.get(1) {
                            Some(d) if !d.starts_with('$') && !d.starts_with('~') && d != "-" => cwd.join(d),
                            _ => self.root.clone(),
                        };
                        continue;
                    }
                    for e in self.check_command(&cmd, &cwd) {
                        failures.push(self.failure(path, cmd.line, e));
                    }
                }
            }
        }
        for (n, target) in links(text) {
            if let Some(e) = check_link(&self.root, path, &target) {
                failures.push(self.failure(path, n, e));
            }
        }
        failures
    }

    fn failure(&self, path: &Path, line: usize, message: String) -> Failure {
        Failure { file: path.strip_prefix(&self.root).unwrap_or(path).to_path_buf(), line, message }
    }

    /// What is wrong with one command (nothing for commands this checker does not know).
    pub fn check_command(&self, cmd: &Command, cwd: &Path) -> Vec<String> {
        let program = cmd.words[0].as_str();
        let name = Path::new(program).file_name().and_then(|n| n.to_str()).unwrap_or(program);
        let shown = cmd.words.join(" ");
        let kind: Option<&'static str> = match name {
            "nerve-learn" => Some("nerve-learn"),
            "nerve-eval" => Some("nerve-eval"),
            "nerveabr-sim" => Some("nerveabr-sim"),
            "gst-launch-1.0" => Some("gst-launch-1.0"),
            "gst-inspect-1.0" => Some("gst-inspect-1.0"),
            "bash" | "sh" => Some("script"),
            _ if is_script(program) => Some("script"),
            _ => None,
        };
        if let Some(kind) = kind
            && let Ok(mut c) = self.checked.lock()
        {
            *c.entry(kind).or_insert(0) += 1;
        }
        if std::env::var_os("NERVE_DOCCHECK_VERBOSE").is_some() {
            eprintln!("  line {}: {} `{shown}`", cmd.line, kind.unwrap_or("not checked:"));
        }
        if let Some(tool) = self.tools.get(name) {
            return match tool {
                Tool::At(path) => self.check_cli(name, path, &cmd.words[1..]),
                Tool::Missing(why) => {
                    if let Ok(mut s) = self.skipped.lock() {
                        s.push(format!("line {}: `{shown}` ({why})", cmd.line));
                    }
                    Vec::new()
                }
            };
        }
        match name {
            "gst-launch-1.0" => check_gst_launch(&cmd.words[1..], &self.root).into_iter().collect(),
            "gst-inspect-1.0" => check_gst_inspect(&cmd.words[1..]).into_iter().collect(),
            "bash" | "sh" => match cmd.words.get(1) {
                Some(script) if !script.starts_with('-') && script.ends_with(".sh") => check_script(&cwd.join(script), script, false).into_iter().collect(),
                _ => Vec::new(),
            },
            _ if is_script(program) => check_script(&cwd.join(program), program, true).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// The `--help` runs a CLI command is likely to need: its first one or two sub-command
    /// levels (deeper levels run when reached).
    fn help_prefixes(&self, words: &[String]) -> Vec<(PathBuf, Vec<String>)> {
        let name = Path::new(&words[0]).file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(Tool::At(path)) = self.tools.get(name) else { return Vec::new() };
        let positional: Vec<String> = words[1..].iter().take_while(|w| !w.starts_with('-')).cloned().collect();
        (if positional.is_empty() { 0..=0 } else { 1..=positional.len().min(2) }).map(|k| (path.clone(), positional[..k].to_vec())).collect()
    }

    /// Runs `tool args --help` for each entry not yet known: a Python tool's in one interpreter
    /// (see [`run_python_helps`]), others as processes, a few at a time.
    fn run_helps(&self, mut wanted: Vec<(PathBuf, Vec<String>)>) {
        wanted.sort();
        wanted.dedup();
        let known = self.helps.lock().map(|h| h.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        wanted.retain(|k| !known.contains(k));
        let (python, native): (Vec<_>, Vec<_>) = wanted.into_iter().partition(|(tool, _)| python_interpreter(tool).is_some());
        let mut tools: Vec<&PathBuf> = python.iter().map(|(t, _)| t).collect();
        tools.dedup();
        let mut answers: Vec<((PathBuf, Vec<String>), HelpResult)> = Vec::new();
        for tool in tools {
            let jobs: Vec<Vec<String>> = python.iter().filter(|(t, _)| t == tool).map(|(_, a)| a.clone()).collect();
            let results = run_python_helps(tool, &jobs);
            answers.extend(jobs.into_iter().map(|a| (tool.clone(), a)).zip(results));
        }
        for chunk in native.chunks(PARALLEL_HELP) {
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk.iter().map(|(tool, args)| s.spawn(move || run_help(tool, args))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("the --help run panicked".into()))).collect()
            });
            answers.extend(chunk.iter().cloned().zip(results));
        }
        if let Ok(mut helps) = self.helps.lock() {
            helps.extend(answers);
        }
    }

    fn help(&self, tool: &Path, args: &[String]) -> HelpResult {
        let key = (tool.to_path_buf(), args.to_vec());
        if let Some(r) = self.helps.lock().ok().and_then(|h| h.get(&key).cloned()) {
            return r;
        }
        self.run_helps(vec![key.clone()]);
        self.helps.lock().ok().and_then(|h| h.get(&key).cloned()).unwrap_or_else(|| Err("no answer".into()))
    }

    /// `name args…`: sub-commands accepted, flags known.
    fn check_cli(&self, name: &str, tool: &Path, args: &[String]) -> Vec<String> {
        let positional: Vec<String> = args.iter().take_while(|w| !w.starts_with('-')).cloned().collect();
        let mut helps = Vec::new();
        let mut depth = 0;
        let first = if positional.is_empty() { 0 } else { 1 };
        // Level `first`: `name --help`, or `name <sub> --help` (the first sub-command must exist).
        match self.help(tool, &positional[..first]) {
            Ok(h) => helps.push(h),
            Err(e) => {
                return vec![format!("`{name} {} --help` fails: unknown sub-command? ({})", positional[..first].join(" "), last_line(&e))];
            }
        }
        depth += first;
        // Deeper levels while the help lists sub-commands.
        while depth < positional.len() && helps.last().is_some_and(|h| lists_subcommands(h)) {
            let prefix = &positional[..=depth];
            match self.help(tool, prefix) {
                Ok(h) => helps.push(h),
                Err(e) => {
                    return vec![format!("`{name} {} --help` fails: unknown sub-command `{}`? ({})", prefix.join(" "), positional[depth], last_line(&e))];
                }
            }
            depth += 1;
        }
        let all = helps.join("\n");
        let mut errors = Vec::new();
        for flag in args.iter().filter(|w| w.starts_with("--") && w.len() > 2) {
            let flag = flag.split('=').next().unwrap_or(flag);
            if !mentions_flag(&all, flag) {
                errors.push(format!("`{name} {}`: option {flag} is not in its --help", positional[..depth].join(" ")));
            }
        }
        errors
    }
}

fn run_help(tool: &Path, args: &[String]) -> HelpResult {
    match Process::new(tool).args(args).arg("--help").output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("cannot run {}: {e}", tool.display())),
    }
}

/// The interpreter (and its arguments) of a Python script, from its `#!` line.
fn python_interpreter(tool: &Path) -> Option<Vec<String>> {
    let head = std::fs::read(tool).ok()?;
    let first = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(first).ok()?.strip_prefix("#!")?;
    line.contains("python").then(|| line.split_whitespace().map(str::to_string).collect())
}

/// Runs a Python console script once per job, `script job… --help`, in ONE interpreter: each
/// run executes the script file as `__main__` (runpy) with that `sys.argv` and records its exit
/// status and output. The same code path as separate processes, but the script's imports load
/// once: nerve-learn takes ~3 s to start, and the docs call it ~30 ways.
fn run_python_helps(script: &Path, jobs: &[Vec<String>]) -> Vec<HelpResult> {
    const DRIVER: &str = r#"
import contextlib, io, json, runpy, sys
script = sys.argv[1]
results = []
for args in json.load(sys.stdin):
    sys.argv = [script] + args + ["--help"]
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:
        code, _ = 1, err.write(repr(e))
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
sys.__stdout__.write("\n@@doccheck@@" + json.dumps(results))
"#;
    let fail_all = |why: String| jobs.iter().map(|_| Err(why.clone())).collect::<Vec<_>>();
    let Some(interpreter) = python_interpreter(script) else { return fail_all("not a Python script".into()) };
    let input = serde_json::to_string(jobs).unwrap_or_default();
    let child = Process::new(&interpreter[0])
        .args(&interpreter[1..])
        .arg("-c")
        .arg(DRIVER)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail_all(format!("cannot run {}: {e}", interpreter[0])),
    };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(input.as_bytes());
    }
    let output = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return fail_all(format!("{}: {e}", script.display())),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some((_, json)) = stdout.rsplit_once("@@doccheck@@") else {
        return fail_all(format!("{} did not run: {}", script.display(), String::from_utf8_lossy(&output.stderr).trim()));
    };
    let parsed: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    if parsed.len() != jobs.len() {
        return fail_all(format!("{}: unreadable answers", script.display()));
    }
    parsed
        .into_iter()
        .map(|r| {
            let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            match r.get("code").and_then(serde_json::Value::as_i64) {
                Some(0) => Ok(text("stdout")),
                code => Err(format!("exit status {}: {}", code.unwrap_or(-1), text("stderr").trim())),
            }
        })
        .collect()
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

/// Whether a help text lists sub-commands: argparse's `{a,b,c}` on a line of its own, or clap's
/// `Commands:` section.
pub fn lists_subcommands(help: &str) -> bool {
    help.lines().any(|l| {
        let t = l.trim();
        t == "Commands:"
            || t == "Subcommands:"
            || (t.starts_with('{')
                && t.split('}')
                    .next()
                    .is_some_and(|inner| inner[1..].split(',').all(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)))))
    })
}

/// Whether `flag` appears in the help as an option (not as part of a longer one).
fn mentions_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        let before = help[..at].chars().next_back();
        let after = help[at + flag.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-') && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

fn is_script(program: &str) -> bool {
    let p = program.strip_prefix("./").unwrap_or(program);
    p.starts_with("scripts/") || p.starts_with("pipelines/") || (!p.starts_with('/') && p.contains('/') && p.ends_with(".sh"))
}

fn check_script(path: &Path, shown: &str, executable: bool) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Err(_) => Some(format!("script `{shown}` does not exist ({})", normalise(path).display())),
        Ok(m) if !m.is_file() => Some(format!("`{shown}` is not a file")),
        Ok(m) if executable && m.permissions().mode() & 0o111 == 0 => Some(format!("script `{shown}` is not executable")),
        Ok(_) => None,
    }
}

/// Replaces shell variables: `${X:-default}` by its default, `$PWD` by the repository root,
/// `$HOME` by the home directory, and any other by `other`.
fn substitute(word: &str, root: &Path, other: &str) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, default, len) = if let Some(braced) = after.strip_prefix('{') {
            let Some(close) = braced.find('}') else {
                out.push_str(&rest[at..]);
                return out;
            };
            let inner = &braced[..close];
            let (name, default) = match inner.split_once(":-").or_else(|| inner.split_once('-')) {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            (name.to_string(), default.map(str::to_string), close + 2)
        } else {
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let len = name.len();
            (name, None, len)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        let value = match (name.as_str(), default) {
            (_, Some(d)) => d,
            ("PWD", _) => root.display().to_string(),
            ("HOME", _) => std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            _ => other.to_string(),
        };
        out.push_str(&value);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// A gst-launch-1.0 command line (without the program): its options dropped, it must parse.
pub fn check_gst_launch(args: &[String], root: &Path) -> Option<String> {
    let pipeline: Vec<&String> = args.iter().skip_while(|w| w.starts_with('-')).collect();
    if pipeline.is_empty() {
        return Some("gst-launch-1.0 without a pipeline".into());
    }
    let uses_variables = pipeline.iter().any(|w| w.contains('$'));
    // A path where a variable stands for a file, else a number where it stands for a value.
    let mut first_error = None;
    for other in ["nerve-doc-value", "1"] {
        let words: Vec<String> = pipeline.iter().map(|w| substitute(w, root, other)).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        match gst::parse::launchv_full(&refs, None, gst::ParseFlags::FATAL_ERRORS) {
            Ok(element) => {
                drop(element);
                return None;
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
        if !uses_variables {
            break;
        }
    }
    first_error.map(|e| format!("gst-launch-1.0 pipeline does not parse: {e}"))
}

/// gst-inspect-1.0 NAME: NAME must be a registered element factory or plugin.
pub fn check_gst_inspect(args: &[String]) -> Option<String> {
    let names: Vec<&String> = args.iter().filter(|w| !w.starts_with('-')).collect();
    let [name] = names.as_slice() else { return None };
    if name.contains('/') || name.contains('$') {
        return None; // a plugin file
    }
    let known = gst::ElementFactory::find(name).is_some() || gst::Registry::get().find_plugin(name).is_some();
    (!known).then(|| format!("gst-inspect-1.0: no element or plugin `{name}`"))
}

/// The markdown files to check under `root`: README.md and docs/**/*.md (commands and links;
/// docs/research/ links only), models/*.md (links only). Sorted, existing ones only.
pub fn doc_files(root: &Path) -> Vec<(PathBuf, bool)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    if root.join("README.md").is_file() {
        files.push((root.join("README.md"), true));
    }
    let mut docs = Vec::new();
    walk(&root.join("docs"), &mut docs);
    docs.sort();
    let research = root.join("docs/research");
    files.extend(docs.into_iter().map(|p| {
        let code = !p.starts_with(&research);
        (p, code)
    }));
    let mut models: Vec<PathBuf> = std::fs::read_dir(root.join("models"))
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "md")).collect())
        .unwrap_or_default();
    models.sort();
    files.extend(models.into_iter().map(|p| (p, false)));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(lang: &str, text: &str) -> Block {
        Block { lang: lang.into(), lines: text.lines().enumerate().map(|(i, l)| (i + 1, l.to_string())).collect() }
    }

    fn words(lang: &str, text: &str) -> Vec<Vec<String>> {
        let (cmds, errors) = commands(&block(lang, text));
        assert!(errors.is_empty(), "{errors:?}");
        cmds.into_iter().map(|c| c.words).collect()
    }

    #[test]
    fn continuations_prompts_comments_and_separators() {
        let got = words(
            "sh",
            "$ FOO=1 BAR=x ./scripts/a.sh --x 'q r' && scripts/b.sh; c | d # comment\n\
             gst-launch-1.0 -e a ! \\\n   b name=\"x # y\" ! c\n\
             export X=1\n\
             cmd >/dev/null 2>&1 || other > out.txt\n",
        );
        assert_eq!(
            got,
            vec![
                vec!["./scripts/a.sh", "--x", "q r"],
                vec!["scripts/b.sh"],
                vec!["c"],
                vec!["d"],
                vec!["gst-launch-1.0", "-e", "a", "!", "b", "name=x # y", "!", "c"],
                vec!["export", "X=1"],
                vec!["cmd"],
                vec!["other"],
            ]
        );
    }

    #[test]
    fn console_blocks_take_prompted_lines_only() {
        let got = words("console", "$ nerve-learn registry list \\\n  --tracking-uri x\nversion 1 champion\n$ ls\n");
        assert_eq!(got, vec![vec!["nerve-learn", "registry", "list", "--tracking-uri", "x"], vec!["ls"]]);
    }

    #[test]
    fn fenced_blocks_and_their_languages() {
        let md = "text\n```sh\na\n```\n  ~~~~bash title\n  b\n  ~~~~\n```\n`x`\n```\n```python\nc\n```\n";
        let blocks = code_blocks(md);
        assert_eq!(blocks.iter().map(|b| b.lang.as_str()).collect::<Vec<_>>(), ["sh", "bash", "", "python"]);
        assert_eq!(blocks[0].lines, vec![(3, "a".to_string())]);
        assert_eq!(blocks[1].lines, vec![(6, "b".to_string())]);
    }

    #[test]
    fn links_outside_code_only() {
        let md = "see [a](x.md) and ![i](img/p.png \"title\") and `[no](code.md)`\n```\n[no](block.md)\n```\n\
                  [web](https://x.org) [top](#top) [f](<with space.md>) [p](a_(b).md#s)\n[ref]: ref/target.md\n";
        let got: Vec<String> = links(md).into_iter().map(|(_, t)| t).collect();
        assert_eq!(got, ["x.md", "img/p.png", "https://x.org", "#top", "with space.md", "a_(b).md#s", "ref/target.md"]);
    }

    #[test]
    fn subcommand_lists_are_recognised() {
        assert!(lists_subcommands("usage: x [-h] {a,b}\n\npositional arguments:\n  {a,b}\n    a  do a\n"));
        assert!(lists_subcommands("Usage: x <COMMAND>\n\nCommands:\n  sr    ...\n  help  ...\n"));
        assert!(!lists_subcommands("usage: x [-h] [--mode {chunk,bones}] name\n\noptions:\n  --mode {chunk,bones}\n"));
    }

    #[test]
    fn variables_are_replaced() {
        let root = Path::new("/repo");
        assert_eq!(substitute("location=$PWD/in.mp4", root, "v"), "location=/repo/in.mp4");
        assert_eq!(substitute("scale=${SCALE:-2}", root, "v"), "scale=2");
        assert_eq!(substitute("location=$out/x_${n}.y4m", root, "v"), "location=v/x_v.y4m");
        assert_eq!(substitute("cost=$", root, "v"), "cost=$");
    }

    #[test]
    fn flags_match_whole_options() {
        let help = "  --scale SCALE\n  --dir-name X\n";
        assert!(mentions_flag(help, "--scale"));
        assert!(!mentions_flag(help, "--dir"));
        assert!(!mentions_flag(help, "--sc"));
    }
}
