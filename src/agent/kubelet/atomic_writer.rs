//! The files of configMap, secret, downwardAPI and projected volumes, written as kubelet's AtomicWriter
//! writes them: the volume's directory shows each top-level name as a symlink into `..data`, itself a
//! symlink to a timestamped directory (`..2026_11_24_19_58_19.<n>`) that holds the files. A change
//! fills a new timestamped directory and swaps `..data` in one rename, so a reader never sees half an
//! update, and programs that watch `..data` (config reloaders) see each one.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The link to the timestamped directory that holds the files.
const DATA_LINK: &str = "..data";
/// The next `..data`, renamed over it.
const NEW_DATA_LINK: &str = "..data_tmp";
/// kubelet's limits on a projected path and on each of its names.
const MAX_PATH_LENGTH: usize = 4096;
const MAX_NAME_LENGTH: usize = 255;

/// Makes `dir` show exactly `files` (relative path → content, mode). Nothing changes on disk when the
/// contents are already those (a mode-only change is not written, as with kubelet). A change is
/// published once `before_publish` (kubelet's setPerms: the fsGroup) has run over the directory.
pub fn write(
    dir: &Path,
    files: &BTreeMap<String, (Vec<u8>, u32)>,
    before_publish: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let mut cleaned = BTreeMap::new();
    for (path, file) in files {
        validate(path)?;
        // `./a` and `a//b` are `a` and `a/b`, as `path.Clean` makes them.
        let clean: Vec<&str> = Path::new(path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => name.to_str(),
                _ => None,
            })
            .collect();
        if clean.is_empty() {
            return Err(format!("invalid path {path:?}: must name a file"));
        }
        cleaned.insert(clean.join("/"), file.clone());
    }
    let files = &cleaned;
    std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    let data = dir.join(DATA_LINK);
    let current = std::fs::read_link(&data).ok();
    let up_to_date = current
        .as_ref()
        .is_some_and(|ts| holds(&dir.join(ts), files));
    if !up_to_date {
        let ts = new_timestamped_dir(dir)?;
        let published = write_files(&ts, files)
            .and_then(|()| before_publish())
            .and_then(|()| {
                let next = dir.join(NEW_DATA_LINK);
                let _ = std::fs::remove_file(&next);
                let name = ts.file_name().expect("a timestamped directory has a name");
                std::os::unix::fs::symlink(name, &next)
                    .and_then(|()| std::fs::rename(&next, &data))
                    .map_err(io_error("publishing", &ts))
            });
        if let Err(e) = published {
            let _ = std::fs::remove_dir_all(&ts);
            return Err(e);
        }
    }
    let visible: BTreeSet<&str> = files.keys().map(|path| top_level(path)).collect();
    for name in &visible {
        let path = dir.join(name);
        let target = Path::new(DATA_LINK).join(name);
        if std::fs::read_link(&path).is_ok_and(|t| t == target) {
            continue;
        }
        // Whatever else has the name (a file an older orch wrote in place) makes way for the link.
        remove(&path);
        std::os::unix::fs::symlink(&target, &path).map_err(io_error("linking", &path))?;
    }
    let published = std::fs::read_link(&data).ok();
    let entries = std::fs::read_dir(dir).map_err(io_error("listing", dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let kept = name == DATA_LINK
            || published.as_deref() == Some(Path::new(&name))
            || name.to_str().is_some_and(|n| visible.contains(n));
        if !kept {
            remove(&entry.path());
        }
    }
    Ok(())
}

/// kubelet's validatePath: relative, no `..` element, no name starting with `..` at the top (those are
/// the writer's own), within the length limits.
fn validate(path: &str) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("invalid path {path:?}: {why}"));
    if path.is_empty() {
        return invalid("must not be empty");
    }
    if path.len() > MAX_PATH_LENGTH {
        return invalid("must be at most 4096 characters");
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return invalid("must be a relative path");
    }
    for component in p.components() {
        match component {
            Component::ParentDir => return invalid("must not contain '..'"),
            Component::Normal(name) if name.len() > MAX_NAME_LENGTH => {
                return invalid("file names must be at most 255 characters")
            }
            _ => {}
        }
    }
    let first = p.components().find_map(|c| match c {
        Component::Normal(name) => name.to_str(),
        _ => None,
    });
    if first.is_some_and(|name| name.starts_with("..")) {
        return invalid("must not start with '..'");
    }
    Ok(())
}

/// The first name of a clean relative path: what the volume's directory shows of it.
fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Whether the timestamped directory `ts` holds exactly the files, with their contents.
fn holds(ts: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> bool {
    let mut found = BTreeSet::new();
    if !list_files(ts, Path::new(""), &mut found) {
        return false;
    }
    let wanted: BTreeSet<PathBuf> = files.keys().map(PathBuf::from).collect();
    found == wanted
        && files
            .iter()
            .all(|(path, (content, _))| std::fs::read(ts.join(path)).is_ok_and(|c| c == *content))
}

/// Adds the regular files under `dir` (as paths relative to the walk's start) to `out`; false when
/// the directory cannot be read.
fn list_files(dir: &Path, relative: &Path, out: &mut BTreeSet<PathBuf>) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            return false;
        };
        let path = relative.join(entry.file_name());
        if kind.is_dir() {
            if !list_files(&entry.path(), &path, out) {
                return false;
            }
        } else {
            out.insert(path);
        }
    }
    true
}

/// A new, empty `..<UTC time>.<n>` directory in `dir`, open to everyone (containers run as any user).
fn new_timestamped_dir(dir: &Path) -> Result<PathBuf, String> {
    let now = jiff::Timestamp::now();
    let stamp = now.strftime("%Y_%m_%d_%H_%M_%S");
    let mut n = now.subsec_nanosecond().unsigned_abs();
    loop {
        let ts = dir.join(format!("..{stamp}.{n}"));
        match std::fs::create_dir(&ts) {
            Ok(()) => {
                std::fs::set_permissions(&ts, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_error("opening", &ts))?;
                return Ok(ts);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(io_error("creating", &ts)(e)),
        }
    }
}

fn write_files(ts: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<(), String> {
    for (relative, (content, mode)) in files {
        let path = ts.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
        }
        std::fs::write(&path, content)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)))
            .map_err(io_error("writing", &path))?;
    }
    Ok(())
}

/// Removes a file, link or directory tree, never following a link.
fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

fn io_error<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> String + 'a {
    move |e| format!("{what} {}: {e}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> BTreeMap<String, (Vec<u8>, u32)> {
        files
            .iter()
            .map(|(path, content, mode)| (path.to_string(), (content.as_bytes().to_vec(), *mode)))
            .collect()
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    #[test]
    fn files_show_through_links_into_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let files = payload(&[
            ("index.html", "v1", 0o644),
            ("conf/app.yaml", "a: 1", 0o600),
        ]);
        write(dir.path(), &files, || Ok(())).unwrap();
        let ts = std::fs::read_link(dir.path().join("..data")).unwrap();
        let ts = ts.to_str().unwrap();
        assert!(
            ts.starts_with("..20") && ts.len() > "..2026_11_24_19_58_19.".len(),
            "{ts}"
        );
        assert_eq!(
            names(dir.path()),
            BTreeSet::from([
                "..data".into(),
                ts.to_string(),
                "conf".into(),
                "index.html".into()
            ])
        );
        for name in ["index.html", "conf"] {
            assert_eq!(
                std::fs::read_link(dir.path().join(name)).unwrap(),
                Path::new("..data").join(name)
            );
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("index.html")).unwrap(),
            "v1"
        );
        let mode = std::fs::metadata(dir.path().join("conf/app.yaml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let ts_mode = std::fs::metadata(dir.path().join(ts))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(ts_mode & 0o777, 0o755);
    }

    #[test]
    fn a_change_swaps_the_data_directory_and_removes_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let data = || std::fs::read_link(dir.path().join("..data")).unwrap();
        let v1 = payload(&[("a", "1", 0o644), ("old/b", "2", 0o644)]);
        write(dir.path(), &v1, || Ok(())).unwrap();
        let first = data();

        // The same contents again, however the paths are spelled: nothing is rewritten.
        let respelled = payload(&[("./a", "1", 0o644), ("old//b", "2", 0o644)]);
        let hook_ran = std::cell::Cell::new(false);
        write(dir.path(), &respelled, || {
            hook_ran.set(true);
            Ok(())
        })
        .unwrap();
        assert_eq!(data(), first);
        assert!(!hook_ran.get(), "nothing to publish, nothing to prepare");

        // A change is prepared before it shows, and not shown when preparing it fails.
        let v2 = payload(&[("a", "changed", 0o644), ("c", "3", 0o644)]);
        let refused = write(dir.path(), &v2, || {
            assert_eq!(data(), first, "published before it was prepared");
            Err("no group for you".into())
        });
        assert_eq!(refused.unwrap_err(), "no group for you");
        assert_eq!(data(), first);
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "1");

        write(dir.path(), &v2, || Ok(())).unwrap();
        let second = data();
        assert_ne!(second, first);
        assert_eq!(
            names(dir.path()),
            BTreeSet::from([
                "..data".into(),
                second.to_str().unwrap().to_string(),
                "a".into(),
                "c".into()
            ])
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).unwrap(),
            "changed"
        );
    }

    #[test]
    fn files_an_older_writer_left_in_place_make_way_for_the_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "in place").unwrap();
        std::fs::create_dir(dir.path().join("gone")).unwrap();
        std::fs::write(dir.path().join("gone/b"), "x").unwrap();
        write(dir.path(), &payload(&[("a", "linked", 0o644)]), || Ok(())).unwrap();
        assert!(std::fs::symlink_metadata(dir.path().join("a"))
            .unwrap()
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).unwrap(),
            "linked"
        );
        assert!(!dir.path().join("gone").exists());
    }

    #[test]
    fn paths_are_checked_as_kubelet_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        for (path, why) in [
            ("", "must not be empty"),
            ("/etc/passwd", "must be a relative path"),
            ("a/../../b", "must not contain '..'"),
            ("..data", "must not start with '..'"),
            ("./..data", "must not start with '..'"),
        ] {
            let error = write(dir.path(), &payload(&[(path, "x", 0o644)]), || Ok(())).unwrap_err();
            assert!(error.contains(why), "{path}: {error}");
        }
        assert_eq!(names(dir.path()), BTreeSet::new());
    }
}
