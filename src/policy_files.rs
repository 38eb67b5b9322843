//! Policy files on disk: the [`Files`] the core's loader reads through.
//!
//! A source path is a file or a directory; a directory's `*.yaml` and `*.yml` files are read
//! recursively in name order, and entries starting with `.` are skipped (the kubelet's
//! `..data` and `..<timestamp>` copies of a mounted ConfigMap).

use std::path::{Path, PathBuf};

use warden_core::policy::{Files, Policy, PolicyErrors, Source};

/// The local file system.
#[derive(Debug, Clone, Copy)]
pub struct Disk;

impl Files for Disk {
    fn list(&self, path: &Path) -> std::io::Result<Vec<PathBuf>> {
        files_in(path)
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Reads, parses, validates and compiles every source, or returns every error found.
pub fn load(sources: &[Source]) -> Result<Policy, PolicyErrors> {
    Policy::load_with(sources, &Disk)
}

fn files_in(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let p = entry.path();
        if std::fs::metadata(&p)?.is_dir() {
            out.extend(files_in(&p)?);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "kind: role\nversion: v8\nmetadata: {name: r}\nspec: {allow: {mcp: {tools: ['*']}}}\n";

    #[test]
    fn a_file_listed_twice_is_read_once_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "kind: app\nmetadata: {name: a}\nspec: {uri: 'https://h'}\n").expect("write");
        let p = load(&[Source::Path(file), Source::Path(dir.path().to_owned())]).expect("read once");
        assert_eq!(p.apps().len(), 1);
        assert!(p.warnings().iter().any(|w| w.to_string().contains("listed more than once")));
    }

    #[test]
    fn directory_sources_skip_hidden_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), ROLE).expect("write");
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        std::fs::write(dir.path().join("..data/a.yaml"), ROLE).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not yaml").expect("write");
        load(&[Source::Path(dir.path().to_owned())]).expect("hidden copies are not loaded twice");
    }

    #[test]
    fn the_core_alone_refuses_a_path_naming_it() {
        let e = Policy::load(&[Source::Path("/etc/x.yaml".into())]).expect_err("no file system in the core");
        assert!(e.to_string().contains("/etc/x.yaml"), "{e}");
    }

    #[test]
    fn errors_in_files_are_located_by_rereading_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bad.yaml");
        std::fs::write(
            &file,
            "kind: role\nversion: v8\nmetadata: {name: r}\nspec:\n  allow:\n    mcp: {tools: ['^($']}\n",
        )
        .expect("write");
        let e = load(&[Source::Path(file)]).expect_err("bad regex").to_string();
        assert!(e.contains("bad.yaml:6:"), "{e}");
    }
}
