//! The manual's examples: every fenced block of `README.md` and
//! `docs/*.md` is checked by its tag, so the docs cannot drift from the code.
//!
//! | tag | check |
//! |---|---|
//! | `toml spec` | the service-spec parser accepts it |
//! | `toml spec-invalid` | the service-spec parser refuses it |
//! | `toml scenario policy=NAME` | `rollout test --policy NAME` on it passes |
//! | `rust file=PATH`, `python file=PATH`, `wit file=PATH` | its lines are a run of lines of PATH, a file the build compiles |
//! | `sh` | every `rollout` command names a subcommand and flags its `--help` lists; every repository path it names exists |
//! | `text` | none: diagrams and sample output |
//!
//! Any other tag, or none, fails. `examples/one-by-one`, the policy the
//! manual shows, is built here and run against a scenario.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rollout::spec::ServiceSpec;

use crate::util::{repo, rollout};

/// Where a tagged source excerpt may come from: files the build compiles
/// (the host's build script builds `policies/`, `sdk.rs` tests it; this
/// module builds `examples/one-by-one`; `python.rs` builds the Python
/// policy; the host's bindings are generated from `wit/`).
const COMPILED: &[(&str, &[&str])] = &[
    ("rust", &["policies/", "examples/one-by-one/"]),
    ("python", &["examples/python-policy/"]),
    ("wit", &["wit/"]),
];

/// Top-level directories of the repository: a shell word starting with one
/// of them names a file that must exist (build output under `target/` aside).
const REPO_DIRS: &[&str] = &[
    "benches/",
    "docs/",
    "examples/",
    "host/",
    "policies/",
    "scripts/",
    "tests/",
    "wit/",
];

/// A fenced code block of a Markdown file.
struct Block {
    /// `docs/spec.md:12`, where its opening fence is.
    place: String,
    /// The words after the fence: the language, then attributes.
    tag: Vec<String>,
    /// Its text, without the fences and the fence's indentation.
    text: String,
}

impl Block {
    /// The value of attribute `key=value`, if given.
    fn attribute(&self, key: &str) -> Option<&str> {
        self.tag
            .iter()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
    }
}

/// `README.md` and every `docs/*.md`.
fn manual() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The path of `file` from the repository root, for messages.
fn shown(file: &Path) -> String {
    file.strip_prefix(repo())
        .unwrap_or(file)
        .display()
        .to_string()
}

/// The fenced blocks of one Markdown text (fences of three or more
/// backticks, indented or not, as inside a list item).
fn blocks(name: &str, text: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let mut body = Vec::new();
        for (_, inner) in lines.by_ref() {
            if inner.trim() == "```" {
                break;
            }
            body.push(inner.get(indent..).unwrap_or(inner.trim_start()));
        }
        found.push(Block {
            place: format!("{name}:{}", i + 1),
            tag: info.split_whitespace().map(str::to_string).collect(),
            text: body.join("\n") + "\n",
        });
    }
    found
}

/// Every block of the manual.
fn all_blocks() -> Vec<Block> {
    manual()
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).expect("read a manual page");
            blocks(&shown(file), &text)
        })
        .collect()
}

/// Check one block by its tag; what is wrong with it, if anything.
fn check(block: &Block) -> Result<(), String> {
    let words: Vec<&str> = block.tag.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["toml", "spec"] => check_spec(block, true),
        ["toml", "spec-invalid"] => check_spec(block, false),
        ["toml", "scenario", policy] if policy.starts_with("policy=") => check_scenario(block),
        [lang @ ("rust" | "python" | "wit"), file] if file.starts_with("file=") => {
            check_excerpt(block, lang)
        }
        ["sh"] => check_shell(block),
        ["text"] => Ok(()),
        _ => Err(format!(
            "unknown tag {:?}: use one of `toml spec`, `toml spec-invalid`, \
             `toml scenario policy=NAME`, `rust|python|wit file=PATH`, `sh`, `text` \
             (see tests/e2e/docs.rs)",
            block.tag.join(" ")
        )),
    }
}

/// A spec the parser must accept (`valid`) or refuse.
fn check_spec(block: &Block, valid: bool) -> Result<(), String> {
    match (
        ServiceSpec::parse(&block.text, &block.place, &repo()),
        valid,
    ) {
        (Ok(_), true) | (Err(_), false) => Ok(()),
        (Err(e), true) => Err(format!("the spec is refused: {e}")),
        (Ok(_), false) => Err("the spec is accepted, but the block says spec-invalid".into()),
    }
}

/// A scenario `rollout test` must pass with the tagged policy.
fn check_scenario(block: &Block) -> Result<(), String> {
    let policy = block.attribute("policy").unwrap_or_default();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-scenarios");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join(format!(
        "{}.toml",
        block.place.replace(['/', ':', '.'], "-")
    ));
    std::fs::write(&file, &block.text).map_err(|e| format!("{}: {e}", file.display()))?;
    let scenario = file.to_str().expect("utf-8 path");
    let run = rollout(&["test", "--policy", policy, "--scenario", scenario]);
    match run.code {
        0 => Ok(()),
        _ => Err(format!(
            "`rollout test --policy {policy}` on it exits {}:\n{}{}",
            run.code, run.stdout, run.stderr
        )),
    }
}

/// A source block whose lines are a run of lines of a compiled file.
fn check_excerpt(block: &Block, lang: &str) -> Result<(), String> {
    let file = block.attribute("file").unwrap_or_default();
    let roots = COMPILED
        .iter()
        .find(|(l, _)| *l == lang)
        .map(|(_, roots)| *roots)
        .unwrap_or_default();
    if !roots.iter().any(|root| file.starts_with(root)) {
        return Err(format!(
            "{file} is not where compiled {lang} lives ({})",
            roots.join(", ")
        ));
    }
    let source = std::fs::read_to_string(repo().join(file)).map_err(|e| format!("{file}: {e}"))?;
    let source: Vec<&str> = source.lines().collect();
    let excerpt: Vec<&str> = block.text.lines().collect();
    if !excerpt.is_empty() && source.windows(excerpt.len()).any(|w| w == excerpt) {
        Ok(())
    } else {
        Err(format!(
            "its lines are not a run of lines of {file}: copy them from the file again"
        ))
    }
}

/// What `rollout --help` and each `rollout SUBCOMMAND --help` list.
struct Help {
    /// Flags of each subcommand (global flags included): long and short
    /// names, and whether each takes a value.
    flags: BTreeMap<String, BTreeMap<String, bool>>,
    /// The values a subcommand's first argument takes, where its help
    /// lists them, or its own subcommands (`rollout bench runtime`).
    values: BTreeMap<String, Vec<String>>,
}

/// Run `rollout ARGS --help`; its text.
fn help_of(args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.push("--help");
    let run = rollout(&args);
    assert_eq!(run.code, 0, "rollout {args:?}: {}", run.stderr);
    run.stdout
}

/// The flags an options section of a help text lists.
fn flags_of(help: &str) -> BTreeMap<String, bool> {
    let mut flags = BTreeMap::new();
    for line in help.lines().map(str::trim_start) {
        if !line.starts_with('-') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let names: Vec<&str> = words
            .iter()
            .take_while(|w| w.starts_with('-'))
            .map(|w| w.trim_end_matches(','))
            .collect();
        let takes_value = words.get(names.len()).is_some_and(|w| w.starts_with('<'));
        for name in names {
            flags.insert(name.to_string(), takes_value);
        }
    }
    flags
}

/// The possible values of the first argument, as clap's long help lists
/// them (`- runtime: ...`), if any.
fn values_of(help: &str) -> Vec<String> {
    let arguments = help
        .split_once("Arguments:")
        .and_then(|(_, rest)| rest.split_once("Options:"))
        .map(|(arguments, _)| arguments)
        .unwrap_or_default();
    arguments
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- ")?.split_once(':'))
        .map(|(value, _)| value.to_string())
        .collect()
}

/// The subcommands a help text lists (none when it has no `Commands:`).
fn commands_of(help: &str) -> Vec<&str> {
    let Some((_, commands)) = help.split_once("Commands:") else {
        return Vec::new();
    };
    commands
        .lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect()
}

/// The CLI as its help describes it, read once.
fn help() -> &'static Help {
    static HELP: OnceLock<Help> = OnceLock::new();
    HELP.get_or_init(|| {
        let top = help_of(&[]);
        let mut help = Help {
            flags: BTreeMap::new(),
            values: BTreeMap::new(),
        };
        for command in commands_of(&top) {
            let text = help_of(&[command]);
            for sub in commands_of(&text) {
                let text = help_of(&[command, sub]);
                help.flags
                    .insert(format!("{command} {sub}"), flags_of(&text));
                help.values
                    .insert(format!("{command} {sub}"), values_of(&text));
            }
            let mut values = values_of(&text);
            values.extend(commands_of(&text).into_iter().map(String::from));
            help.flags.insert(command.to_string(), flags_of(&text));
            help.values.insert(command.to_string(), values);
        }
        help.flags.insert(String::new(), flags_of(&top));
        help
    })
}

/// Shell words of one line: `'...'` and `"..."` quoting, `#` comments.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, '#') if word.is_none() => break,
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// A command of a `sh` block: every `rollout` invocation matches its help,
/// and every repository path (the program's too) exists. `cwd` follows `cd`.
fn check_command(command: &[String], cwd: &mut PathBuf) -> Result<(), String> {
    let command: Vec<&str> = command
        .iter()
        .map(String::as_str)
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .collect();
    let Some((program, args)) = command.split_first() else {
        return Ok(());
    };
    for word in command
        .iter()
        .map(|w| w.split_once('=').map_or(*w, |(_, v)| v))
    {
        let inside_repo = REPO_DIRS.iter().any(|dir| word.starts_with(dir));
        if inside_repo && !word.contains("target/") && !cwd.join(word).exists() {
            return Err(format!("{word}: no such file in the repository"));
        }
    }
    if *program == "cd" {
        *cwd = cwd.join(args.first().copied().unwrap_or_default());
    }
    if *program == "rollout" || program.ends_with("/rollout") {
        check_rollout(args)?;
    }
    Ok(())
}

/// `rollout ARGS`: the subcommand exists, its first argument is one of its
/// listed values (when listed), and every flag is one it lists.
fn check_rollout(args: &[&str]) -> Result<(), String> {
    let help = help();
    let global = &help.flags[""];
    let mut rest = args.iter();
    let mut command: Option<String> = None;
    let mut positional = Vec::new();
    let mut flags = Vec::new();
    while let Some(word) = rest.next() {
        if word.starts_with('-') {
            let name = word.split_once('=').map_or(*word, |(name, _)| name);
            flags.push(name);
            let known = command
                .as_ref()
                .and_then(|c| help.flags.get(c))
                .unwrap_or(global);
            if known.get(name) == Some(&true) && !word.contains('=') {
                rest.next();
            }
        } else if command.is_none() {
            command = Some(word.to_string());
        } else if let Some(nested) = command
            .as_ref()
            .map(|c| format!("{c} {word}"))
            .filter(|nested| positional.is_empty() && help.flags.contains_key(nested))
        {
            command = Some(nested);
        } else {
            positional.push(*word);
        }
    }
    let command = command.ok_or("`rollout` without a subcommand")?;
    let known = help
        .flags
        .get(&command)
        .ok_or_else(|| format!("`rollout {command}`: no such subcommand in `rollout --help`"))?;
    if let Some(flag) = flags.iter().find(|flag| !known.contains_key(**flag)) {
        return Err(format!(
            "`rollout {command} {flag}`: `rollout {command} --help` lists no such flag"
        ));
    }
    let values = &help.values[&command];
    match positional.first() {
        Some(first) if !values.is_empty() && !values.iter().any(|v| v == first) => Err(format!(
            "`rollout {command} {first}`: it takes one of {}",
            values.join(", ")
        )),
        _ => Ok(()),
    }
}

/// Every command of a `sh` block (lines joined at a trailing `\`, split at
/// `&&`, `||`, `|`, `;` and `&`).
fn check_shell(block: &Block) -> Result<(), String> {
    let text = block.text.replace("\\\n", " ");
    let mut cwd = repo();
    let mut problems = Vec::new();
    for line in text.lines() {
        let words = words(line);
        for command in words.split(|w| ["&&", "||", "|", ";", "&"].contains(&w.as_str())) {
            if let Err(e) = check_command(command, &mut cwd) {
                problems.push(format!("`{}`: {e}", line.trim()));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn docs_every_code_block_is_checked_by_its_tag() {
    let blocks = all_blocks();
    assert!(blocks.len() > 20, "found only {} blocks", blocks.len());
    let failures: Vec<String> = blocks
        .iter()
        .filter_map(|block| check(block).err().map(|e| format!("{}: {e}", block.place)))
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// The anchor GitHub gives a heading: lowercase, spaces to `-`,
/// punctuation other than `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown page's headings.
fn anchors(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap_or_default();
    blocks_removed(&text)
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| slug(heading.trim_start_matches('#')))
        .collect()
}

/// A Markdown text without its fenced blocks (a `#` there is no heading).
fn blocks_removed(text: &str) -> String {
    let mut inside = false;
    let mut kept = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if !inside {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

#[test]
fn docs_links_between_pages_resolve() {
    let mut broken = Vec::new();
    for file in manual() {
        let text = std::fs::read_to_string(&file).expect("read a manual page");
        let dir = file.parent().expect("a page has a directory");
        for (target, _) in text.split("](").skip(1).filter_map(|s| s.split_once(')')) {
            if target.contains("://") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let page = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            if !page.exists() {
                broken.push(format!("{}: {target}: no such file", shown(&file)));
            } else if !anchor.is_empty() && !anchors(&page).iter().any(|a| a == anchor) {
                broken.push(format!("{}: {target}: no such heading", shown(&file)));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn docs_the_readme_links_every_page() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let unlinked: Vec<String> = manual()
        .iter()
        .skip(1)
        .map(|page| shown(page))
        .filter(|page| !readme.contains(&format!("]({page}")))
        .collect();
    assert!(unlinked.is_empty(), "not in README.md: {unlinked:?}");
}

/// `examples/one-by-one`, the policy the manual walks through: its native
/// test passes, it builds as a component, and the host runs it.
#[test]
fn docs_the_one_by_one_example_builds_and_rolls_out() {
    let manifest = repo().join("examples/one-by-one/Cargo.toml");
    let target = repo().join("policies/target");
    let cargo = |args: &[&str]| {
        let out = Command::new(env!("CARGO"))
            .args(args)
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "cargo {args:?} in examples/one-by-one: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cargo(&["test"]);
    cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target.join("wasm32-wasip2/release/one_by_one.wasm");
    let scenario = repo().join("tests/scenarios/all-good.toml");
    let run = rollout(&[
        "test",
        "--policy",
        wasm.to_str().expect("utf-8 path"),
        "--scenario",
        scenario.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}
